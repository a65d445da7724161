"""What the site notes of every ASGI request, as ``sitebus.servers.observe`` does for WSGI ones.

``AsgiObserver`` sits between ``AsgiSite``'s routing and an ASGI app. It reads the site's
settings from the tree each request, so there is one source for both kinds of app:

- **Proxy headers.** While ``engine.proxy`` is on, the tree's ``proxy`` (the rewrite of
  ``sitebus.site.proxyheaders``) is applied to a small environ made of the scope's
  ``Forwarded``/``X-Forwarded-*`` headers and peer; when the peer is trusted, the scope's
  ``client``, ``scheme``, ``server`` and ``Host`` header become what the proxy says. The same
  trust list and the same parsing as for WSGI apps: uvicorn's own ``proxy_headers`` stays off.
- **Request id** (``log.request_id``; by default only while access lines are written): a sane
  ``X-Request-ID`` from the client is kept, else one is made
  (``sitebus.servers.observe.new_request_id_bytes``) and put in the scope's headers, where
  Starlette, FastAPI and Django read headers; the response (a websocket's handshake
  response too) carries it unless the app set one.
- **Access line and metrics**: when the app returns, the access log gets the line the WSGI
  side writes (same format, duration and request id; the request target as the client sent
  it), and the metrics recorder the app's mount point, method, status and duration. A
  websocket session gets its line when it ends, as ``GET`` with status 101 once accepted (403
  if refused before, or the status of the app's denial response), the bytes of the messages
  sent and the session's length; it is left out of the metrics, whose durations are those
  of requests answered.
- **Limits**: in a pre-fork worker, the worker's ``RequestTracker`` counts each request and
  each websocket session, for ``server.max_requests``. The hung-request check
  (``server.worker_timeout``) is not per request here: a request that awaits (a slow
  upstream, a long stream) holds nothing up, so the server reports instead how long its
  event loop has not run (``UvicornServer.stalled``): a handler that computes or blocks
  stops every request of the worker.

When none of these is wanted the site calls the app directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from sitebus.servers.observe import new_request_id_bytes, sane_request_id
from sitebus.servers.wsgibridge import request_target

__all__ = ["AsgiObserver", "access_environ", "forward"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROXY_HEADERS = {b"forwarded": "HTTP_FORWARDED", b"x-forwarded-for": "HTTP_X_FORWARDED_FOR",
                  b"x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
                  b"x-forwarded-host": "HTTP_X_FORWARDED_HOST"}

_ACCESS_HEADERS = {b"referer": "HTTP_REFERER", b"user-agent": "HTTP_USER_AGENT",
                   b"host": "HTTP_HOST"}
"""The headers an access line may name ({f}, {a}, {o}), by their ASGI (lowercase) names."""


def forward(scope: Scope, proxy: Callable[[dict[str, Any]], None]) -> None:
    """Apply a trusted proxy's headers to ``scope`` through the tree's WSGI ``proxy`` rewrite."""
    environ: dict[str, Any] | None = None
    for name, value in scope["headers"]:
        key = _PROXY_HEADERS.get(name)
        if key is not None:
            if environ is None:
                environ = {}
            text = value.decode("latin-1")
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    if environ is None:
        return
    client = scope.get("client")
    environ["REMOTE_ADDR"] = str(client[0]) if client else ""
    environ["REMOTE_PORT"] = str(client[1]) if client else ""
    environ["wsgi.url_scheme"] = "https" if scope.get("scheme") in ("https", "wss") else "http"
    proxy(environ)
    if "sitebus.proxy_peer" not in environ:
        return  # the peer is not a trusted proxy: its headers say nothing
    port = environ["REMOTE_PORT"]
    scope["client"] = (environ["REMOTE_ADDR"], int(port) if port.isdigit() else 0)
    secure = environ["wsgi.url_scheme"] == "https"
    if scope["type"] == "websocket":
        scope["scheme"] = "wss" if secure else "ws"
    else:
        scope["scheme"] = "https" if secure else "http"
    host = environ.get("HTTP_HOST")
    if host is not None:
        scope["headers"] = [*((n, v) for n, v in scope["headers"] if n != b"host"),
                            (b"host", host.encode("latin-1"))]
        port = environ.get("SERVER_PORT", "")
        scope["server"] = (environ["SERVER_NAME"], int(port) if port.isdigit() else None)


def access_environ(scope: Scope) -> dict[str, str]:
    """Return what an access line reads of a request (a websocket's handshake is a GET),
    under the WSGI environ's names."""
    client = scope.get("client")
    environ = {"REMOTE_ADDR": str(client[0]) if client else "",
               "REQUEST_METHOD": scope.get("method", "GET"),
               "REQUEST_URI": request_target(scope),
               "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1")}
    for name, value in scope["headers"]:
        key = _ACCESS_HEADERS.get(name)
        if key is not None:
            environ[key] = value.decode("latin-1")
    return environ


def _request_id(scope: Scope) -> bytes:
    """Return the client's sane X-Request-ID, or a new one added to the scope's headers."""
    headers = scope["headers"]
    for name, value in headers:
        if name == b"x-request-id":
            if sane_request_id(value.decode("latin-1")) is not None:
                return bytes(value)
            headers = scope["headers"] = [(n, v) for n, v in headers if n != b"x-request-id"]
            break
    request_id = new_request_id_bytes()
    if type(headers) is list:
        headers.append((b"x-request-id", request_id))  # the server made it for this request
    else:
        scope["headers"] = [*headers, (b"x-request-id", request_id)]
    return request_id


def _with_request_id(send: Send, request_id: bytes) -> Send:
    """Return a ``send`` that adds ``X-Request-ID`` to the response unless the app set one
    (a closure, not a coroutine: the app awaits the server's ``send`` directly)."""
    header = (b"x-request-id", request_id)

    def send_with_id(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            for name, _value in headers:
                if name == b"x-request-id":  # lowercase, as ASGI requires
                    break  # the app's own
            else:
                message = {**message, "headers": [*headers, header]}
        return send(message)

    return send_with_id


class _Response:
    """The ``send`` of an app whose access line or metrics are wanted: notes the status and
    the size (the request id added by the ``send`` it wraps)."""

    __slots__ = ("_send", "status", "size")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500
        self.size = 0

    def send(self, message: Message) -> Awaitable[None]:
        """Note the message, and return the awaitable of sending it."""
        kind = message["type"]
        if kind == "http.response.body":
            self.size += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
        return self._send(message)


class _Session:
    """The ``send`` of a websocket session whose access line is wanted: notes its status
    and the bytes of the messages sent, and gives the handshake response the request id."""

    __slots__ = ("_send", "_header", "status", "size")

    def __init__(self, send: Send, request_id: bytes | None) -> None:
        self._send = send
        self._header = None if request_id is None else (b"x-request-id", request_id)
        self.status = 403  # what a session closed before it was accepted answers
        self.size = 0

    def send(self, message: Message) -> Awaitable[None]:
        """Note the message, and return the awaitable of sending it."""
        kind = message["type"]
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode("utf-8")
            self.size += len(data)
        elif kind == "websocket.accept":
            self.status = 101
            header = self._header
            if header is not None:
                headers = message.get("headers", ())
                if all(name.lower() != b"x-request-id" for name, _value in headers):
                    message = {**message, "headers": [*headers, header]}
        elif kind == "websocket.http.response.start":
            self.status = message["status"]  # the app's denial response
        elif kind == "websocket.http.response.body":
            self.size += len(message.get("body", b""))
        return self._send(message)


class AsgiObserver:
    """Note each ASGI request for the proxy, the request id, the access log, the metrics and
    the worker's limits, from the settings of the site's ``tree``."""

    def __init__(self, tree: Any = None, tracker: Any = None) -> None:
        self.tree = tree
        self.tracker = tracker
        """The pre-fork worker's ``sitebus.workers.worker.RequestTracker``, or None."""

    def count(self) -> None:
        """Count a request for the worker's ``server.max_requests``, if in a worker."""
        tracker = self.tracker
        if tracker is not None:
            tracker.count()

    async def websocket(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send
                        ) -> None:
        """Run a websocket session: counted, the proxy's headers applied, the request id
        given, and its access line written when it ends."""
        self.count()
        tree = self.tree
        if tree is None:
            return await app(scope, receive, send)
        if tree.proxy is not None:
            forward(scope, tree.proxy)
        log = tree.observer.log if tree.observer is not None else None
        logging = log is not None and log.wants_access()
        request_id = (_request_id(scope) if log is not None and log.wants_request_id(logging)
                      else None)
        if not logging and request_id is None:
            return await app(scope, receive, send)
        session = _Session(send, request_id)
        start = perf_counter()
        try:
            await app(scope, receive, session.send)
        finally:
            if logging:
                assert log is not None
                log.access(access_environ(scope), str(session.status), session.size,
                           perf_counter() - start,
                           request_id.decode("latin-1") if request_id else None)

    def http(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send,
             script_name: str) -> Awaitable[None]:
        """Return the awaitable that runs ``app`` on an http request and notes it (see the
        module docstring): the app's own coroutine when nothing is to be noted at its end."""
        tracker = self.tracker
        if tracker is not None:
            tracker.count()
        tree = self.tree
        if tree is None:
            return app(scope, receive, send)
        if tree.proxy is not None:
            forward(scope, tree.proxy)
        observer = tree.observer
        if observer is None:
            return app(scope, receive, send)
        log = observer.log
        metrics = observer.metrics
        logging = log is not None and log.wants_access()
        request_id = (_request_id(scope) if log is not None and log.wants_request_id(logging)
                      else None)
        if not logging and metrics is None:
            if request_id is None:
                return app(scope, receive, send)
            return app(scope, receive, _with_request_id(send, request_id))
        return self._observed(app, scope, receive, send, script_name, log, metrics, request_id,
                              logging)

    async def _observed(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                        script_name: str, log: Any, metrics: Any, request_id: bytes | None,
                        logging: bool) -> None:
        """Run ``app``, then write its access line and record its metrics."""
        start = perf_counter()
        response = _Response(send if request_id is None else _with_request_id(send, request_id))
        try:
            await app(scope, receive, response.send)
        finally:
            duration = perf_counter() - start
            status = str(response.status)
            if logging:
                assert log is not None
                size = 0 if scope["method"] == "HEAD" else response.size  # none is sent
                log.access(access_environ(scope), status, size, duration,
                           request_id.decode("latin-1") if request_id else None)
            if metrics is not None:
                metrics.record(script_name, scope["method"], status, duration)
