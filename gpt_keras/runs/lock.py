"""`RunLock`: one training process per run directory, released by the operating system even on SIGKILL."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from gpt_keras.runs.files import remove_stale_temporaries
from gpt_keras.runs.rundir import CHECKPOINTS, LOCK, LOGS, RunError

# What opening something other than a regular file as the lock gives (a symlink, a directory, a FIFO, a socket);
# any other error (a full disk, no free inode, a read-only file system) is named as it is.
_NOT_A_FILE = {errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR, errno.EOPNOTSUPP}


class RunLock:
    """An exclusive lock on a run directory, held while a process trains in it.

    `filelock` takes it (flock on Unix, LockFileEx on Windows), so the operating system releases it
    when the process ends, even on SIGKILL, and a crashed run can be resumed at once, while a second
    live training in the same directory is refused. The lock file is opened without following a
    symlink (O_NOFOLLOW), and anything but a regular file there is refused, so `run.lock` can never
    make the process write elsewhere. On entry, temporaries a killed process left are removed.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._lock = None

    def __enter__(self) -> "RunLock":
        from filelock import FileLock, Timeout

        self._check_regular()
        lock = FileLock(str(self.path), timeout=0, is_singleton=False)
        try:
            lock.acquire()
        except Timeout:
            raise RunError(f"{self.path.parent}: in use by another training process (pid {self._holder()}); "
                           "wait for it to finish or use another run directory") from None
        except OSError as error:
            hint = f"; {LOCK} must be a regular file" if error.errno in _NOT_A_FILE else ""
            raise RunError(f"{self.path}: cannot lock the run ({error.strerror or error}){hint}") from None
        self._lock = lock
        try:
            self._check_regular()
            self._check_folders()
            self._write_pid()
            for folder in (self.path.parent, self.path.parent / CHECKPOINTS):
                remove_stale_temporaries(folder)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check_regular(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            raise RunError(f"{self.path}: not a regular file (a symlink, directory or FIFO); remove it to use "
                           "this run")

    def _check_folders(self) -> None:
        """Training writes and prunes in logs/ and checkpoints/: never through a symlink to a folder elsewhere."""
        for name in (LOGS, CHECKPOINTS):
            path = self.path.parent / name
            if os.path.islink(path) or (os.path.lexists(path) and not path.is_dir()):
                raise RunError(f"{path}: must be a directory of the run (not a symlink or a file); move it away "
                               "to use this run")

    def _flags(self, access: int) -> int:
        return access | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

    def _write_pid(self) -> None:
        """The holder's pid, for the "in use" message of a refused process (best effort: Windows locks it)."""
        try:
            descriptor = os.open(self.path, self._flags(os.O_WRONLY))
            try:
                if stat.S_ISREG(os.fstat(descriptor).st_mode):
                    os.ftruncate(descriptor, 0)
                    os.write(descriptor, str(os.getpid()).encode())
            finally:
                os.close(descriptor)
        except OSError:
            pass

    def _holder(self) -> str:
        try:
            descriptor = os.open(self.path, self._flags(os.O_RDONLY))
            try:
                text = os.read(descriptor, 32).decode("ascii", "replace").strip() \
                    if stat.S_ISREG(os.fstat(descriptor).st_mode) else ""
            finally:
                os.close(descriptor)
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def __exit__(self, *exc_info) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
