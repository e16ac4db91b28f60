"""What the command line writes to the terminal: every line through `printable`, the one escaper.

A prompt, a vocabulary word, a file name or a message quoting them can hold control characters (ESC,
BEL, carriage return), bidi overrides (U+202E) or zero-width characters (U+200B); printed raw they
would let the data recolour, redraw, reorder or hide what the terminal shows. So the command line
prints through `echo`, its warnings and errors are `one_line`s (which escape with the same function),
and `print_probs` escapes each word it shows.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

from gpt_keras.core.checks import printable
from gpt_keras.runs.files import one_line


def echo(text: object = "", *, error: bool = False, flush: bool = False) -> None:
    """`print` for the command line's messages: newlines kept, every other unprintable character escaped."""
    print(printable(text, keep_newlines=True), file=sys.stderr if error else sys.stdout, flush=flush)


def say_line(command: str, kind: str, message: object) -> None:
    """One escaped line on stderr: `gpt-keras COMMAND: KIND: message` (kind: error, warning, note)."""
    print(f"gpt-keras {command}: {kind}: {one_line(message)}", file=sys.stderr)


@contextlib.contextmanager
def terminal_warnings(command: str) -> Iterator[None]:
    """While a command runs, every warning is one escaped line on stderr.

    gpt-keras' own (a prompt's unknown words, a prompt longer than the window) read as
    `gpt-keras COMMAND: warning: ...`; another library's keep their category and origin. Python's
    default printer would send the message raw, over two lines.
    """
    def show_warning(message, category, filename, lineno, file=None, line=None):
        ours = getattr(category, "__module__", "").startswith("gpt_keras")
        say_line(command, "warning", message if ours else f"{category.__name__}: {message} ({filename}:{lineno})")

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        yield


def load_run_with_note(run_dir, command: str):
    """`load_run`, saying in one line when its model is not model.keras as training left it.

    A stale model.keras (a kill cut the final save short) is replaced by the last epoch's checkpoint,
    which `load_run` loaded instead; where that cannot be done (a training holds the run, the folder is
    read-only) the line says why and the file is left as it is.
    """
    from gpt_keras.runs.files import WriteError
    from gpt_keras.runs.repair import replace_stale_model
    from gpt_keras.runs.rundir import MODEL, RunError, load_run

    run = load_run(run_dir)
    note = run.note
    if note is not None and run.model_file != MODEL:
        try:
            note = replace_stale_model(run.path) or note
        except (RunError, WriteError) as error:
            note = f"{note} ({MODEL} left as it is: {error})"
    if note is not None:
        say_line(command, "note", note)
    return run
