"""What the site notes of every request: its id, start, status, size and duration.

The tree (``sitebus.site.tree``) calls ``Observer.__call__`` around the app that answers a request
(not around the endpoints it keeps out of the access log). In one place, for every app
whatever its framework:

- **Request id.** ``X-Request-ID`` from the client (or the proxy in front) is kept when it is
  sane (1 to 200 characters of letters, digits and ``-_.:+/=@``); otherwise one is made: a
  random per-process prefix and a counter, unique without a system call per request. The app
  finds it in ``environ['HTTP_X_REQUEST_ID']`` (where frameworks look for the header) and in
  ``environ['sitebus.request_id']``; the response carries it as ``X-Request-ID`` unless the
  app set one. By default only while access lines are written (``log.request_id = None``);
  ``True`` gives every request one, ``False`` none.
- **Access line and metrics.** When the body is closed (so once it has been sent), the access
  log gets the line, with the duration, and the metrics recorder (``sitebus.site.metrics``) the
  request's app, method, status and duration.

When none of these is wanted the tree calls the app directly: nothing is added to the request.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

__all__ = ["Observer", "new_request_id", "new_request_id_bytes", "sane_request_id"]

REQUEST_ID_HEADER = "X-Request-ID"

sane_request_id = re.compile(r"[A-Za-z0-9\-_.:+/=@]{1,200}").fullmatch
"""Return a match when a client's request id may be kept as it is."""


class _Ids:
    """Request ids: a random prefix per process, then a counter."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(6) + "-"
        self.prefix_bytes = self.prefix.encode("ascii")
        self.counter = itertools.count(1)


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)  # a worker must not repeat its master's ids


def new_request_id() -> str:
    """Return a request id unique to this process's lifetime (and, by its prefix, others')."""
    return f"{_ids.prefix}{next(_ids.counter):x}"


def new_request_id_bytes() -> bytes:
    """``new_request_id`` as ASGI headers carry it (made as bytes: no text to encode)."""
    return b"%s%x" % (_ids.prefix_bytes, next(_ids.counter))


class Observer:
    """Note each request for the request id, the access log and the metrics."""

    def __init__(self, log: Any = None) -> None:
        self.log = log
        """The site's LogManager: its access log, and whether requests get an id."""
        self.metrics: Any = None
        """A ``sitebus.site.metrics.Recorder`` while ``engine.metrics`` is on, else None."""

    def __call__(self, app: Callable[..., Any], environ: dict[str, Any],
                 start_response: Callable[..., Any], script_name: str) -> Iterable[bytes]:
        log = self.log
        start = environ["sitebus.request_start"] = perf_counter()
        request_id = None
        logging = log is not None and log.wants_access()
        if log is not None and log.wants_request_id(logging):
            request_id = environ.get("HTTP_X_REQUEST_ID")
            if request_id is None or sane_request_id(request_id) is None:
                request_id = environ["HTTP_X_REQUEST_ID"] = new_request_id()
            environ["sitebus.request_id"] = request_id
        if not logging and self.metrics is None:
            if request_id is None:
                return app(environ, start_response)
            return app(environ, _with_id(start_response, request_id))
        status = ["500 Internal Server Error"]

        def recording_start_response(status_line: str, headers: Any, exc_info: Any = None
                                     ) -> Any:
            status[0] = status_line
            if request_id is not None:
                headers = _add_id(headers, request_id)
            if exc_info:
                return start_response(status_line, headers, exc_info)
            return start_response(status_line, headers)

        try:
            body = app(environ, recording_start_response)
        except BaseException:
            self.done(environ, status[0], 0, script_name, start, request_id, logging)
            raise
        return _Observed(body, self, environ, status, script_name, start, request_id, logging)

    def done(self, environ: dict[str, Any], status: str, size: int, script_name: str,
             start: float, request_id: str | None, logging: bool) -> None:
        """Write the access line and record the metrics of a finished request."""
        duration = perf_counter() - start
        if logging:
            if environ.get("REQUEST_METHOD") == "HEAD":
                size = 0  # the server sends no content for HEAD, whatever the app gave
            self.log.access(environ, status, size, duration, request_id)
        metrics = self.metrics
        if metrics is not None:
            metrics.record(script_name, environ.get("REQUEST_METHOD", ""), status, duration)


def _add_id(headers: list[tuple[str, str]], request_id: str) -> list[tuple[str, str]]:
    for name, _value in headers:
        if name.lower() == "x-request-id":
            return headers
    return [*headers, (REQUEST_ID_HEADER, request_id)]


def _with_id(start_response: Callable[..., Any], request_id: str) -> Callable[..., Any]:
    def start_response_with_id(status_line: str, headers: Any, exc_info: Any = None) -> Any:
        headers = _add_id(headers, request_id)
        if exc_info:
            return start_response(status_line, headers, exc_info)
        return start_response(status_line, headers)

    return start_response_with_id


class _Observed:
    """A response body that counts its bytes and reports the request when closed."""

    __slots__ = ("body", "observer", "environ", "status", "script_name", "start", "request_id",
                 "logging", "size", "counted")

    def __init__(self, body: Iterable[bytes], observer: Observer, environ: dict[str, Any],
                 status: list[str], script_name: str, start: float, request_id: str | None,
                 logging: bool) -> None:
        self.body = body
        self.observer = observer
        self.environ = environ
        self.status = status
        self.script_name = script_name
        self.start = start
        self.request_id = request_id
        self.logging = logging
        kind = type(body)
        self.counted = kind is list or kind is tuple
        self.size = sum(map(len, body)) if self.counted else 0

    def __iter__(self) -> Iterator[bytes]:
        if self.counted:
            return iter(self.body)
        return self._count()

    def _count(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self.observer.done(self.environ, self.status[0], self.size, self.script_name,
                               self.start, self.request_id, self.logging)
