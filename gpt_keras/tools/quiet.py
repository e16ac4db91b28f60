"""A quiet terminal: no TensorFlow, absl, CUDA or XLA log lines unless asked for.

TensorFlow's native libraries write their start-up lines ("oneDNN custom operations are on", "Could not
find cuda drivers", "failed call to cuInit") straight to file descriptor 2 while `import tensorflow`
runs, before its log level applies, so `TF_CPP_MIN_LOG_LEVEL=3` alone still leaves a few. `quiet_tensorflow()`
sets that level for everything later and, for the import itself, sends descriptor 2 to a temporary file
and then passes on every line that is not such a log line (a real error during the import still shows).
It imports nothing heavy: TensorFlow is quieted whenever something imports it, or never if nothing does.

The command line calls it first; a notebook calls `gpt_keras.quiet_tensorflow()` in its first cell.
`--verbose` on the command line, `GPT_KERAS_VERBOSE=1` or `quiet_tensorflow(verbose=True)` leave every
line as TensorFlow writes it. `python -m gpt_keras.tools.quiet MODULE ARGS...` runs a module (TensorBoard)
quietly in the same way.

The command line also calls `plain_warnings`: Python prints a warning with the file, the line number and
the source line of the code that raised it, which helps that code's developer and puzzles a class. A
warning for the user (an unknown prompt word) becomes one line, `gpt-keras generate: warning: ...`; the
libraries' notices to their own developers (deprecations such as Starlette's `HTTP_422_UNPROCESSABLE_ENTITY
is deprecated`, which the lab's web server triggers on every request, and TensorBoard's "NOTE: Using
experimental fast data loading logic") are not shown. `--verbose` shows everything as the libraries write it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
import warnings

VERBOSE_VARIABLE = "GPT_KERAS_VERBOSE"
# glog/absl lines (`I0000 00:00:1796098905.063249   28873 port.cc:153] ...`), absl's pre-init notice, and the
# continuation line of TensorFlow's CPU-instructions notice.
_NATIVE_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|^WARNING: All log messages before absl::InitializeLog"
                              r"|^To enable the following instructions: .* rebuild TensorFlow")


def verbose_requested() -> bool:
    """True when `GPT_KERAS_VERBOSE` is set to 1, true, yes or on."""
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def quiet_tensorflow(verbose: bool | None = None) -> None:
    """Hides TensorFlow's native log lines and its Python warnings for the rest of the process.

    Call it before TensorFlow is imported (it is harmless after, but the import's lines are then
    already out). `verbose=None` reads `GPT_KERAS_VERBOSE`; a verbose call changes nothing.
    """
    if verbose if verbose is not None else verbose_requested():
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # errors included: on a CPU, "failed call to cuInit" is one
    if "tensorflow" in sys.modules:
        _quiet_python_loggers()
    elif not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def is_native_log_line(line: str) -> bool:
    """True for a line that TensorFlow's or XLA's C++ logging wrote (what `quiet_tensorflow` hides)."""
    return bool(_NATIVE_LOG_LINE.match(line))


@contextlib.contextmanager
def native_logs_filtered():
    """Within the block, what is written to descriptor 2 is held back; afterwards every line that is not
    a native log line is written to stderr. Without a usable descriptor 2 it does nothing."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not is_native_log_line(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def plain_warnings(prefix: str, verbose: bool | None = None) -> None:
    """From now on, every warning is one line on stderr, `PREFIX: warning: MESSAGE`, and deprecation
    notices from other libraries are not shown. `verbose=None` reads `GPT_KERAS_VERBOSE`; verbose changes nothing.

    It replaces `warnings.showwarning`, so Python's filters still decide what is shown and how often;
    `warnings.catch_warnings()` puts the previous printer back.
    """
    if verbose if verbose is not None else verbose_requested():
        return
    warnings.showwarning = _one_line_printer(prefix)


def is_library_deprecation(category: type[Warning]) -> bool:
    """A deprecation notice from another package (the reader cannot act on it); this package's own are kept."""
    if category.__module__.split(".")[0] == "gpt_keras":
        return False
    return issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) \
        or "deprecat" in category.__name__.lower()  # StarletteDeprecationWarning is a UserWarning


def one_line_warning(prefix: str, message, category: type[Warning]) -> str:
    """`PREFIX: warning: MESSAGE` on one line; a category other than UserWarning (and its own) is named."""
    text = " ".join(str(message).split())
    named = "" if category.__name__ in ("UserWarning", "PromptWarning") else f"{category.__name__}: "
    return f"{prefix}: warning: {named}{text}"


def _one_line_printer(prefix: str):
    def show_warning(message, category, filename, lineno, file=None, line=None):
        if is_library_deprecation(category):
            return
        stream = file if file is not None else sys.stderr
        with contextlib.suppress(OSError, ValueError, AttributeError):  # as Python's own: a closed stderr is no error
            stream.write(one_line_warning(prefix, message, category) + "\n")
    return show_warning


# TensorBoard's notice that it uses its own fast loader: written straight to stderr on every start.
TENSORBOARD_NOTICE = "NOTE: Using experimental fast data loading logic"


class _WithoutNotices:
    """A text stream that passes on every write except those holding one of `notices` (one write each)."""

    def __init__(self, stream, notices: tuple[str, ...]):
        self._stream, self._notices = stream, notices

    def write(self, text):
        if any(notice in text for notice in self._notices):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding...: the real stream's
        return getattr(self._stream, name)


def _quiet_python_loggers() -> None:
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with descriptor 2 filtered."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def __getattr__(self, name):  # is_package, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        try:
            with native_logs_filtered():
                self._loader.exec_module(module)
        finally:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self._finder)
        _quiet_python_loggers()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual and hands it a loader that filters the import's native log lines."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or "tensorflow" in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader, self)
        return spec


def _run_module(argv: list[str]) -> None:
    """`python -m gpt_keras.tools.quiet MODULE ARGS...`: runs MODULE as `python -m` would, quietly."""
    import runpy

    if not argv:
        raise SystemExit("usage: python -m gpt_keras.tools.quiet MODULE [ARGS...]")
    quiet_tensorflow()
    plain_warnings(argv[0].split(".")[0])
    sys.stderr = _WithoutNotices(sys.stderr, (TENSORBOARD_NOTICE,))
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _run_module(sys.argv[1:])
