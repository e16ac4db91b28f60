"""The `gpt-keras` command line: download, tokenize, train, generate, tensorboard (and the classroom tools).

Each subcommand is a small `add_*_parser` function that declares its flags and a `run_*` function that
calls the library and prints. Bad input ends with one line on stderr naming the problem and exit code 2.
Flags, paths and config values are checked before TensorFlow is imported (`--help`, `--version` and the
temperature calculator never import it), and TensorFlow's own log lines, the libraries' deprecation notices and
the file and source line of a warning are hidden unless `--verbose`.

The package, by group of subcommands (each imports only `flags`, `terminal` and the library below it):

- `terminal.py`: what reaches the terminal, escaped (`echo`, one-line warnings and errors).
- `flags.py`: the flags several subcommands share and their checks (`add_config_flags`, `config_from_args`,
  `add_sampling_flags`, `existing_file`, `existing_run`, `require_extra`, `UsageError`).
- `training.py`: download, tokenize, train, demo.
- `generating.py`: generate, tensorboard.
- `classroom.py`: temperature, lab, notebook.
- `gpt2.py`: compare, finetune-gpt2.
- here: the parser assembled from `SUBCOMMANDS`, `main`, and the one-line handling of the user's errors;
  SIGTERM is turned into an exception while a command runs, so it cleans up as Ctrl-C does.
"""

from __future__ import annotations

from gpt_keras.tools.quiet import plain_warnings, quiet_tensorflow, verbose_requested  # first: before TensorFlow

import argparse
import contextlib
import signal
import sys
import threading
from typing import Sequence

from gpt_keras.core.checks import GPTKerasError
from gpt_keras.tools.cli.classroom import (NOTEBOOK_NAME, add_lab_parser, add_notebook_parser, add_temperature_parser,
                                           notebook_path, run_lab, run_notebook, run_temperature)
from gpt_keras.tools.cli.flags import (UsageError, add_config_flags, add_sampling_flags, config_from_args,
                                       existing_file, existing_run, progress_verbosity, require_extra)
from gpt_keras.tools.cli.generating import add_generate_parser, add_tensorboard_parser, run_generate, run_tensorboard
from gpt_keras.tools.cli.gpt2 import add_compare_parser, add_finetune_gpt2_parser, run_compare, run_finetune_gpt2
from gpt_keras.tools.cli.terminal import say_line, terminal_warnings
from gpt_keras.tools.cli.training import (DEMO_PROMPTS, add_demo_parser, add_download_parser, add_tokenize_parser,
                                          add_train_parser, make_strategy, run_demo, run_download, run_tokenize,
                                          run_train)

__all__ = [
    "main", "build_parser", "SUBCOMMANDS", "VERBOSE_HELP", "UsageError", "add_config_flags", "add_sampling_flags",
    "config_from_args", "existing_file", "existing_run", "progress_verbosity", "require_extra", "make_strategy",
    "DEMO_PROMPTS", "NOTEBOOK_NAME", "notebook_path",
    "add_download_parser", "add_tokenize_parser", "add_train_parser", "add_demo_parser", "add_generate_parser",
    "add_tensorboard_parser", "add_temperature_parser", "add_lab_parser", "add_notebook_parser",
    "add_compare_parser", "add_finetune_gpt2_parser",
    "run_download", "run_tokenize", "run_train", "run_demo", "run_generate", "run_tensorboard", "run_temperature",
    "run_lab", "run_notebook", "run_compare", "run_finetune_gpt2",
]

# --- main -----------------------------------------------------------------------------------------------

SUBCOMMANDS = [add_download_parser, add_tokenize_parser, add_train_parser, add_generate_parser,
               add_demo_parser, add_tensorboard_parser, add_temperature_parser, add_compare_parser,
               add_finetune_gpt2_parser, add_lab_parser, add_notebook_parser]
VERBOSE_HELP = "show TensorFlow's own log lines (also GPT_KERAS_VERBOSE=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt-keras", description=__doc__.splitlines()[0])
    # gpt_keras/__init__.py holds the version (pyproject.toml reads it); Python always imports it before this module.
    parser.add_argument("--version", action="version", version=f"gpt-keras {sys.modules['gpt_keras'].__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    for subparser in subparsers.choices.values():  # `gpt-keras train --verbose` as well as `gpt-keras --verbose train`
        subparser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


TEXT_FLAGS = {"prompt": "--prompt", "logits": "--logits"}  # flags whose values are text, not file names


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the same clean-up runs (a BaseException:
    no `except Exception` on the way swallows it)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or verbose_requested()
    quiet_tensorflow(verbose=args.verbose)
    plain_warnings(f"gpt-keras {args.command}", verbose=args.verbose)  # one line each, no file or source line
    try:
        with _sigterm_raises(), terminal_warnings(args.command):
            _check_text_flags(args)
            return args.handler(args)
    except KeyboardInterrupt:
        print("gpt-keras: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("gpt-keras: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as error:  # only the project's own "bad input" errors become one-line messages
        if not _is_user_error(error):
            raise
        say_line(args.command, "error", error)
        return 2


@contextlib.contextmanager
def _sigterm_raises():
    """While a command runs, SIGTERM (`kill`, a scheduler's stop) raises `Terminated` instead of ending the
    process on the spot, so what a failed start wrote is removed as after Ctrl-C. Only the main thread
    can install a handler; elsewhere SIGTERM keeps its usual effect."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raise_terminated(signum, frame):
    raise Terminated()


def _check_text_flags(args) -> None:
    """A prompt or a word is text: a byte that is not UTF-8 (the shell passes it on as a lone surrogate)
    cannot be a word of the vocabulary, nor be written to an HTML page, a CSV or JSON file."""
    for dest, flag in TEXT_FLAGS.items():
        values = getattr(args, dest, None)
        for value in _strings(values):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                raise UsageError(f"{flag}: not UTF-8 text ({_what_is(value[error.start])} at character "
                                 f"{error.start + 1}); write it in UTF-8") from None


def _what_is(character: str) -> str:
    """The byte a lone surrogate stands for (Python's escape of an undecodable byte), else its code point."""
    try:
        return f"byte 0x{character.encode('utf-8', 'surrogateescape').hex()}"
    except UnicodeEncodeError:
        return f"code point U+{ord(character):04X}"


def _strings(value):
    """Every string inside `value` (a string, or lists and tuples of them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _is_user_error(error: Exception) -> bool:
    """The project's own "bad input" errors, which all derive from `GPTKerasError`, become one line."""
    return isinstance(error, GPTKerasError)
