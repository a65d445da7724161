"""The timeout monitor (``engine.timeout_monitor``): marks responses that run too long.

It tracks the requests in flight through the bus's ``before_request`` and
``after_request`` channels and, every ``frequency`` seconds (default 60) in its own thread,
calls ``check_timeout()`` on each response; a response past its ``response.timeout`` gets
``timed_out``, and the request stops with TimeoutError at its next stage. Subscribed by
default; ``engine.timeout_monitor.on = False`` turns it off.
"""

from __future__ import annotations

import threading
from typing import Any

from services.web._serving import serving
from sitebus.plugins import Monitor

__all__ = ["TimeoutMonitor", "register"]


class TimeoutMonitor(Monitor):
    """Check the timeout of every response in flight, periodically."""

    def __init__(self, bus: Any) -> None:
        self.servings: dict[int, tuple[Any, Any]] = {}
        super().__init__(bus, self.run, frequency=60, name="_TimeoutMonitor")

    def before_request(self) -> None:
        """Track the current thread's request and response."""
        self.servings[threading.get_ident()] = (serving.request, serving.response)

    def after_request(self) -> None:
        """Stop tracking the current thread's request."""
        self.servings.pop(threading.get_ident(), None)

    def run(self) -> None:
        """Check the timeout of every response in flight."""
        for _request, response in list(self.servings.values()):
            response.check_timeout()


def register(bus: Any) -> None:
    """Create ``bus.timeout_monitor`` (subscribed) and make it configurable by name."""
    from sitebus.site import container as site

    def factory(owner: Any) -> TimeoutMonitor:
        return TimeoutMonitor(owner)

    site.ENGINE_PLUGINS.setdefault("timeout_monitor", factory)
    if getattr(bus, "timeout_monitor", None) is None:
        bus.timeout_monitor = factory(bus)
        for channel in ("before_request", "after_request"):
            bus.listeners.setdefault(channel, set())
        bus.timeout_monitor.subscribe()
