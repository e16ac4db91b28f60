"""Reading and writing files so that no file, disk or user can crash, hang or corrupt a run.

Every file gpt-keras saves (models, checkpoints, vocabularies, configs, reports) is written to a
temporary file in the same folder and then renamed over the target: a rename within one file system
is atomic, so a reader sees the old file or the new one, never a torn one. A failed write (a full
disk, say) raises `WriteError` naming the file and leaves the previous file and no temporary.

Every file gpt-keras reads is checked to be a regular file before it is opened, and opened without
blocking, so a FIFO or a device in its place is refused instead of hanging the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator
from gpt_keras.core.checks import GPTKerasError, printable  # noqa: F401  (printable: also imported from here)

MAX_MESSAGE = 500  # characters of an error line; a 200 MB one-line file is not echoed whole
_WORD = re.compile(r"\S+")  # what str.split() splits on, found one at a time
NAME_MAX = 255  # bytes of one file name on common file systems (ext4, APFS, NTFS)
# atomic_path's temporaries: ".{stem}-{8 random}.tmp{suffixes}", and those of earlier versions (".{stem}-{8}.keras").
_TEMPORARY = re.compile(r"^\.([^/\\]+-[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)*"
                        r"|(model|epoch-\d+|config|vocab|data|state|history|tokens)-[a-z0-9_]{8}\.(keras|json|npz))$")


class WriteError(GPTKerasError, OSError):
    """A file could not be written (full disk, no permission, a directory in the way); names the file."""


class UnsafePathError(GPTKerasError, ValueError):
    """An output path cannot be written, found before any work starts; names the flag and the path."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """One line of at most `limit` characters, control characters shown escaped (for error messages).

    The text is cut before it is escaped: only its first `limit + 1` characters (whitespace runs
    counted as one space) are looked at, so a message quoting a 300 MB one-line file costs what a
    short one does, instead of escaping the whole file to keep 500 characters of it.
    """
    text = str(text)
    words, size = [], -1
    for match in _WORD.finditer(text):  # lazily: words past the limit are never copied
        start = match.start()
        words.append(text[start:min(match.end(), start + limit - size)])
        size += 1 + len(words[-1])
        if size > limit:
            break
    text = printable(" ".join(words))
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- reading --------------------------------------------------------------------------------------

def check_regular_file(path: str | Path, what: str, error: type[Exception]) -> Path:
    """`path` must be a regular file (following symlinks); a FIFO, device or directory is refused, not opened."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path}: cannot read the {what} ({_reason(exc)})") from None
    if not stat.S_ISREG(mode):
        raise error(f"{path}: the {what} is not a regular file ({_kind(mode)})")
    return path


def open_regular(path: str | Path, what: str, error: type[Exception]) -> BinaryIO:
    """Opens a regular file for reading in binary, without ever blocking (O_NONBLOCK) on a FIFO swapped in."""
    path = check_regular_file(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({_reason(exc)})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise error(f"{path}: the {what} is not a regular file ({_kind(mode)})")
    return os.fdopen(descriptor, "rb")


def read_bytes(path: str | Path, what: str, error: type[Exception]) -> bytes:
    try:
        with open_regular(path, what, error) as handle:
            return handle.read()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({_reason(exc)})") from None


def read_json(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Reads a JSON file; a missing, non-regular, unreadable or absurdly nested one raises `error` naming it."""
    path = Path(path)
    data = read_bytes(path, what, error)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: cannot read the {what} (not UTF-8 text)") from None
    except RecursionError:
        raise error(f"{path}: cannot read the {what} (JSON nested too deeply)") from None
    except ValueError as exc:
        raise error(f"{path}: cannot read the {what} ({one_line(exc, 200)})") from None


def _reason(exc: BaseException) -> str:
    return one_line(getattr(exc, "strerror", None) or exc, 200)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a file"


# --- checking output paths before any work --------------------------------------------------------

def check_output_path(path: str | Path, flag: str, kind: str = "file") -> Path:
    """Raises `UnsafePathError` now if `path` could not be written later (`kind` "file" or "dir").

    Checks the name's length, that a file is not expected where a directory is (or the reverse), and
    that the nearest existing folder above it is a directory we may write in (`/dev/null/x` is not).
    """
    path = Path(path)
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise UnsafePathError(f"{flag}: the name {one_line(part, 60)} is longer than {NAME_MAX} bytes")
    if os.path.lexists(path):
        if kind == "file" and path.is_dir():
            raise UnsafePathError(f"{flag}: {one_line(path)} is a directory; give a file name")
        if kind == "file" and not path.is_file():
            raise UnsafePathError(f"{flag}: {one_line(path)} exists and is not a regular file")
        if kind == "dir" and not path.is_dir():
            raise UnsafePathError(f"{flag}: {one_line(path)} exists and is not a directory")
        _check_writable(path if kind == "dir" else path.parent, path, flag)
        return path
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UnsafePathError(f"{flag}: cannot create {one_line(path)}: {one_line(ancestor)} is not a directory")
    _check_writable(ancestor, path, flag)
    return path


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnsafePathError(f"{flag}: cannot write {one_line(path)}: no permission to write in {one_line(folder)}")


# --- writing --------------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` only if the block succeeds.

    The temporary name keeps the target's suffix, because Keras picks the format from it
    (`.keras`, `.weights.h5`), after a `.tmp` that marks it as ours (see `remove_stale_temporaries`).
    An `OSError` (a full disk, say) becomes a `WriteError` naming the target; the temporary is removed.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}-",
                                        suffix=".tmp" + "".join(target.suffixes), dir=target.parent)
    except OSError as exc:
        raise WriteError(f"{one_line(target)}: cannot write ({_reason(exc)})") from None
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; saved files get the usual mode
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    except WriteError:
        raise
    except OSError as exc:
        kept = "the previous file is kept" if os.path.lexists(target) else "nothing was written"
        raise WriteError(f"{one_line(target)}: cannot write ({_reason(exc)}); {kept}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Deletes the temporaries a killed process left in `directory` (only names `atomic_path` makes)."""
    removed = []
    if os.path.islink(directory):
        return removed  # a folder elsewhere is not the run's
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_text(target: str | Path, text: str) -> Path:
    """Writes text atomically (UTF-8)."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | Path, value: Any) -> Path:
    """Writes JSON atomically, indented for people to read."""
    return write_text(target, json.dumps(value, indent=2, ensure_ascii=False) + "\n")
