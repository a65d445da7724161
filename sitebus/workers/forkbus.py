"""ForkableBus: a bus that pre-fork workers can split and a forked child can run afresh.

The master of pre-fork workers (``sitebus.workers.master``) holds back the listeners that belong to
the workers (``take_listeners``); each worker resets the bus it inherited through the fork
and puts them back (``reset_after_fork``, ``put_listeners``), then logs under its own name
(``log_as``). These touch the Bus's internals, which a subclass may; ``sitebus.bus`` itself
stays as it is. The site's bus (``Engine`` in the site container) is one of these, so the
workers need nothing from the site's module: the arrow runs from the site to the workers.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus, states
from sitebus.process.signals import SignalHandler

__all__ = ["Entry", "ForkableBus"]

Entry = tuple[str, Callable[..., Any], int]
"""A listener as ``take_listeners`` returns it: channel, callback, priority."""


class ForkableBus(Bus):
    """A Bus whose listeners can be taken out and put back, and which a forked child resets."""

    signal_handler: SignalHandler

    def take_listeners(self, belongs: Callable[[str, Callable[..., Any]], bool]) -> list[Entry]:
        """Unsubscribe the listeners for which ``belongs(channel, callback)`` is true and return
        them with their priorities, in the order they run."""
        with self._listeners_lock:
            taken = [(channel, callback, self._priorities[(channel, callback)][0])
                     for channel, ordered in self._ordered.items() for callback in ordered
                     if belongs(channel, callback)]
        for channel, callback, _priority in taken:
            self.unsubscribe(channel, callback)
        return taken

    def put_listeners(self, entries: list[Entry]) -> None:
        """Subscribe listeners that ``take_listeners`` returned, keeping their order."""
        for channel, callback, priority in entries:
            self.subscribe(channel, callback, priority)

    def reset_after_fork(self) -> None:
        """In a forked child that is to run this bus afresh: STOPPED, fresh locks, no requests.

        The child inherits the bus as the parent's threads left it: STARTED, or STARTING with
        the lifecycle lock held by a thread that does not exist here. The listeners stay.
        """
        self._listeners_lock = threading.Lock()
        self._lifecycle_lock = threading.RLock()
        self._requests_lock = threading.Lock()
        self._state_changed = threading.Condition(threading.Lock())
        self._state = states.STOPPED
        self._starting_thread = None
        self._exit_after_start = self._exit_after_stop = self._exit_in_progress = False
        self._exit_done = threading.Event()
        self._main_calls = deque()
        self.execv = False
        self.inherit_fds = {}

    def log_as(self, context: str) -> None:
        """Log this bus's messages with ``context`` in place of ENGINE (``WORKER 1234``)."""
        self.log_sink = _ContextLog(context)  # type: ignore[method-assign]


class _ContextLog:
    """A log listener that writes to the ``sitebus`` logger with a context of its own."""

    def __init__(self, context: str) -> None:
        self.context = context

    def __call__(self, msg: str, level: int) -> None:
        logging.getLogger("sitebus").log(level, msg, extra={"context": self.context})
