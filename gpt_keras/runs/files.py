"""Writing files so that a crash never leaves half of one behind.

Every file gpt-keras saves (models, checkpoints, vocabularies, configs, reports) is written to a
temporary file in the same folder and then renamed over the target: a rename within one file system
is atomic, so a reader sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `target`; renames it onto `target` only if the block succeeds.

    The temporary name keeps the target's suffix, because Keras picks the format from it
    (`.keras`, `.weights.h5`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    handle, name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}-", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes 0600; saved files get the usual mode
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def read_json(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Reads a JSON file; a missing or unreadable one raises `error` naming the file and what it should hold."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None


def write_text(target: str | Path, text: str) -> Path:
    """Writes text atomically (UTF-8)."""
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | Path, value: Any) -> Path:
    """Writes JSON atomically, indented for people to read."""
    return write_text(target, json.dumps(value, indent=2, ensure_ascii=False) + "\n")
