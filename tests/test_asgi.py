"""AsgiSite in one event loop: routing by prefix between ASGI and WSGI apps, the WSGI bridge's
environ, lifespans (order, an app without one, a failed startup), the drain's Connection: close.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sitebus.servers.asgi import AsgiMounts, AsgiSite, LifespanError
from sitebus.site.logs import LogManager
from sitebus.site.tree import Tree


def asgi_app(name: str, events: list[str], fail: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(f"{message['type']} {name}")
                if message["type"] == "lifespan.startup":
                    if fail:
                        await send({"type": "lifespan.startup.failed",
                                    "message": "Traceback...\nKeyError: 'DATABASE_URL'\n"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = f"{name} {scope['root_path']} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    return app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    text = (f"wsgi {environ['SCRIPT_NAME']} {environ['PATH_INFO']} {environ['QUERY_STRING']} "
            f"{environ.get('CONTENT_LENGTH')} {environ['HTTP_X_TWO']} ").encode() + body
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [text]


async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http", "only http"  # as Django's ASGIHandler refuses lifespan


def site_of(*mounts: tuple[str, Any], wsgi: dict[str, Any] | None = None) -> AsgiSite:
    tree = Tree(LogManager(appid="test"))
    for prefix, app in (wsgi or {}).items():
        tree.graft(app, prefix)
    asgi = AsgiMounts(None, tree)
    for prefix, app in mounts:
        asgi.mount(prefix, app, f"tree.{prefix or 'root'}")
    return AsgiSite(asgi, tree, threads=2)


async def request(site: AsgiSite, path: str, body: bytes = b"", query: bytes = b"",
                  host: bytes | None = None) -> tuple[int, bytes, list[Any]]:
    sent: list[Any] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Any:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "root_path": "",
             "query_string": query, "headers": [(b"x-two", b"a"), (b"x-two", b"b")],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8080),
             "client": ("127.0.0.1", 5000)}
    if host is not None:
        scope["headers"] = [(b"host", host), *scope["headers"]]
    await site(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return (start["status"], b"".join(m.get("body", b"") for m in sent[1:]),
            start["headers"])


def test_requests_go_to_the_longest_prefix_of_either_kind() -> None:
    events: list[str] = []
    site = site_of(("", asgi_app("root", events)), ("/api", asgi_app("api", events)),
                   wsgi={"/api/legacy": wsgi_app})

    async def scenario() -> list[Any]:
        await site.startup()
        try:
            return [await request(site, path, b"hi", b"q=1")
                    for path in ("/api/x", "/apix", "/api/legacy/y", "/")]
        finally:
            await site.shutdown()

    api, apix, legacy, root = asyncio.run(scenario())
    assert api[:2] == (200, b"api /api /api/x")
    assert apix[:2] == (200, b"root  /apix")
    assert legacy[:2] == (201, b"wsgi /api/legacy /y q=1 2 a,b hi")
    assert root[:2] == (200, b"root  /")


def test_a_virtual_host_gets_its_own_apps_first() -> None:
    events: list[str] = []
    tree = Tree(LogManager(appid="test"))
    tree.graft(wsgi_app, "/legacy", host="api.example.com")
    asgi = AsgiMounts(None, tree)
    asgi.mount("", asgi_app("every-host", events), "tree.root")
    asgi.mount("", asgi_app("api-root", events), "tree.api", host="API.example.com")
    asgi.mount("/v2", asgi_app("api-v2", events), "tree.v2", host="api.example.com")
    site = AsgiSite(asgi, tree, threads=2)

    async def scenario() -> list[Any]:
        await site.startup()
        try:
            return [await request(site, path, host=host) for path, host in (
                ("/v2/x", b"api.example.com:8080"), ("/x", b"API.example.com"),
                ("/legacy/y", b"api.example.com"), ("/v2/x", b"www.example.com"),
                ("/x", None))]
        finally:
            await site.shutdown()

    v2, api_root, legacy, elsewhere, no_host = asyncio.run(scenario())
    assert site.direct is None  # a root app for one host is not every request's
    assert v2[:2] == (200, b"api-v2 /v2 /v2/x")
    assert api_root[:2] == (200, b"api-root  /x")
    assert legacy[0] == 201 and legacy[1].startswith(b"wsgi /legacy /y")  # the host's WSGI app
    assert elsewhere[:2] == (200, b"every-host  /v2/x")
    assert no_host[:2] == (200, b"every-host  /x")


def test_lifespans_start_in_mount_order_and_stop_in_reverse() -> None:
    events: list[str] = []
    site = site_of(("/a", asgi_app("a", events)), ("/django", no_lifespan),
                   ("", asgi_app("b", events)))

    async def scenario() -> None:
        await site.startup()
        events.append("serving")
        await site.shutdown()

    asyncio.run(scenario())
    assert events == ["lifespan.startup a", "lifespan.startup b", "serving",
                      "lifespan.shutdown b", "lifespan.shutdown a"]


def test_a_failed_startup_names_the_app_and_stops_those_started() -> None:
    events: list[str] = []
    site = site_of(("/a", asgi_app("a", events)), ("/b", asgi_app("b", events, fail=True)))
    with pytest.raises(LifespanError, match=r"^tree./b: the ASGI app's lifespan startup "
                                            r"failed: KeyError: 'DATABASE_URL'$"):
        asyncio.run(site.startup())
    assert events == ["lifespan.startup a", "lifespan.startup b", "lifespan.shutdown a"]


def test_a_draining_site_closes_each_connection_after_its_answer() -> None:
    site = site_of(("", asgi_app("root", [])), wsgi={"/w": wsgi_app})
    site.draining = True

    async def scenario() -> list[Any]:
        await site.startup()
        try:
            return [await request(site, "/x"), await request(site, "/w/")]
        finally:
            await site.shutdown()

    for _status, _body, headers in asyncio.run(scenario()):
        assert (b"connection", b"close") in headers


def test_a_lone_root_app_is_called_directly_and_still_drains() -> None:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("no lifespan here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    site = site_of(("", hello))

    async def scenario() -> list[Any]:
        await site.startup()
        try:
            answers = [await request(site, "/a")]
            site.draining = True
            return [*answers, await request(site, "/b")]
        finally:
            await site.shutdown()

    before, after = asyncio.run(scenario())
    assert site.direct is hello
    assert before[:2] == (200, b"/a") and (b"connection", b"close") not in before[2]
    assert after[:2] == (200, b"/b") and (b"connection", b"close") in after[2]
