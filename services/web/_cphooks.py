"""Hooks: callbacks attached to the points of a request, run in priority order.

A Hook is a callback with its keyword arguments, a priority (lower runs first, default 50)
and a failsafe flag. A HookMap holds the hooks of one request by point; each point's list is
kept sorted as hooks are attached (equal priorities keep the order of attachment), so
running a point never sorts. When a hook fails, the rest of its point still runs only if
failsafe; the failure is raised once the point is done (HTTPError, HTTPRedirect and
InternalRedirect become the response; other errors are logged first).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect, InternalRedirect
from services.web._serving import serving

__all__ = ["Hook", "HookMap", "current_log", "hookpoints", "log_traceback"]

hookpoints = (
    "on_start_resource",
    "before_request_body",
    "before_handler",
    "before_finalize",
    "on_end_resource",
    "on_end_request",
    "before_error_response",
    "after_error_response",
)

# Errors that become the response instead of being logged as failures.
_ANSWERS = (HTTPError, HTTPRedirect, InternalRedirect)

def current_log() -> Any:
    """Return the current application's LogManager, or the site's outside a request."""
    log = getattr(serving.request.app, "log", None)
    if log is None:
        from services.web._cplogging import site_log as log
    return log


def log_traceback(severity: int = 40) -> None:
    """Write the current traceback to the current application's error log (or the site's)."""
    current_log().error(context="HTTP", severity=severity, traceback=True)


class Hook:
    """A function to call at a hook point: its order, arguments, whether it runs after errors."""

    callback: Callable[..., Any]
    failsafe = False
    """If True, the callback runs even when an earlier hook of its point failed."""
    priority = 50
    """Lower runs first; between 0 and 100 by convention."""
    kwargs: dict[str, Any]

    def __init__(self, callback: Callable[..., Any], failsafe: bool | None = None,
                 priority: int | None = None, **kwargs: Any) -> None:
        self.callback = callback
        self.failsafe = getattr(callback, "failsafe", False) if failsafe is None else failsafe
        self.priority = getattr(callback, "priority", 50) if priority is None else priority
        self.kwargs = kwargs

    def __lt__(self, other: Hook) -> bool:
        return self.priority < other.priority

    def __call__(self) -> Any:
        """Call the callback with the keyword arguments given at registration."""
        return self.callback(**self.kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(callback={self.callback!r}, failsafe={self.failsafe!r}, "
                f"priority={self.priority!r}, {self.kwargs!r})")


class HookMap(dict):
    """A map of hook points to lists of Hooks, each list kept in priority order."""

    def __init__(self, points: Any = None) -> None:
        super().__init__()
        for point in points or ():
            self[point] = []

    def __missing__(self, point: str) -> list[Hook]:
        hooks: list[Hook] = []
        self[point] = hooks
        return hooks

    def attach(self, point: str, callback: Callable[..., Any], failsafe: bool | None = None,
               priority: int | None = None, **kwargs: Any) -> None:
        """Register `callback` at `point`; of equal priorities, the first registered runs first."""
        self.add(point, Hook(callback, failsafe, priority, **kwargs))

    def add(self, point: str, hook: Hook) -> None:
        """Add an existing Hook at ``point``, after those of equal priority."""
        hooks = self.get(point)
        if hooks is None:
            self[point] = [hook]
        elif not hooks or hooks[-1].priority <= hook.priority:
            hooks.append(hook)
        else:
            bisect.insort_right(hooks, hook)

    def run(self, point: str) -> None:
        """Call the hooks registered at `point`, lowest priority number first."""
        hooks = self.get(point)
        if hooks:
            self.run_hooks(hooks)

    @staticmethod
    def run_hooks(hooks: list[Hook]) -> None:
        """Run ``hooks``; after a failure only failsafe ones run; then raise the failure."""
        exc: BaseException | None = None
        for hook in hooks:
            if exc is None or hook.failsafe:
                try:
                    hook()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except _ANSWERS as error:
                    exc = error
                except Exception as error:
                    exc = error
                    log_traceback()
        if exc is not None:
            raise exc

    def copy(self) -> HookMap:
        new = HookMap()
        for point, hooks in self.items():
            if hooks:
                new[point] = hooks[:]
        return new

    def __repr__(self) -> str:
        return f"{self.__module__}.{type(self).__name__}({dict.__repr__(self)})"
