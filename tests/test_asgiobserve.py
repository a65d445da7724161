"""ASGI requests noted as WSGI ones are: the access line's shape, the metrics, the request id,
proxy headers from the site's one setting, and the worker's request count and hung check.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from sitebus.bus import Bus
from sitebus.servers.asgi import AsgiMounts, AsgiSite
from sitebus.site.logs import LogManager
from sitebus.site.metrics import Recorder
from sitebus.site.proxyheaders import ProxyHeaders
from sitebus.site.tree import Tree
from sitebus.workers.worker import RequestTracker

LINE = re.compile(r'(?P<h>\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                  r'"(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-) "(?P<f>[^"]*)" "(?P<a>[^"]*)" '
                  r'(?P<D>\d+) (?P<L>\S+)$')
"""An access line in the default format: Combined, then the duration (us) and request id."""


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError("no lifespan")
    seen = dict(scope["headers"])
    body = (f"{scope['client'][0]} {scope['scheme']} {seen.get(b'host', b'').decode()} "
            f"{seen.get(b'x-request-id', b'-').decode()}").encode()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"wsgi"]


@pytest.fixture
def log(tmp_path: Path) -> Any:
    manager = LogManager(appid=f"asgiobserve{id(tmp_path)}")
    manager.access_log.setLevel(logging.INFO)
    manager.access_log.propagate = False
    manager.access_file = str(tmp_path / "access.log")
    yield manager
    manager.access_file = ""


Site = Callable[[], AsgiSite]
"""Makes the site anew for each request: an AsgiSite lives in one event loop."""


def site_with(log: LogManager | None, wsgi: bool = False) -> tuple[Site, Tree]:
    tree = Tree(log)
    if wsgi:
        tree.graft(wsgi_hello, "/w")
    mounts = AsgiMounts(log, tree)
    mounts.mount("/api", hello, "tree.api")
    return lambda: AsgiSite(mounts, tree, threads=1), tree


def serve_once(site: AsgiSite, scope: Any, receive: Any, send: Any) -> None:
    """Start ``site``, let it answer one request (or session), and shut it down."""

    async def scenario() -> None:
        await site.startup()
        try:
            await site(scope, receive, send)
        finally:
            await site.shutdown()

    asyncio.run(scenario())


def call(make: Site, path: str, headers: Sequence[tuple[bytes, bytes]] = (),
         client: tuple[str, int] | None = ("127.0.0.1", 5000), method: str = "GET"
         ) -> tuple[int, bytes, dict[bytes, bytes]]:
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"q=%C3%A9", "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 8080), "client": client,
             "headers": [(b"host", b"site.test"), (b"user-agent", b"probe/1"), *headers]}

    serve_once(make(), scope, receive, send)
    start = sent[0]
    return (start["status"], b"".join(m.get("body", b"") for m in sent[1:]),
            dict(start["headers"]))


def test_an_asgi_access_line_has_the_shape_of_a_wsgi_one(log: LogManager, tmp_path: Path
                                                         ) -> None:
    site, tree = site_with(log, wsgi=True)
    status, body, headers = call(site, "/api/x")
    assert status == 201
    request_id = headers[b"x-request-id"].decode()
    assert body == f"127.0.0.1 http site.test {request_id}".encode()  # the app saw it too
    call(site, "/w/y")  # a WSGI app of the same site, through the bridge and the tree
    log.access_file = ""  # flushes
    asgi_line, wsgi_line = (tmp_path / "access.log").read_text().splitlines()
    asgi, wsgi = LINE.fullmatch(asgi_line), LINE.fullmatch(wsgi_line)
    assert asgi is not None and wsgi is not None, (asgi_line, wsgi_line)
    assert asgi.group("r") == "GET /api/x?q=%C3%A9 HTTP/1.1"
    assert wsgi.group("r") == "GET /w/y?q=%C3%A9 HTTP/1.1"
    assert (asgi.group("h", "s", "a"), wsgi.group("h", "s", "a")) == (
        ("127.0.0.1", "201", "probe/1"), ("127.0.0.1", "201", "probe/1"))
    assert asgi.group("b") == str(len(body)) and wsgi.group("b") == "4"
    assert asgi.group("L") == request_id and wsgi.group("L") != request_id


def test_a_head_request_logs_no_bytes(log: LogManager, tmp_path: Path) -> None:
    site, _tree = site_with(log, wsgi=True)
    call(site, "/api/x", method="HEAD")  # the apps give a body; the server sends none
    call(site, "/w/y", method="HEAD")
    log.access_file = ""  # flushes
    lines = [LINE.fullmatch(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert [(m.group("r").split()[0], m.group("b")) for m in lines if m] == [
        ("HEAD", "-"), ("HEAD", "-")]


def test_a_client_request_id_is_kept_and_an_app_s_own_header_wins(log: LogManager) -> None:
    site, _tree = site_with(log)
    _status, body, headers = call(site, "/api/x", [(b"x-request-id", b"abc-123")])
    assert headers[b"x-request-id"] == b"abc-123" and body.endswith(b" abc-123")
    _status, body, headers = call(site, "/api/x", [(b"x-request-id", b"bad id\x01")])
    assert headers[b"x-request-id"] != b"bad id\x01" and b"bad id" not in body
    log.request_id = False
    _status, body, headers = call(site, "/api/x")
    assert b"x-request-id" not in headers and body.endswith(b" -")


def test_request_ids_follow_the_access_log_unless_set(log: LogManager) -> None:
    site, _tree = site_with(log)
    assert log.request_id is None  # the default: an id while access lines are written
    assert b"x-request-id" in call(site, "/api/x")[2]
    log.access_file = ""  # no access log: no id made, none sent
    log.access_log.handlers.clear()  # pytest >= 9.2 adds its capture handler to such loggers
    _status, body, headers = call(site, "/api/x")
    assert b"x-request-id" not in headers and body.endswith(b" -")
    log.request_id = True  # asked for without an access log
    _status, body, headers = call(site, "/api/x")
    assert body.endswith(b" " + headers[b"x-request-id"])


async def echo_socket(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        raise ValueError("no lifespan")
    await receive()  # websocket.connect
    if scope["path"].endswith("/refused"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"] * 2})


def talk(make: Site, path: str, texts: Sequence[str]) -> list[Any]:
    """Open a websocket at ``path``, send ``texts``, disconnect; return what the app sent."""
    incoming = [{"type": "websocket.connect"},
                *({"type": "websocket.receive", "text": text} for text in texts),
                {"type": "websocket.disconnect", "code": 1000}]
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "http_version": "1.1", "scheme": "ws",
             "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 5001),
             "headers": [(b"host", b"site.test"), (b"user-agent", b"sock/1")],
             "subprotocols": []}
    serve_once(make(), scope, receive, send)
    return sent


def test_a_websocket_session_gets_an_access_line_and_counts_as_a_request(
        log: LogManager, tmp_path: Path) -> None:
    tree = Tree(log)
    mounts = AsgiMounts(log, tree)
    mounts.mount("/ws", echo_socket, "tree.ws")
    tracker = RequestTracker(limit=0)

    def site() -> AsgiSite:
        return AsgiSite(mounts, tree, threads=1, tracker=tracker)

    sent = talk(site, "/ws/chat", ["ab", "cde"])
    accept = sent[0]
    assert accept["type"] == "websocket.accept"
    request_id = dict(accept["headers"])[b"x-request-id"].decode()  # the handshake carries it
    assert [m["text"] for m in sent[1:]] == ["abab", "cdecde"]
    refused = talk(site, "/ws/refused", [])
    assert [m["type"] for m in refused] == ["websocket.close"]
    assert tracker.requests == 2
    log.access_file = ""  # flushes
    lines = [LINE.fullmatch(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert all(lines), lines
    assert [(m.group("r"), m.group("s"), m.group("b"), m.group("a")) for m in lines if m] == [
        ("GET /ws/chat HTTP/1.1", "101", "10", "sock/1"),
        ("GET /ws/refused HTTP/1.1", "403", "-", "sock/1")]  # no bytes: "-"
    assert lines[0] is not None and lines[0].group("L") == request_id


def test_metrics_count_asgi_requests_by_mount_point(log: LogManager) -> None:
    site, tree = site_with(None)
    recorder = Recorder()
    recorder._awake = True  # no writer thread: the snapshot is read by hand
    assert tree.observer is None
    tree.observer = Tree(log).observer
    assert tree.observer is not None
    tree.observer.metrics = recorder
    for _ in range(3):
        call(site, "/api/x")
    assert recorder.snapshot()["requests"] == [["/api", "GET", "201", 3]]
    assert sum(recorder.snapshot()["durations"]["/api"][:-1]) == 3


@pytest.mark.parametrize(("on", "trusted", "client", "seen"), [
    (True, "127.0.0.1", ("127.0.0.1", 5000), b"203.0.113.9 https example.org"),
    (True, "10.0.0.0/8", ("127.0.0.1", 5000), b"127.0.0.1 http site.test"),
    (True, "unix", None, b"127.0.0.1 https example.org"),  # the nearest untrusted hop
    (False, "127.0.0.1", ("127.0.0.1", 5000), b"127.0.0.1 http site.test"),
], ids=["trusted", "untrusted", "unix-socket", "off"])
def test_forwarded_headers_follow_the_site_s_proxy_settings(
        log: LogManager, tmp_path: Path, on: bool, trusted: str,
        client: tuple[str, int] | None, seen: bytes) -> None:
    site, tree = site_with(log)
    bus = Bus()
    proxy = ProxyHeaders(bus, tree)
    proxy.trusted = trusted
    if on:
        proxy.subscribe()
    forwarded = [(b"x-forwarded-for", b"203.0.113.9, 127.0.0.1"),
                 (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"example.org")]
    _status, body, _headers = call(site, "/api/x", forwarded, client=client)
    assert body.startswith(seen + b" ")
    log.access_file = ""
    line = LINE.fullmatch((tmp_path / "access.log").read_text().splitlines()[0])
    assert line is not None and body.startswith(line.group("h").encode() + b" ")


def test_a_worker_s_tracker_counts_asgi_requests() -> None:
    tracker = RequestTracker(limit=2)
    limits: list[int] = []
    tracker.on_limit = lambda: limits.append(tracker.requests)
    tree = Tree(None)
    mounts = AsgiMounts(None, tree)
    mounts.mount("", hello, "APP")

    def site() -> AsgiSite:
        return AsgiSite(mounts, tree, threads=1, tracker=tracker)

    assert call(site, "/a")[0] == 201
    call(site, "/b")
    assert tracker.requests == 2 and limits == [2]
    assert tracker.oldest(time.monotonic()) is None  # an awaiting request is not "hung"


def test_a_blocked_event_loop_is_reported_as_stalled() -> None:
    pytest.importorskip("uvicorn")
    from sitebus.servers.asgiserver import UvicornServer

    server = UvicornServer(None, AsgiSite(AsgiMounts(), None))  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        server.loop, server.ready = loop, True
        assert server.stalled(100.0) is None  # asks the loop, which has not run yet
        assert server.stalled(103.5) == 3.5  # still unanswered: blocked for 3.5 s
        loop.run_until_complete(asyncio.sleep(0))  # the loop runs: the probe is answered
        assert server.stalled(104.0) is None
        server.ready = False
        assert server.stalled(200.0) is None  # a server not serving is never stalled
    finally:
        loop.close()
