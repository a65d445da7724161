"""Deadlines for lock waits: ``Timer``, ``NeverExpires``, ``LockChecker``, ``LockTimeout``.

``KeyedLocks`` holds a re-entrant lock per key (a session id), each kept only while held or
awaited. A lock wait (a session's file lock) keeps a timer and asks it ``expired()``; a LockChecker
raises LockTimeout instead of answering True, so a request that cannot get its session
within ``lock_timeout`` ends with an error rather than hanging. Timers use the monotonic
clock, so a change of the system time neither shortens nor lengthens a wait (the reference
uses the wall clock).
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

__all__ = ["KeyedLocks", "LockChecker", "LockTimeout", "NeverExpires", "Timer", "seconds"]


def seconds(value: float | datetime.timedelta | None) -> float | None:
    """Return a duration given as seconds or a timedelta in seconds (None stays None)."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


class NeverExpires:
    """A timer that never expires (a lock wait without a timeout)."""

    def expired(self) -> bool:
        return False

    def remaining(self) -> float | None:
        """Seconds left: None, for ever."""
        return None


class Timer:
    """Says whether a deadline has passed.

    ``expiration`` is a ``time.monotonic()`` value.
    """

    def __init__(self, expiration: float) -> None:
        self.expiration = expiration

    @classmethod
    def after(cls, elapsed: float | datetime.timedelta) -> Timer:
        """A timer whose deadline is ``elapsed`` (seconds or a timedelta) from now."""
        return cls(time.monotonic() + (seconds(elapsed) or 0.0))

    def expired(self) -> bool:
        return time.monotonic() >= self.expiration

    def remaining(self) -> float | None:
        """Seconds left before expiry (0 once expired)."""
        return max(0.0, self.expiration - time.monotonic())


class LockTimeout(Exception):
    """Raised when a lock is still held by another when the wait for it runs out."""


class LockChecker:
    """Keep track of the time and raise LockTimeout once ``timeout`` has passed.

    ``timeout`` is seconds or a timedelta; None waits for ever.
    """

    def __init__(self, session_id: str | None,
                 timeout: float | datetime.timedelta | None) -> None:
        self.session_id = session_id
        limit = seconds(timeout)
        self.timer: Timer | NeverExpires = NeverExpires() if limit is None else \
            Timer.after(limit)

    def expired(self) -> bool:
        if self.timer.expired():
            raise LockTimeout(f"Timeout acquiring lock for {self.session_id}")
        return False

    def remaining(self) -> float | None:
        """Seconds left (None: no timeout)."""
        return self.timer.remaining()


class KeyedLocks(dict):
    """Re-entrant locks by key, each kept only while someone holds or waits for it.

    ``acquire(key, timeout)`` returns False when the timeout (seconds; None waits for
    ever) passes first. Entries are counted, so the map does not grow with every session
    id ever seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mutex = threading.Lock()

    def acquire(self, key: Any, timeout: float | None = None) -> bool:
        with self._mutex:
            entry = self.get(key)
            if entry is None:
                entry = self[key] = [threading.RLock(), 0]
            entry[1] += 1
        acquired = entry[0].acquire(timeout=-1 if timeout is None else max(0.0, timeout))
        if not acquired:
            self._forget(key, entry)
        return acquired

    def release(self, key: Any) -> None:
        entry = self[key]
        entry[0].release()
        self._forget(key, entry)

    def _forget(self, key: Any, entry: list[Any]) -> None:
        with self._mutex:
            entry[1] -= 1
            if entry[1] <= 0 and self.get(key) is entry:
                del self[key]
