"""Deadlines for lock waits: ``Timer``, ``NeverExpires``, ``LockChecker``, ``LockTimeout``.

A lock wait (a session's file lock) keeps a timer and asks it ``expired()``; a LockChecker
raises LockTimeout instead of answering True, so a request that cannot get its session
within ``lock_timeout`` ends with an error rather than hanging. Timers use the monotonic
clock, so a change of the system time neither shortens nor lengthens a wait (the reference
uses the wall clock).
"""

from __future__ import annotations

import datetime
import time

__all__ = ["LockChecker", "LockTimeout", "NeverExpires", "Timer", "seconds"]


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
    """A simple timer that will indicate when an expiration time has passed.

    ``expiration`` is a ``time.monotonic()`` value.
    """

    def __init__(self, expiration: float) -> None:
        self.expiration = expiration

    @classmethod
    def after(cls, elapsed: float | datetime.timedelta) -> Timer:
        """Return a timer that will expire after ``elapsed`` (seconds or a timedelta)."""
        return cls(time.monotonic() + (seconds(elapsed) or 0.0))

    def expired(self) -> bool:
        return time.monotonic() >= self.expiration

    def remaining(self) -> float | None:
        """Seconds left before expiry (0 once expired)."""
        return max(0.0, self.expiration - time.monotonic())


class LockTimeout(Exception):
    """An exception when a lock could not be acquired before a timeout period."""


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
