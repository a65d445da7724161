"""File locks shared by threads and processes: ``LockFile(path)`` holds an exclusive lock.

Creating a ``LockFile`` opens (creating if needed) the file and takes an exclusive lock on
it without waiting; ``LockError`` says someone else holds it. ``LockFile(path, timeout=None)``
with ``block=True`` waits in the kernel instead. ``release()`` drops the lock;
``remove()`` deletes the file.

On POSIX the lock is ``flock(2)``, which belongs to the open file description: two threads
of one process that each open the file exclude each other, as two processes do (``fcntl``
record locks would not: they belong to the process). Removing a lock file is safe only
while holding its lock, and a waiter that gets the lock of a file removed meanwhile holds
the lock of nothing: so after locking, the open file is compared with the path (device and
inode) and, when they differ, the lock is retried on the new file. With that rule a lock
file can be deleted after use without two holders ever sharing a path.

Windows uses ``msvcrt.locking`` on the first byte (``WindowsLockFile``); ``LockFile`` is the
platform's class.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

__all__ = ["LockError", "LockFile", "SystemLockFile", "UnixLockFile", "UnlockError",
           "WindowsLockFile"]


class LockError(Exception):
    """Could not obtain a lock."""

    msg = "Unable to lock %r"

    def __init__(self, path: str) -> None:
        super().__init__(self.msg % path)
        self.path = path


class UnlockError(LockError):
    """Could not release a lock."""

    msg = "Unable to unlock %r"


class SystemLockFile:
    """An exclusive lock on a file; the base class of the platform's lock files."""

    fp: IO[str] | None

    def __init__(self, path: str, block: bool = False) -> None:
        self.path = path
        while True:
            try:
                fp = open(path, "a+")
            except OSError:
                raise LockError(path) from None
            try:
                self._lock_file(fp, block)
            except OSError:
                fp.close()
                raise LockError(path) from None
            if self._still_named(fp):
                break
            fp.close()  # removed (or replaced) while we waited: lock the file there now
        self.fp = fp
        try:
            fp.seek(0)
            fp.truncate()
            fp.write(str(os.getpid()))
            fp.flush()
        except OSError:
            pass  # the pid is a courtesy for people; the lock holds without it

    def _still_named(self, fp: IO[str]) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fp.fileno())
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Release the lock (and close the file)."""
        fp, self.fp = self.fp, None
        if fp is None:
            return
        try:
            self._unlock_file(fp)
        except OSError:
            raise UnlockError(self.path) from None
        finally:
            fp.close()

    def remove(self) -> None:
        """Attempt to remove the file (do it while holding the lock)."""
        try:
            os.remove(self.path)
        except OSError:
            pass

    def _lock_file(self, fp: IO[str], block: bool) -> None:
        raise NotImplementedError

    def _unlock_file(self, fp: IO[str]) -> None:
        raise NotImplementedError

    def __enter__(self) -> SystemLockFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class UnixLockFile(SystemLockFile):
    """A lock with ``flock(2)``: shared by threads and processes alike."""

    def _lock_file(self, fp: IO[str], block: bool) -> None:
        import fcntl

        fcntl.flock(fp.fileno(), fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(self, fp: IO[str]) -> None:
        import fcntl

        fcntl.flock(fp.fileno(), fcntl.LOCK_UN)


class WindowsLockFile(SystemLockFile):
    """A lock with ``msvcrt.locking`` on the first byte of the file."""

    def _lock_file(self, fp: IO[str], block: bool) -> None:
        import msvcrt

        fp.seek(0)
        mode = msvcrt.LK_LOCK if block else msvcrt.LK_NBLCK  # type: ignore[attr-defined]
        msvcrt.locking(fp.fileno(), mode, 1)  # type: ignore[attr-defined]

    def _unlock_file(self, fp: IO[str]) -> None:
        import msvcrt

        fp.seek(0)
        msvcrt.locking(fp.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]

    def _still_named(self, fp: IO[str]) -> bool:
        return True  # Windows cannot remove a file that is open


LockFile: type[SystemLockFile] = WindowsLockFile if sys.platform == "win32" else UnixLockFile
"""The lock file class of this platform."""
