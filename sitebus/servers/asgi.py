"""The ASGI side of a site: its ASGI apps by prefix, their lifespans, the drain.

``AsgiMounts`` is what the site records as ``tree.<name>`` entries name ASGI apps. A server
serving ASGI (``sitebus.servers.asgiserver``) builds an ``AsgiSite`` from it: one ASGI app that

- routes ``http`` and ``websocket`` requests to the app mounted at the longest matching
  prefix, with ``root_path`` extended by the prefix and ``path`` left whole (as the ASGI spec,
  Starlette and Django read them);
- sends everything else (the health endpoint, WSGI apps, services.web apps, the 404 page)
  through the site's WSGI tree on a thread pool (``sitebus.servers.wsgibridge``), with
  ``SCRIPT_NAME`` and ``PATH_INFO`` set as a WSGI server sets them: so one socket serves both kinds.
  (The other way round, ASGI apps under a WSGI server, would lose websockets and streaming, and
  hold a thread per request.)
- runs each app's lifespan: startup before the server accepts, shutdown after it has drained;
  an app that raises before it receives anything (Django's ``asgi.py``) has no lifespan;
- notes each request of an ASGI app as the tree notes a WSGI one (``sitebus.servers.asgiobserve``):
  proxy headers, request id, access line, metrics, and the worker's request limits;
- when the server begins to stop, closes open websockets with 1001 (going away) and answers
  every request with ``Connection: close``, so keep-alive clients move to another process
  before the server closes the connections left idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from sitebus.errors import SitebusError
from sitebus.servers.asgiobserve import AsgiObserver
from sitebus.servers.wsgibridge import serve_wsgi

__all__ = ["AsgiMounts", "AsgiSite", "LifespanError", "Mount"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LIFESPAN_TIMEOUT = 30.0
"""Seconds an app's lifespan shutdown may take before the server stops without it."""


class LifespanError(SitebusError):
    """An ASGI app's lifespan startup failed: the site does not start (exit 70)."""


class Mount(NamedTuple):
    """One ASGI app at a prefix, for one virtual host or (``host`` None) every host; ``name``
    says where it came from (``tree.api 'main:app'``)."""

    script_name: str
    app: Any
    name: str
    host: str | None = None


class AsgiMounts:
    """The ASGI apps of a site by prefix, and the tree that serves everything else."""

    def __init__(self, log: Any = None, tree: Any = None) -> None:
        self.log = log
        self.tree = tree
        self.mounts: list[Mount] = []

    def mount(self, script_name: str, app: Any, name: str, host: str | None = None) -> None:
        """Mount ``app`` at ``script_name`` ('' for the root), for ``host`` only if given,
        replacing what was there."""
        script_name = script_name.rstrip("/")
        host = host.lower() if host else None
        self.mounts = [m for m in self.mounts if (m.script_name, m.host) != (script_name, host)]
        self.mounts.append(Mount(script_name, app, name, host))

    def __bool__(self) -> bool:
        return bool(self.mounts)

    def endpoints(self) -> Any:
        """The exact paths the tree answers before every app (the health endpoint)."""
        return getattr(self.tree, "endpoints", {}) or {}


def _host_of(scope: Scope) -> str | None:
    """The request's Host without its port, lowercased, or None without one."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").lower()
            if host.startswith("["):  # [::1]:8080
                return host[: host.find("]") + 1]
            return host.rsplit(":", 1)[0]
    return None


def _matches(path: str, script_name: str) -> bool:
    return (not script_name or path == script_name
            or (path.startswith(script_name) and path[len(script_name)] == "/"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


class Lifespan:
    """One app's lifespan protocol, run in the server's event loop."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount
        self.state: dict[str, Any] = {}
        self.supported = True
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._received = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        self._received = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        await self._outbox.put(message)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.mount.app(scope, self._receive, self._send)
        except BaseException as error:  # the app's own failure, reported by startup()
            self._error = error
        finally:
            self._outbox.put_nowait(None)

    async def startup(self) -> None:
        """Send lifespan.startup; raise LifespanError naming the app if it fails."""
        self._task = asyncio.ensure_future(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._outbox.get()
        if message is None:
            if self._error is None or not self._received:
                self.supported = False  # it raised at the scope, or ended: no lifespan
                return
            cause = f"{type(self._error).__name__}: {self._error}"
        elif message.get("type") == "lifespan.startup.complete":
            return
        elif message.get("type") == "lifespan.startup.failed":
            cause = _last_line(message.get("message", ""))
        else:
            cause = f"unexpected message {message.get('type')!r}"
        self.supported = False
        raise LifespanError(f"{self.mount.name}: the ASGI app's lifespan startup failed: {cause}")

    async def shutdown(self) -> str | None:
        """Send lifespan.shutdown and wait for the app; return what went wrong, if anything."""
        if not self.supported or self._task is None or self._task.done():
            return None
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(self._outbox.get(), LIFESPAN_TIMEOUT)
            await asyncio.wait_for(asyncio.shield(self._task), LIFESPAN_TIMEOUT)
        except asyncio.TimeoutError:
            self._task.cancel()
            return f"{self.mount.name}: the lifespan shutdown took over {LIFESPAN_TIMEOUT:g} s"
        if message is not None and message.get("type") == "lifespan.shutdown.failed":
            return (f"{self.mount.name}: the ASGI app's lifespan shutdown failed: "
                    f"{_last_line(message.get('message', ''))}")
        if self._error is not None:
            return (f"{self.mount.name}: the ASGI app's lifespan shutdown failed: "
                    f"{type(self._error).__name__}: {self._error}")
        return None


class AsgiSite:
    """The one ASGI app a server serves: ASGI mounts by prefix, the rest through WSGI."""

    def __init__(self, mounts: AsgiMounts, wsgi_app: Callable[..., Any] | None,
                 threads: int = 4, max_body: int = 0, log_error: Callable[..., Any] = print,
                 tracker: Any = None) -> None:
        self.lifespans = [Lifespan(mount) for mount in mounts.mounts]
        """In mount order: startups run in it, shutdowns in reverse."""
        by_depth = sorted(zip(mounts.mounts, self.lifespans, strict=True),
                          key=lambda pair: len(pair[0].script_name), reverse=True)
        self.mounts = [mount for mount, _ in by_depth]
        self.states = [lifespan.state for _, lifespan in by_depth]
        self.hosted: dict[str, list[int]] = {}
        """Indexes of the mounts for each virtual host, deepest first."""
        for index, mount in enumerate(self.mounts):
            if mount.host is not None:
                self.hosted.setdefault(mount.host, []).append(index)
        self.for_every_host = [i for i, mount in enumerate(self.mounts) if mount.host is None]
        self.tree = mounts.tree
        self.endpoints = mounts.endpoints()
        self.observer = AsgiObserver(self.tree, tracker)
        self.wsgi_app = wsgi_app
        self.threads = threads
        self.max_body = max_body
        self.log_error = log_error
        self.executor: ThreadPoolExecutor | None = None
        self.websockets: set[Send] = set()
        self.direct: ASGIApp | None = None
        """The one app, when a root ASGI app is all there is: requests skip the routing."""
        self.draining = False
        """Set when the server begins to stop: every response then closes its connection."""

    # -- lifespan --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start every app's lifespan in mount order; on a failure shut down those started."""
        self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="sitebus-wsgi")
        started: list[Lifespan] = []
        try:
            for lifespan in self.lifespans:
                await lifespan.startup()
                started.append(lifespan)
        except BaseException:
            for lifespan in reversed(started):
                await lifespan.shutdown()
            self.executor.shutdown(wait=False)
            raise
        tree = self.tree
        alone = (len(self.mounts) == 1 and not self.mounts[0].script_name
                 and self.mounts[0].host is None and not self.states[0]
                 and not self.endpoints and not getattr(tree, "apps", None)
                 and not getattr(tree, "vhosts", None))
        self.direct = self.mounts[0].app if alone else None

    async def shutdown(self) -> None:
        """Shut every app's lifespan down in reverse order; log what fails."""
        for lifespan in reversed(self.lifespans):
            problem = await lifespan.shutdown()
            if problem:
                self.log_error(problem, 40)
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    async def close_websockets(self, code: int = 1001) -> None:
        """Close every open websocket with ``code`` (1001: the server is going away)."""
        sends = list(self.websockets)
        self.websockets.clear()
        results = await asyncio.gather(
            *(send({"type": "websocket.close", "code": code}) for send in sends),
            return_exceptions=True)
        del results

    # -- requests --------------------------------------------------------------------------

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Return the awaitable that answers a request (the server awaits it).

        Not a coroutine of its own: a lone root app's request is the app's own coroutine,
        one frame less per request (the server is told the interface, ``asgi3``).
        """
        direct = self.direct
        if direct is not None and scope["type"] == "http" and not self.draining:
            return self.observer.http(direct, scope, receive, send, "")
        return self._route(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return  # the server runs the lifespans itself (startup/shutdown above)
        if self.draining and kind == "http":
            send = _closing(send)
        path = scope.get("path", "")
        if path not in self.endpoints:
            for index in self._candidates(scope):
                mount = self.mounts[index]
                if _matches(path, mount.script_name):
                    if self._wsgi_mounted_deeper(path, mount.script_name, mount.host):
                        break
                    scope["root_path"] = scope.get("root_path", "") + mount.script_name
                    state = self.states[index]
                    if state:
                        scope["state"] = dict(state)
                    if kind == "websocket":
                        await self._websocket(mount.app, scope, receive, send)
                    else:
                        await self.observer.http(mount.app, scope, receive, send,
                                                 mount.script_name)
                    return
        if kind == "http" and self.wsgi_app is not None:
            await self._wsgi(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    def _candidates(self, scope: Scope) -> list[int]:
        """Indexes of the mounts to try, deepest first: the request's virtual host's, then
        those for every host (as the tree routes WSGI apps)."""
        if not self.hosted:
            return self.for_every_host
        return [*self.hosted.get(_host_of(scope) or "", ()), *self.for_every_host]

    def _wsgi_mounted_deeper(self, path: str, script_name: str, host: str | None) -> bool:
        """True when the tree has an app at a longer prefix of ``path`` than ``script_name``
        (for every host, or for ``host`` when the ASGI app is that host's)."""
        apps = dict(getattr(self.tree, "apps", None) or {})
        if host is not None:
            apps.update((getattr(self.tree, "vhosts", None) or {}).get(host, {}))
        return any(len(name) > len(script_name) and _matches(path, name) for name in apps)

    async def _websocket(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send
                         ) -> None:
        async def tracked_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "websocket.accept":
                self.websockets.add(send)
            elif kind == "websocket.close":
                self.websockets.discard(send)
            await send(message)

        try:
            await self.observer.websocket(app, scope, receive, tracked_send)
        finally:
            self.websockets.discard(send)

    # -- the WSGI bridge -------------------------------------------------------------------

    async def _wsgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.executor is not None and self.wsgi_app is not None
        await serve_wsgi(self.wsgi_app, self.executor, scope, receive, send, self.max_body,
                         self.log_error)


def _closing(send: Send) -> Send:
    """Wrap ``send`` so the response says ``Connection: close`` (the client reconnects
    elsewhere instead of finding its keep-alive connection closed under its next request)."""

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(name, value) for name, value in message.get("headers", ())
                       if name.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing_send
