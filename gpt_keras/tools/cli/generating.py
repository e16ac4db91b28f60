"""The subcommands that use a run: generate (and its views) and tensorboard."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpt_keras.core.checks import MAX_SAMPLES, check_room_after_prompt
from gpt_keras.tools.cli.flags import (UsageError, _count, _checked_arg, _max_tokens, _output, _port, _seed,
                                       add_sampling_flags, check_sampling_fits, existing_run)
from gpt_keras.tools.cli.terminal import echo, load_run_with_note


def add_generate_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate text from a trained run")
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by `gpt-keras train`")
    parser.add_argument("--prompt", default="wine review", help="start of the text (default 'wine review')")
    parser.add_argument("--max-tokens", type=_checked_arg(int, _max_tokens), default=None,
                        help="length of the text, prompt included, at most 2048 (default: the run's "
                             "generate_max_tokens, 80 unless its preset says otherwise, as the demo and training use)")
    parser.add_argument("--seed", type=_checked_arg(int, _seed), default=None,
                        help="seed of the sampler (same seed, same text)")
    parser.add_argument("--samples", type=_checked_arg(int, _count(1, MAX_SAMPLES)), default=1,
                        help=f"how many texts (default 1, at most {MAX_SAMPLES:,})")
    parser.add_argument("--method", choices=("cached", "lecture"), default="cached",
                        help="cached: key/value cache (fast); lecture: model.predict per word, as taught")
    add_sampling_flags(parser)
    look = parser.add_argument_group("looking inside (the lecture's print_probs)")
    look.add_argument("--show-probs", action="store_true",
                      help="after each text, every step's prompt shaded by attention and the 5 likeliest next words")
    look.add_argument("--heads", action="store_true", help="with --show-probs (implied), also each attention head")
    look.add_argument("--html", type=Path, metavar="PATH",
                      help="write a standalone HTML page of the generation (PATH-2.html... for more --samples)")
    look.add_argument("--heatmap", type=Path, metavar="PATH", help="write the attention of every step as a PNG")
    parser.set_defaults(handler=run_generate)


def run_generate(args) -> int:
    existing_run(args.run)
    _output(args.html, "--html")
    _output(args.heatmap, "--heatmap")
    check_sampling_fits(args.run, args.max_tokens)  # one text at a time: each is shown, written, then let go
    run = load_run_with_note(args.run, "generate")
    # max_tokens counts the prompt: say so now rather than print the prompt back with no word after it
    max_tokens = args.max_tokens if args.max_tokens is not None else run.config.generate_max_tokens
    check_room_after_prompt(len(run.vocab.encode(args.prompt)[0]), max_tokens, "--max-tokens", UsageError)
    generator = run.text_generator(seed=args.seed, method=args.method)
    for index in range(args.samples):  # each text's steps are shown and written, then let go: memory stays one text's
        info = generator.generate(args.prompt, max_tokens=max_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, greedy=args.greedy)
        if args.show_probs or args.heads:
            from gpt_keras.tools.viz import print_probs

            print_probs(info, run.vocab, heads=args.heads)
        _write_views(args, index, info, run.vocab)
    return 0


def _numbered(path: Path, index: int, count: int) -> Path:
    """PATH for one sample; PATH, PATH-2, PATH-3... (before the suffix) for several."""
    return path if count == 1 or index == 0 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _write_views(args, index: int, info: list, vocab) -> None:
    """--html and --heatmap of sample `index`: one file per sample."""
    if args.html is None and args.heatmap is None:
        return
    from gpt_keras.tools.viz import attention_heatmap, export_html

    if args.html is not None:
        path = export_html(info, vocab, _numbered(args.html, index, args.samples),
                           title=f"gpt-keras generate: {args.prompt}")
        echo(f"Wrote {path}")
    if args.heatmap is not None:
        if not info:
            echo(f"gpt-keras generate: no heatmap for sample {index + 1}: no word was generated "
                 "(is --max-tokens larger than the prompt?)", error=True)
            return
        echo(f"Wrote {attention_heatmap(info, _numbered(args.heatmap, index, args.samples))}")


# --- tensorboard ---------------------------------------------------------------------------------------

def add_tensorboard_parser(subparsers) -> None:
    parser = subparsers.add_parser("tensorboard", help="start TensorBoard on a run's logs (127.0.0.1)")
    parser.add_argument("--run", type=Path, required=True, help="a run directory (or runs/ for all runs)")
    parser.add_argument("--port", type=_checked_arg(int, _port), default=6006, help="1 to 65535 (default 6006)")
    parser.set_defaults(handler=run_tensorboard)


def run_tensorboard(args) -> int:
    log_dir = args.run / "logs" if (args.run / "logs").is_dir() else args.run
    if not log_dir.is_dir():
        raise UsageError(f"--run: {args.run} is not a directory")
    # TensorBoard imports TensorFlow too: run it through gpt_keras.tools.quiet unless --verbose.
    runner = ["-m"] if args.verbose else ["-m", "gpt_keras.tools.quiet"]
    command = [sys.executable, *runner, "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1",
               "--port", str(args.port)]
    echo(f"TensorBoard on http://127.0.0.1:{args.port}/ (Ctrl-C to stop)")
    os.execv(sys.executable, command)
    return 0  # not reached
