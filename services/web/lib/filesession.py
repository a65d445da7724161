"""FileSession: each session a file in ``storage_path``, shared by threads and processes.

A session is the file ``SESSION_PREFIX + id`` holding ``pickle.dumps((data, expiration))``,
written to a temporary file and renamed over the old one, so a reader never sees half a
session. Its lock is the file beside it with ``LOCK_SUFFIX`` (``lib.lockfile``), which
excludes other threads and other processes (several workers may serve one site). Threads of
one process queue on an in-process lock first, so they wait without polling; a process
waiting for another process's lock blocks in the kernel when ``lock_timeout`` is None, and
otherwise retries with a growing pause (a few ms up to 50 ms) until the timeout, when
``LockTimeout`` ends the request. Lock files are removed while still locked (see
``lockfile``).

``clean_up`` (run by the cleanup Monitor, in every process) deletes expired sessions whose
lock it can take at once, and lock files left by a process that died.

Ids are checked (``Session.id_pattern``) before any path is made of them, and the path is
checked to lie in ``storage_path``.
"""

from __future__ import annotations

import datetime
import os
import pickle
import tempfile
import time
from typing import Any

from services.web.lib import lockfile, locking
from services.web.lib.locking import KeyedLocks
from services.web.lib.sessions import Session
from sitebus.errors import ConfigError

__all__ = ["FileSession"]


class FileSession(Session):
    """Sessions stored in files (``tools.sessions.storage_path``), one per session."""

    SESSION_PREFIX = "session-"
    LOCK_SUFFIX = ".lock"
    pickle_protocol = pickle.HIGHEST_PROTOCOL
    storage_path: str = ""
    """The directory where session files are kept (required; must exist)."""
    lock_timeout: float | datetime.timedelta | None = None
    """How long to wait for a session's lock (seconds or timedelta); None: for ever."""
    thread_locks = KeyedLocks()
    lock: lockfile.SystemLockFile | None = None

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        kwargs["storage_path"] = self._checked_path(kwargs.get("storage_path",
                                                               self.storage_path))
        kwargs.setdefault("lock_timeout", self.lock_timeout)
        _check_timeout(kwargs["lock_timeout"])
        self._held: dict[str, lockfile.SystemLockFile] = {}
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Check the settings of file-based sessions (once per set of settings)."""
        cls._checked_path(kwargs.get("storage_path", cls.storage_path))
        _check_timeout(kwargs.get("lock_timeout", cls.lock_timeout))

    @staticmethod
    def _checked_path(storage_path: Any) -> str:
        if not storage_path or not isinstance(storage_path, str):
            raise ConfigError("expected the directory to keep session files in",
                              key="tools.sessions.storage_path", value=storage_path)
        path = os.path.abspath(storage_path)
        if not os.path.isdir(path):
            raise ConfigError(f"no such directory: {path!r}",
                              key="tools.sessions.storage_path", value=storage_path)
        return path

    def cleanup_key(self) -> Any:
        return (type(self), self.storage_path)

    def cleaner(self) -> Session:
        cleaner = super().cleaner()
        cleaner._held = {}  # type: ignore[attr-defined]
        return cleaner

    def _get_file_path(self) -> str:
        if not self.id or not self.id_pattern.fullmatch(self.id):
            raise ValueError(f"invalid session id {self.id!r}")
        path = os.path.join(self.storage_path, self.SESSION_PREFIX + self.id)
        if os.path.dirname(path) != self.storage_path:
            raise ValueError(f"invalid session id {self.id!r}")
        return path

    # -- storage ----------------------------------------------------------------------------

    def _exists(self) -> bool:
        contents = self._load()
        return contents is not None and contents[1] > self.now()

    def _load(self, path: str | None = None
              ) -> tuple[dict[Any, Any], datetime.datetime] | None:
        if path is None:
            path = self._get_file_path()
        try:
            with open(path, "rb") as handle:
                contents = pickle.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
                AttributeError, ImportError):
            return None  # unreadable or damaged: as if it were not there
        if not (isinstance(contents, tuple) and len(contents) == 2):
            return None
        return contents

    def _save(self, expiration_time: datetime.datetime) -> None:
        path = self._get_file_path()
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=self.storage_path)
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump((self._data, expiration_time), handle, self.pickle_protocol)
            os.replace(temporary, path)
        except BaseException:
            try:
                os.remove(temporary)
            except OSError:
                pass
            raise

    def _delete(self, path: str | None = None) -> None:
        try:
            os.unlink(path or self._get_file_path())
        except OSError:
            pass

    # -- locks --------------------------------------------------------------------------------

    def acquire_lock(self, path: str | None = None) -> None:
        """Hold this session's lock, so other requests for it wait until it is saved."""
        if path is None:
            path = self._get_file_path()
        path += self.LOCK_SUFFIX
        if path in self._held:
            return  # already ours: a second acquire would wait on itself
        checker = locking.LockChecker(self.id, self.lock_timeout)
        if not self.thread_locks.acquire(path, checker.remaining()):
            checker.expired()
            raise locking.LockTimeout(f"Timeout acquiring lock for {self.id}")
        try:
            self._held[path] = self._lock_file(path, checker)
        except BaseException:
            self.thread_locks.release(path)
            raise
        self.locked = True

    @staticmethod
    def _lock_file(path: str, checker: locking.LockChecker) -> lockfile.SystemLockFile:
        if checker.remaining() is None:
            return lockfile.LockFile(path, block=True)
        pause = 0.002
        while True:
            try:
                return lockfile.LockFile(path)
            except lockfile.LockError:
                if not os.path.isdir(os.path.dirname(path)):
                    raise
                checker.expired()
                remaining = checker.remaining() or 0.0
                time.sleep(min(pause, remaining))  # another process holds it: no fd to wait on
                pause = min(pause * 2, 0.05)

    def release_lock(self, path: str | None = None) -> None:
        """Let the next request for this session in."""
        if path is None:
            path = self._get_file_path()
        path += self.LOCK_SUFFIX
        held = self._held.pop(path, None)
        if held is None:
            return
        try:
            held.remove()  # while locked: waiters notice and lock the next file
            held.release()
        finally:
            self.thread_locks.release(path)
            self.locked = bool(self._held)

    def clean_up(self) -> None:
        """Clean up expired sessions, and lock files without a live holder."""
        now = self.now()
        try:
            names = os.listdir(self.storage_path)
        except OSError:
            return
        prefix, suffix = self.SESSION_PREFIX, self.LOCK_SUFFIX
        for name in names:
            if not name.startswith(prefix):
                continue
            path = os.path.join(self.storage_path, name)
            if name.endswith(suffix):
                self._remove_orphan_lock(path, path[:-len(suffix)])
                continue
            lock_path = path + suffix
            if not self.thread_locks.acquire(lock_path, 0):
                continue
            try:
                try:
                    held = lockfile.LockFile(lock_path)
                except lockfile.LockError:
                    continue  # in use: it was just saved, so it has not expired
                try:
                    contents = self._load(path)
                    if contents is None or contents[1] < now:
                        self._delete(path)
                finally:
                    held.remove()
                    held.release()
            finally:
                self.thread_locks.release(lock_path)

    def __len__(self) -> int:
        """Return the number of stored sessions (their files; lock files are not counted),
        as ``RamSession`` counts those it holds."""
        try:
            names = os.listdir(self.storage_path)
        except OSError:
            return 0
        return sum(1 for name in names if name.startswith(self.SESSION_PREFIX)
                   and not name.endswith(self.LOCK_SUFFIX))

    def _remove_orphan_lock(self, lock_path: str, session_path: str) -> None:
        if os.path.exists(session_path) or not self.thread_locks.acquire(lock_path, 0):
            return
        try:
            held = lockfile.LockFile(lock_path)
        except lockfile.LockError:
            pass
        else:
            held.remove()
            held.release()
        finally:
            self.thread_locks.release(lock_path)


def _check_timeout(value: Any) -> None:
    if value is not None and not isinstance(value, (int, float, datetime.timedelta)) or \
            isinstance(value, bool):
        raise ConfigError("expected seconds (a number), a timedelta, or None to wait for "
                          f"ever, got {value!r}", key="tools.sessions.lock_timeout",
                          value=value)
