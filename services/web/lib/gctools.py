"""Hunting reference leaks: a page that counts live framework objects and shows referrers.

Mount ``GCRoot`` (``root.gc = GCRoot()``, or in site config ``tree.gc = "/gc",
services.web.lib.gctools.GCRoot()``) and open ``/gc/stats`` after some traffic. It collects
garbage, lists what the collector could not free (``gc.garbage``), then counts the live
instances of the classes in ``GCRoot.classes``: a Request and a Response for the request
being served, plus the defaults the framework keeps for code running outside requests, plus
one of each for every other request in flight (``RequestCounter`` counts them). Any excess
is a leak, shown with a tree of its referrers (``ReferrerTree``).

Creating a GCRoot subscribes a ``RequestCounter`` to the site bus (before_request and
after_request), so the counting costs nothing until the page exists.
"""

from __future__ import annotations

import gc
import inspect
import sys
import threading
from typing import Any

from services.web import _cprequest, _cpwsgi
from services.web._helper import expose
from services.web._serving import serving
from sitebus.plugins import SimplePlugin

__all__ = ["GCRoot", "ReferrerTree", "RequestCounter", "get_context", "get_instances"]


class ReferrerTree:
    """Walks `gc.get_referrers` up from an object, a few levels, to show what keeps it alive."""

    peek_length = 40

    def __init__(self, ignore: list[Any] | None = None, maxdepth: int = 2,
                 maxparents: int = 10) -> None:
        self.ignore = list(ignore or [])
        self.ignore.append(inspect.currentframe())
        self.maxdepth = maxdepth
        self.maxparents = maxparents

    def _ignored(self, obj: Any) -> bool:
        return any(obj is ignored for ignored in self.ignore)

    def ascend(self, obj: Any, depth: int = 1) -> list[tuple[Any, list[Any]]]:
        """The objects that refer to `obj`, each with its own referrers, down to `maxdepth`."""
        referrers = gc.get_referrers(obj)
        self.ignore.append(referrers)  # the list itself now refers to obj: not a finding
        if len(referrers) > self.maxparents:
            return [(f"[{len(referrers)} referrers]", [])]
        self.ignore.append(inspect.currentframe())
        go_deeper = depth < self.maxdepth
        found: list[tuple[Any, list[Any]]] = []
        for parent in referrers:
            if self._own_frame(parent) or self._ignored(parent):
                continue
            # A plain loop, not a comprehension: its frame would show up as a referrer.
            found.append((parent, self.ascend(parent, depth + 1) if go_deeper else []))
        return found

    def _own_frame(self, obj: Any) -> bool:
        return inspect.isframe(obj) and obj.f_code is self.ascend.__code__

    def peek(self, s: str) -> str:
        """`s` cut to `peek_length` characters, with an ellipsis when cut."""
        if len(s) > self.peek_length:
            return s[:self.peek_length] + "..."
        return s

    def _format(self, obj: Any, descend: bool = True) -> str:
        if inspect.isframe(obj):
            return f"<frame of function {obj.f_code.co_name!r}>"
        if not descend:
            return self.peek(_repr(obj))
        if isinstance(obj, dict):
            return "{" + ", ".join(f"{self._format(k, False)}: {self._format(v, False)}"
                                   for k, v in obj.items()) + "}"
        if isinstance(obj, list):
            return "[" + ", ".join(self._format(item, False) for item in obj) + "]"
        if isinstance(obj, tuple):
            return "(" + ", ".join(self._format(item, False) for item in obj) + ")"
        return self.peek(_repr(obj))

    def format(self, tree: list[tuple[Any, list[Any]]]) -> list[str]:
        """One indented line per object of an `ascend` tree, for a leak report."""
        output: list[str] = []

        def ascend(branch: list[tuple[Any, list[Any]]], depth: int = 1) -> None:
            for parent, grandparents in branch:
                output.append("    " * depth + self._format(parent))
                if grandparents:
                    ascend(grandparents, depth + 1)

        ascend(tree)
        return output


def _repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as error:  # a repr may fail; the page must not
        return f"<{type(obj).__qualname__} (repr failed: {type(error).__name__})>"


def get_instances(cls: type) -> list[Any]:
    """Return every live object that is an instance of ``cls``."""
    return [x for x in gc.get_objects() if isinstance(x, cls)]


def get_context(obj: Any) -> str:
    """Return a short description of a framework object (its path, status...)."""
    if isinstance(obj, _cprequest.Request):
        return f"path={obj.path_info};stage={obj.stage}"
    if isinstance(obj, _cprequest.Response):
        return f"status={obj.status}"
    if isinstance(obj, _cpwsgi.AppResponse):
        return f"PATH_INFO={obj.request.path_info}"
    if hasattr(obj, "tb_lineno"):
        return f"tb_lineno={obj.tb_lineno}"
    return ""


class RequestCounter(SimplePlugin):
    """Count the requests in flight (``count``) through before_request and after_request.

    It keeps the threads serving one, so a request that began before the counter existed
    cannot make the count negative.
    """

    def __init__(self, bus: Any) -> None:
        super().__init__(bus)
        self._threads: set[int] = set()

    @property
    def count(self) -> int:
        return len(self._threads)

    def start(self) -> None:
        self._threads.clear()

    def before_request(self) -> None:
        self._threads.add(threading.get_ident())

    def after_request(self) -> None:
        self._threads.discard(threading.get_ident())


_counter: RequestCounter | None = None
_counter_lock = threading.Lock()


def request_counter() -> RequestCounter:
    """Return the site bus's RequestCounter, subscribing it on first use."""
    global _counter
    with _counter_lock:
        if _counter is None:
            from sitebus.site.container import bus

            _counter = RequestCounter(bus)
            _counter.subscribe()
        return _counter


class GCRoot:
    """A page handler for testing reference leaks."""

    classes: list[tuple[type, int, int, str]] = [
        (_cprequest.Request, 2, 2,
         "One for this request, one kept for code running outside requests."),
        (_cprequest.Response, 2, 2,
         "One for this request, one kept for code running outside requests."),
        (_cpwsgi.AppResponse, 0, 0, "Should be none but those of other requests in flight."),
    ]
    """(class, minimum, maximum, why) for a quiet server; each other request in flight adds
    one to the maximum."""

    def __init__(self) -> None:
        self.counter = request_counter()

    @expose
    def index(self) -> str:
        return ('<html><body><h1>Garbage and reference leaks</h1>'
                '<p><a href="stats">Collect garbage and count live objects</a></p>'
                '</body></html>')

    @expose
    def stats(self) -> str:
        serving.response.headers["Content-Type"] = "text/plain"
        output = ["Statistics:"]
        others = max(0, self.counter.count - 1)
        if others:
            output.append(f"\n{others} other request(s) in flight: counts may be higher.")
        gc.collect()
        gc.collect()
        unreachable = gc.collect()
        if unreachable:
            output.append(f"\n{unreachable} unreachable objects collected.")
        if gc.garbage:
            trash: dict[str, int] = {}
            for obj in gc.garbage:
                name = type(obj).__qualname__
                trash[name] = trash.get(name, 0) + 1
            output.append(f"\n{len(gc.garbage)} uncollectable objects (gc.garbage):")
            output.extend(f"    {count} {name}" for name, count in sorted(trash.items()))
        found = {cls: get_instances(cls) for cls, _, _, _ in self.classes}
        problems = 0
        for cls, minimum, maximum, why in self.classes:
            objs = found[cls]
            if minimum <= len(objs) <= maximum + others:
                continue
            problems += 1
            expected = str(minimum) if minimum == maximum + others else \
                f"{minimum} to {maximum + others}"
            output.append(f"\nExpected {expected} {cls.__qualname__} instances, got "
                          f"{len(objs)}. {why}")
            for obj in objs:
                output.append(f"\nReferrers for {_repr(obj)} ({get_context(obj)}; "
                              f"refcount={sys.getrefcount(obj)}):")
                tree = ReferrerTree(ignore=[objs, found], maxdepth=3)
                output.extend(tree.format(tree.ascend(obj)))
        if not problems:
            output.append("\nNo unexpected instances.")
        return "\n".join(output)
