"""Cleanup of expired sessions: one Monitor on the site's bus per session store.

``start_cleanup(session)`` starts, on a session's first load, the Monitor of its store (the
key is ``session.cleanup_key()``: the class, and for files the directory), calling
``clean_up`` of a settings-only copy of the session every ``clean_freq`` minutes. The
Monitor's thread waits on an event, so idle it wakes only when a cleanup is due, and the
bus's ``stop`` ends it at once. ``stop_cleanup()`` stops and forgets them all.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["start_cleanup", "stop_cleanup"]

_cleaners: dict[Any, Any] = {}
_cleaners_lock = threading.Lock()


def start_cleanup(session: Any) -> None:
    """Start the cleanup Monitor of ``session``'s store, if it has none yet."""
    key = session.cleanup_key()
    from sitebus.site.container import bus

    if key in _cleaners and _cleaners[key].start in bus.listeners["start"]:
        return
    from sitebus.bus import states
    from sitebus.plugins import Monitor

    with _cleaners_lock:
        known = _cleaners.get(key)
        if known is not None and known.start in bus.listeners["start"]:
            return  # (one that code unsubscribed, as the reference's tests do, is replaced)
        monitor = Monitor(bus, session.cleaner().clean_up, session.clean_freq * 60,
                          name="Session cleanup")
        _cleaners[key] = monitor
        cls = type(session)
        if cls.__dict__.get("clean_thread") is None:
            cls.clean_thread = monitor
    monitor.subscribe()
    if bus.state not in (states.STOPPING, states.EXITING):
        monitor.start()


def stop_cleanup() -> None:
    """Stop and forget every cleanup Monitor (they start again on the next load)."""
    with _cleaners_lock:
        monitors = list(_cleaners.values())
        _cleaners.clear()
    for monitor in monitors:
        monitor.unsubscribe()
        if monitor.thread is not None:
            monitor.stop()
    from services.web.lib.sessions import Session

    for cls in _subclasses(Session):
        if "clean_thread" in cls.__dict__:
            setattr(cls, "clean_thread", None)  # noqa: B010


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found
