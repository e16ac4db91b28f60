"""The subcommands that make a run: download, tokenize, train (and --resume) and demo."""

from __future__ import annotations

import sys
from pathlib import Path

from gpt_keras.core.checks import maximum_of
from gpt_keras.core.config import ConfigError, GPTConfig
from gpt_keras.tools.cli.flags import (UsageError, _count, _checked_arg, _output, _seed, add_config_flags,
                                       config_from_args, existing_file, existing_run, progress_verbosity,
                                       require_extra)
from gpt_keras.tools.cli.terminal import echo


# --- download / tokenize --------------------------------------------------------------------------

def add_download_parser(subparsers) -> None:
    parser = subparsers.add_parser("download", help="fetch the full Kaggle wine-review dataset (needs gpt-keras[download])")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where to put it (default: $GPT_KERAS_DATA_DIR, else ./data if it holds the dataset, "
                             "else the per-user cache folder)")
    parser.set_defaults(handler=run_download)


def run_download(args) -> int:
    require_extra("download", "kagglehub", purpose="gpt-keras download")
    from gpt_keras.runs import datasets

    folder = datasets.data_dir(args.data_dir)
    echo(f"Downloading the Kaggle wine reviews into {folder}/")
    path = datasets.download_dataset(folder)
    hint = "" if args.data_dir is None else f" when run with GPT_KERAS_DATA_DIR={folder}"
    echo(f"Saved {path}; `gpt-keras train` now uses it{hint}.")
    return 0


def add_tokenize_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenize", help="vectorize reviews into a .npz for training on any backend")
    parser.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: full dataset or the sample)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    add_config_flags(parser)
    parser.set_defaults(handler=run_tokenize)


def run_tokenize(args) -> int:
    config = config_from_args(args)
    existing_file(args.data, "--data")
    from gpt_keras.runs.batches import save_tokens
    from gpt_keras.runs.train import prepare_data

    _output(args.out, "--out")
    prepared = prepare_data(config, args.data)
    save_tokens(args.out, prepared.tokens, prepared.vocab.words)
    echo(f"Wrote {args.out}: {prepared.tokens.shape[0]:,} reviews x {prepared.tokens.shape[1]} tokens, "
          f"vocabulary {len(prepared.vocab):,}")
    return 0


# --- train ------------------------------------------------------------------------------------------

def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the GPT with model.fit (TensorBoard, checkpoints, samples)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="Kaggle JSON or CSV (default: the data folder's full dataset, else the sample)")
    source.add_argument("--tokens", type=Path, help="train from a .npz written by `gpt-keras tokenize`")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs/)")
    parser.add_argument("--name", help="name of the new run directory (default: run-DATE-TIME)")
    parser.add_argument("--run", type=Path, help="the run directory to create, or to continue with --resume")
    parser.add_argument("--resume", action="store_true", help="continue --run (or the latest run) from its last epoch")
    parser.add_argument("--strategy", choices=("none", "data-parallel", "mirrored", "multiworker"), default="none",
                        help="data-parallel: Keras' own, on the JAX backend; mirrored/multiworker: tf.distribute; "
                             "--batch-size is then the global batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(parser)
    parser.set_defaults(handler=run_train)


def run_train(args) -> int:
    existing_file(args.data, "--data")
    existing_file(args.tokens, "--tokens")
    if args.resume:
        existing_run(args.run)
    else:  # the flags' values and the memory they need, checked before TensorFlow loads
        from gpt_keras.runs.memory import check_training_fits

        check_training_fits(config_from_args(args), str(args.config) if args.config else "")
    from gpt_keras.runs import rundir
    from gpt_keras.runs.resume import resume
    from gpt_keras.runs.train import train

    verbose = 0 if args.quiet else progress_verbosity()
    rundir.check_run_name(args.name)
    if args.resume:  # the same command again, plus --resume: its flags are checked against the run's config
        run_dir = rundir.resume_target(args.runs_dir, args.name, args.run)
        config = config_from_args(args, saved=rundir.read_config(run_dir / rundir.CONFIG))
        result = resume(run_dir, config, args.data, tokens_path=args.tokens, strategy=make_strategy(args.strategy),
                        print_fn=echo, verbose=verbose)
    else:
        result = train(config_from_args(args), args.data, runs_dir=args.runs_dir, run_name=args.name,
                       run_dir=args.run, tokens_path=args.tokens, strategy=make_strategy(args.strategy),
                       print_fn=echo, verbose=verbose)
    return _report_training(result)


def _report_training(result) -> int:
    """Where the run is and what to do next; exit code 1 when the loss became NaN."""
    if result.stopped_on_nan is not None:
        epoch, batch = result.stopped_on_nan
        kept = (f"The last good epoch is kept in {result.run_dir}: resume it with a lower --learning-rate and "
                "--resume." if (result.run_dir / "state.json").exists() else
                "No epoch finished, so nothing was kept to resume: start again with a lower --learning-rate.")
        echo(f"Training stopped: the loss became NaN at epoch {epoch}, batch {batch}. {kept}", error=True)
        return 1
    if not result.chief:
        echo("\nTraining finished; the chief worker saved the run (this worker's copy was temporary).")
        return 0
    echo(f"\nRun saved in {result.run_dir}")
    echo(f"  model:       {result.run_dir / 'model.keras'}")
    echo(f"  TensorBoard: tensorboard --logdir {result.run_dir / 'logs'}   (or: gpt-keras tensorboard --run {result.run_dir})")
    echo(f"  generate:    gpt-keras generate --run {result.run_dir} --prompt \"wine review : germany\" "
          "--temperature 0.5 --seed 0")
    return 0


def make_strategy(name: str):
    """The distribution for --strategy (None for none); see `gpt_keras.runs.distribute`."""
    from gpt_keras.runs import distribute

    makers = {"data-parallel": distribute.data_parallel, "mirrored": distribute.mirrored_strategy,
              "multiworker": distribute.multiworker_strategy}
    if name == "none":
        return None
    try:
        return makers[name]()
    except distribute.DistributeError as error:
        raise UsageError(f"--strategy {name}: {error} (see docs/distributed.md)") from None


# --- demo ------------------------------------------------------------------------------------------------

DEMO_PROMPTS = (("wine review : us", 1.0), ("wine review : italy", 0.5), ("wine review : germany", 0.5))


def add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="train the demo preset on the embedded sample and generate")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run goes (default runs/)")
    parser.add_argument("--epochs", type=_checked_arg(int, _count(1, maximum_of("epochs"))), default=None,
                        help="override the demo preset's epochs")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=0,
                        help="seed of training and sampling (default 0)")
    parser.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    """What `make demo` runs: the lecture's pipeline at demo size, then the lecture's three prompts."""
    changes = {"seed": args.seed, **({"epochs": args.epochs} if args.epochs is not None else {})}
    try:
        config = GPTConfig.preset("demo", **changes)
    except ConfigError as error:
        raise UsageError(f"--epochs/--seed: {error}") from None
    from gpt_keras.runs.datasets import SAMPLE_PATH as sample
    from gpt_keras.runs.train import train

    echo(f"gpt-keras demo: training the 'demo' preset on the embedded synthetic sample {sample}\n"
         f"  ({config.epochs} epochs; the lecture's size is `gpt-keras train --preset lecture`)")
    result = train(config, sample, runs_dir=args.runs_dir, print_fn=echo, verbose=progress_verbosity())
    vocab = result.text_generator.vocab
    infos = demo_generations(result.model, vocab, seed=args.seed, max_tokens=config.generate_max_tokens)
    _show_probs(infos[DEMO_PROMPTS[-1][0]][:4], vocab)
    echo(f"\nRun saved in {result.run_dir} (model.keras, vocab.json, config.json, checkpoints/)")
    echo(f"TensorBoard logs in {result.run_dir / 'logs'}: open them with\n"
         f"  {Path(sys.executable).parent / 'tensorboard'} --logdir {result.run_dir / 'logs'} --host 127.0.0.1\n"
         f"  (or `gpt-keras tensorboard --run {result.run_dir}`), then browse http://127.0.0.1:6006/")
    echo(f"Generate again (the same text and numbers): gpt-keras generate --run {result.run_dir} "
         f"--prompt \"wine review : germany\" --temperature 0.5 --seed {args.seed} --show-probs")
    return 0


def demo_generations(model, vocab, seed: int, max_tokens: int) -> dict[str, list[dict]]:
    """The lecture's three prompts, each drawn with a generator seeded afresh with `seed`.

    So each prompt's text and probabilities are those of `gpt-keras generate --run RUN --prompt PROMPT
    --temperature T --seed SEED` on the saved run (one generator drawing the three in turn would give the
    germany text the random numbers left over from the other two, and a text `generate` cannot repeat).
    """
    import numpy as np

    from gpt_keras.core.callbacks import TextGenerator

    generator = TextGenerator(vocab, seed=seed, every_epoch=False, print_fn=echo)
    generator.set_model(model)
    infos = {}
    for prompt, temperature in DEMO_PROMPTS:
        generator.set_rng_state(np.random.default_rng(seed).bit_generator.state)
        infos[prompt] = generator.generate(prompt, max_tokens=max_tokens, temperature=temperature)
    return infos


def _show_probs(info, vocab) -> None:
    from gpt_keras.tools.viz import print_probs

    echo("Where the model looked, and its next-word probabilities (first steps of the germany text):")
    print_probs(info, vocab)
