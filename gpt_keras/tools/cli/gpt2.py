"""GPT-2 beside our model: compare and finetune-gpt2 (both need the [gpt2] extra)."""

from __future__ import annotations

import warnings
from pathlib import Path

from gpt_keras.core.checks import check_config_field, maximum_of
from gpt_keras.core.sampling import check_temperature
from gpt_keras.tools.cli.flags import (_count, _checked_arg, _max_tokens, _output, _seed,
                                       add_sampling_flags, existing_file, existing_run, progress_verbosity,
                                       require_extra)
from gpt_keras.tools.cli.terminal import echo, load_run_with_note


# --- GPT-2 beside our model ---------------------------------------------------------------------------

def add_compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="our run beside GPT-2: texts, parameters, time per token, perplexity per token and per word",
        description="Generates from the same prompts, temperatures and seeds with both models, times the same "
                    "number of new tokens, and scores the same held-out words (the last --heldout reviews of "
                    "--data). Writes a Markdown and a JSON report. Needs transformers<5 and tf-keras.")
    parser.add_argument("--run", type=Path,
                        help="a run directory written by `gpt-keras train` (without it: GPT-2 alone, as in the "
                             "lecture's GPT-2 part)")
    parser.add_argument("--gpt2", default="gpt2", metavar="NAME|PATH",
                        help="gpt2, distilgpt2 (from the Hugging Face hub or its cache) or a save_pretrained "
                             "directory, e.g. from `gpt-keras finetune-gpt2` (default gpt2)")
    parser.add_argument("--data", type=Path, help="reviews to hold out (default: the data folder's full dataset, else the sample)")
    parser.add_argument("--heldout", type=_checked_arg(int, _count(1)), default=200,
                        help="score the last N reviews of --data (default 200)")
    parser.add_argument("--prompt", action="append", metavar="TEXT",
                        help="a prompt; repeat for more (default: 'wine review : germany' and 'wine review : us')")
    parser.add_argument("--temperature", nargs="+", type=_checked_arg(float, check_temperature), default=[0.5, 1.0],
                        metavar="T", help="temperatures, each used with every prompt and seed (default 0.5 1.0)")
    parser.add_argument("--seed", nargs="+", type=_checked_arg(int, _seed), default=[0],
                        help="sampler seeds (default 0)")
    parser.add_argument("--max-new-tokens", type=_checked_arg(int, _max_tokens), default=40,
                        help="tokens each model generates after the prompt, also the timed length (default 40)")
    add_sampling_flags(parser, temperature=False)
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="write PATH.md and PATH.json (default RUN/compare-NAME, without --run ./compare-NAME)")
    look = parser.add_argument_group("looking inside (the lecture's print_probs)")
    look.add_argument("--show-probs", action="store_true",
                      help="for the first text of each model: every step's context shaded by (last-layer) attention "
                           "and the 5 likeliest next tokens")
    look.add_argument("--heads", action="store_true", help="with --show-probs (implied), also each attention head")
    parser.set_defaults(handler=run_compare)


def run_compare(args) -> int:
    require_extra("gpt2", "transformers", "tf_keras", purpose="gpt-keras compare")
    existing_run(args.run)
    existing_file(args.data, "--data")
    from gpt_keras.tools import gpt2 as gpt2_lib
    from gpt_keras.core.generation import PromptWarning

    folder = args.run if args.run is not None else Path.cwd()
    stem = args.report if args.report is not None else folder / f"compare-{Path(args.gpt2).name}"
    for suffix in (".md", ".json"):
        _output(stem.with_name(stem.name + suffix), "--report")
    run = load_run_with_note(args.run, "compare") if args.run is not None else None
    gpt2 = gpt2_lib.load_gpt2(args.gpt2)
    prompts = args.prompt or ["wine review : germany", "wine review : us"]
    with warnings.catch_warnings():
        warnings.simplefilter("always", PromptWarning)
        comparison = gpt2_lib.compare(run, gpt2, args.data, prompts=prompts, temperatures=args.temperature,
                                      seeds=args.seed, max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                                      top_p=args.top_p, greedy=args.greedy, heldout=args.heldout)
    echo(comparison.format_table(width=None))
    if args.show_probs or args.heads:
        from gpt_keras.tools.viz import print_probs

        first = comparison.generations[0]
        vocabularies = {"ours": run.vocab if run is not None else None, "gpt2": gpt2_lib.TokenLabels(gpt2)}
        for key in comparison.keys:
            vocab = vocabularies[key]
            echo(f"\n{comparison.models[key]['name']}, step by step ({first['prompt']!r}, {first['sampler']}, "
                  f"seed {first['seed']}):")
            print_probs(comparison.info[key], vocab, heads=args.heads)
    folder = args.run if args.run is not None else Path.cwd()
    stem = args.report if args.report is not None else folder / f"compare-{Path(gpt2.name).name}"
    written = comparison.write(stem)
    echo(f"\nWrote {written['markdown']} and {written['json']}")
    return 0


def add_finetune_gpt2_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune-gpt2", help="fine-tune GPT-2 on the wine reviews (fit, mixed precision on a GPU, save_pretrained)",
        description="Fine-tunes TFGPT2LMHeadModel on the reviews of --data, leaving out the last --heldout "
                    "(the ones `gpt-keras compare` scores), and saves it with save_pretrained in --out, "
                    "which `gpt-keras compare --gpt2 OUT` loads.")
    parser.add_argument("--gpt2", default="gpt2", metavar="NAME|PATH", help="the model to start from (default gpt2)")
    parser.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: the data folder's full dataset, else the sample)")
    parser.add_argument("--out", type=Path, default=Path("runs/gpt2-wine"),
                        help="save_pretrained directory to write (replaced when done; default runs/gpt2-wine)")
    parser.add_argument("--epochs", type=_checked_arg(int, _count(1, maximum_of("epochs"))), default=1, help="default 1")
    parser.add_argument("--batch-size", type=_checked_arg(int, _count(1, maximum_of("batch_size"))), default=8, help="default 8")
    parser.add_argument("--max-length", type=_checked_arg(int, _count(2, maximum_of("max_len"))), default=128,
                        help="tokens per review, longer ones are cut (default 128)")
    parser.add_argument("--learning-rate", type=_checked_arg(float, _learning_rate), default=5e-5,
                        help="Adam's learning rate (default 5e-5)")
    parser.add_argument("--limit", type=_checked_arg(int, _count(1)), metavar="N",
                        help="train on the first N reviews only (default: all but the held-out ones)")
    parser.add_argument("--heldout", type=_checked_arg(int, _count(0)), default=200,
                        help="leave out the last N reviews, as `compare --heldout N` scores them (default 200)")
    parser.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                        help="auto: mixed precision only on a GPU (bfloat16, float16 on GPUs older than Ampere)")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=0,
                        help="seed of dropout and shuffling (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_finetune_gpt2)


def run_finetune_gpt2(args) -> int:
    require_extra("gpt2", "transformers", "tf_keras", purpose="gpt-keras finetune-gpt2")
    existing_file(args.data, "--data")
    from gpt_keras.tools import gpt2 as gpt2_lib

    gpt2_lib.check_finetune_out(args.out)
    policy = gpt2_lib.precision_policy(args.mixed_precision)
    echo(f"Fine-tuning {args.gpt2} on {gpt2_lib.device_description()}, dtype policy {policy}")
    result = gpt2_lib.finetune_gpt2(args.gpt2, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size,
                                    max_length=args.max_length, learning_rate=args.learning_rate, limit=args.limit,
                                    heldout=args.heldout, mixed_precision=args.mixed_precision, seed=args.seed,
                                    verbose=0 if args.quiet else progress_verbosity())
    losses = ", ".join(f"{loss:.4f}" for loss in result.history["loss"])
    echo(f"Trained on {result.reviews:,} reviews in {result.seconds:.1f} s; loss per epoch: {losses}")
    echo(f"Saved {result.out_dir} (save_pretrained)")
    heldout = f" --heldout {args.heldout}" if args.heldout not in (0, 200) else ""
    echo(f"Compare: gpt-keras compare --run RUN --gpt2 {result.out_dir}{heldout}")
    return 0


def _learning_rate(value: float) -> float:
    """The learning rate's one rule, the config's: `train --learning-rate` gives the same message."""
    check_config_field("learning_rate", value, "float")
    return value
