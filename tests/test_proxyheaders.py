"""Proxy headers for every app: a trusted proxy's client address, scheme and host; and ids."""

from __future__ import annotations

import io
import logging
import re
import wsgiref.util
from typing import Any

import pytest

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.servers.observe import new_request_id, new_request_id_bytes
from sitebus.site.logs import LogManager
from sitebus.site.proxyheaders import ProxyHeaders, Trust, forwarded_hops, rewrite
from sitebus.site.tree import Tree

LOCAL = Trust(["127.0.0.1", "::1", "unix"])


def environ(peer: str = "127.0.0.1", **headers: str) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "inner",
                           "SERVER_PORT": "8080", "HTTP_HOST": "inner:8080",
                           "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": peer}
    wsgiref.util.setup_testing_defaults(env)
    env["wsgi.url_scheme"] = "http"
    env.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return env


@pytest.mark.parametrize("headers, client, scheme, host", [
    ({"x_forwarded_for": "203.0.113.9"}, "203.0.113.9", "http", "inner:8080"),
    ({"x_forwarded_for": "203.0.113.9", "x_forwarded_proto": "https",
      "x_forwarded_host": "shop.example"}, "203.0.113.9", "https", "shop.example"),
    # A client forges the leftmost entry; the proxy appends the real peer: the first address
    # from the right that is not trusted is the client.
    ({"x_forwarded_for": "1.1.1.1, 203.0.113.9"}, "203.0.113.9", "http", "inner:8080"),
    ({"x_forwarded_for": "203.0.113.9, 127.0.0.1"}, "203.0.113.9", "http", "inner:8080"),
    ({"forwarded": 'for=198.51.100.7;proto=https;host="a.example:8443"'},
     "198.51.100.7", "https", "a.example:8443"),
    ({"forwarded": 'for="[2001:db8::1]:4711";proto=http, for=127.0.0.1;proto=https'},
     "2001:db8::1", "http", "inner:8080"),
    ({"forwarded": "for=198.51.100.7", "x_forwarded_for": "1.1.1.1"},
     "198.51.100.7", "http", "inner:8080"),  # Forwarded wins
    ({"x_forwarded_for": "not-an-ip", "x_forwarded_proto": "gopher",
      "x_forwarded_host": "bad host/"}, "127.0.0.1", "http", "inner:8080"),  # ignored
])
def test_a_trusted_peer_s_headers_are_applied(headers: dict[str, str], client: str,
                                               scheme: str, host: str) -> None:
    env = environ(**headers)
    rewrite(env, LOCAL)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_HOST"]) == \
        (client, scheme, host)
    assert env["HTTPS" if scheme == "https" else "wsgi.url_scheme"]


def test_an_untrusted_peer_s_headers_are_ignored() -> None:
    env = environ("198.51.100.1", x_forwarded_for="6.6.6.6", x_forwarded_proto="https",
                  forwarded="for=6.6.6.6;host=evil")
    before = dict(env)
    rewrite(env, LOCAL)
    assert env == before


def test_trust_by_network_unix_socket_and_everyone() -> None:
    trust = Trust(["10.0.0.0/8", "unix"])
    assert trust("10.1.2.3") and trust("") and not trust("11.0.0.1") and not trust("::1")
    assert Trust(["::1"])("::ffff:127.0.0.1") is False and Trust(["127.0.0.1"])("::ffff:127.0.0.1")
    assert Trust(["*"])("203.0.113.1")


def test_forwarded_parsing() -> None:
    assert forwarded_hops('For="[::1]:80";Proto=https, for=1.2.3.4;by=x') == [
        {"for": "[::1]:80", "proto": "https"}, {"for": "1.2.3.4", "by": "x"}]


def test_trusted_setting_is_checked(bus: Bus) -> None:
    plugin = ProxyHeaders(bus, Tree())
    plugin.trusted = "10.0.0.0/8, unix"
    assert plugin.trusted == ["10.0.0.0/8", "unix"]
    with pytest.raises(ConfigError, match=r"engine\.proxy\.trusted: expected addresses"):
        plugin.trusted = ["10.0.0.300"]


@pytest.fixture
def flask_tree(bus: Bus) -> Any:
    flask = pytest.importorskip("flask")
    app = flask.Flask("proxied")

    @app.route("/where")
    def where() -> str:
        request = flask.request
        return (f"{request.remote_addr} {request.scheme} {request.host} "
                f"{flask.url_for('where', _external=True)} "
                f"{request.headers.get('X-Request-ID')}")

    log = LogManager(appid="proxytest")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.access_log.addHandler(handler)
    log.access_log.setLevel(logging.INFO)
    log.access_log.propagate = False
    tree = Tree(log)
    tree.graft(app, "/app")
    plugin = ProxyHeaders(bus, tree)
    plugin.subscribe()
    yield tree, stream, plugin
    plugin.unsubscribe()
    log.access_log.removeHandler(handler)


def call(tree: Tree, env: dict[str, Any]) -> tuple[str, dict[str, str], str]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                       ) -> None:
        answer.update(status=status, headers=dict(headers))

    body = tree(env, start_response)
    try:
        text = b"".join(body).decode()
    finally:
        getattr(body, "close", lambda: None)()
    return answer["status"], answer["headers"], text


def test_a_flask_app_sees_the_client_behind_a_trusted_proxy(flask_tree: Any) -> None:
    tree, stream, _plugin = flask_tree
    env = environ(x_forwarded_for="203.0.113.9", x_forwarded_proto="https",
                  x_forwarded_host="shop.example", x_request_id="req-42")
    env["PATH_INFO"] = "/app/where"
    status, headers, text = call(tree, env)
    assert status == "200 OK"
    assert text == "203.0.113.9 https shop.example https://shop.example/app/where req-42"
    assert headers["X-Request-ID"] == "req-42"
    assert stream.getvalue().startswith("203.0.113.9 - - [")  # the access log shows the client
    assert stream.getvalue().rstrip().endswith(" req-42")


def test_a_flask_app_ignores_the_headers_of_an_untrusted_peer(flask_tree: Any) -> None:
    tree, stream, plugin = flask_tree
    plugin.trusted = ["10.0.0.0/8"]
    env = environ(x_forwarded_for="203.0.113.9", x_forwarded_proto="https",
                  x_request_id="bad id with spaces")
    env["PATH_INFO"] = "/app/where"
    status, headers, text = call(tree, env)
    client, scheme, host, url, request_id = text.split()
    assert (client, scheme, host, url) == ("127.0.0.1", "http", "inner:8080",
                                           "http://inner:8080/app/where")
    assert request_id == headers["X-Request-ID"] != "bad"  # an insane id is replaced
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", request_id)
    assert stream.getvalue().startswith("127.0.0.1 - - [")


def test_request_ids_are_unique_and_an_app_s_own_header_is_kept(bus: Bus) -> None:
    assert len({new_request_id() for _ in range(1000)}) == 1000
    # WSGI's text ids and ASGI's byte ids come from one counter: never the same id twice.
    mixed = [new_request_id().encode() if n % 2 else new_request_id_bytes() for n in range(100)]
    assert len(set(mixed)) == 100 and all(re.fullmatch(rb"[0-9a-f]{12}-[0-9a-f]+", m)
                                          for m in mixed)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("x-request-id", "mine"), ("Content-Length", "0")])
        return []

    log = LogManager(appid="idtest")
    log.request_id = True  # an id for every request, though no access line is written
    tree = Tree(log)
    tree.graft(app, "")
    _status, headers, _text = call(tree, environ())
    assert headers == {"x-request-id": "mine", "Content-Length": "0"}


def test_by_default_a_request_gets_an_id_while_access_lines_are_written() -> None:
    seen: list[str | None] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [("Content-Length", "0")])
        return []

    log = LogManager(appid="idfollows")
    log.access_log.setLevel(logging.INFO)
    log.access_log.propagate = False
    log.access_log.handlers.clear()  # pytest >= 9.2 adds its capture handler to such loggers
    tree = Tree(log)
    tree.graft(app, "")
    _status, headers, _text = call(tree, environ())
    assert "X-Request-ID" not in headers and seen == [None]  # no access log: no id
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.access_log.addHandler(handler)
    try:
        _status, headers, _text = call(tree, environ())
    finally:
        log.access_log.removeHandler(handler)
    assert headers["X-Request-ID"] == seen[1] and stream.getvalue().rstrip().endswith(seen[1])
    log.request_id = False
    log.access_log.addHandler(handler)
    try:
        _status, headers, _text = call(tree, environ())
    finally:
        log.access_log.removeHandler(handler)
    assert "X-Request-ID" not in headers and seen[2] is None


def test_without_a_log_the_tree_adds_nothing() -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [])
        return []

    tree = Tree()
    tree.graft(app, "")
    _status, headers, _text = call(tree, environ())
    assert headers == {} and "HTTP_X_REQUEST_ID" not in seen[0]
