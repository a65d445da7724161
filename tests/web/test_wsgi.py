"""The WSGI side, in process under wsgiref.validate: compliance, the bus channels around each
request, the per-thread objects, a foreign WSGI app beside a framework app, concurrency."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

import services.web as cherrypy
from services.web._serving import serving
from tests.httpclients import call_wsgi


def call(app: Any, path: str, method: str = "GET", body: bytes = b"", query: str = "",
         headers: dict[str, str] | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=path.encode("utf-8").decode("latin-1"), SCRIPT_NAME="",
                   QUERY_STRING=query, REQUEST_METHOD=method, REMOTE_ADDR="10.1.2.3",
                   REMOTE_PORT="5555", SERVER_PROTOCOL="HTTP/1.1")
    environ["wsgi.input"] = io.BytesIO(body)
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return call_wsgi(app, environ)


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "index"

    @cherrypy.expose
    def whoami(self) -> str:
        r = cherrypy.request
        return f"{r.remote.ip}:{r.remote.port} {r.base} {r.path_info} {r.login}"

    @cherrypy.expose
    def form(self, **params: str) -> str:
        return repr(sorted(params.items()))

    @cherrypy.expose
    def gen(self) -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream(self) -> Iterator[bytes]:
        yield b"s1"
        yield b"s2"

    @cherrypy.expose
    def fail(self) -> str:
        raise ValueError("fails")

    @cherrypy.expose
    def thread_objects(self) -> str:
        return f"{id(cherrypy.request)} {id(serving.request)}"


@pytest.mark.parametrize(
    "path, method, body, status, content",
    [
        ("/", "GET", b"", "200 OK", b"index"),
        ("/whoami", "GET", b"", "200 OK", b"10.1.2.3:5555 http://127.0.0.1 /whoami None"),
        ("/form", "POST", b"a=1&b=2", "200 OK", b"[('a', '1'), ('b', '2')]"),
        ("/gen", "GET", b"", "200 OK", b"ab"),
        ("/stream", "GET", b"", "200 OK", b"s1s2"),
        ("/fail", "GET", b"", "500 Internal Server Error", None),
        ("/missing", "GET", b"", "404 Not Found", None),
        ("/gen", "HEAD", b"", "200 OK", b""),
    ],
)
def test_wsgi_compliance(site_state: Any, path: str, method: str, body: bytes, status: str,
                         content: bytes | None) -> None:
    app = cherrypy.tree.mount(Root())
    for target in (app, cherrypy.tree):
        got_status, headers, got = call(target, path, method, body)
        assert got_status == status
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers)
        if content is not None:
            assert got == content


def test_an_application_works_outside_the_tree() -> None:
    app = cherrypy.Application(Root(), None, {"/": {"response.headers.X-Standalone": "1"}})
    status, headers, content = call(app, "/")
    assert (status, content) == ("200 OK", b"index")
    assert ("X-Standalone", "1") in headers


def test_the_bus_hears_of_every_request(site_state: Any) -> None:
    heard: list[str] = []
    listeners = {channel: (lambda c=channel: heard.append(c))
                 for channel in ("acquire_thread", "before_request", "after_request")}
    for channel, listener in listeners.items():
        cherrypy.engine.subscribe(channel, listener)
    try:
        cherrypy.tree.mount(Root())
        call(cherrypy.tree, "/")
        call(cherrypy.tree, "/fail")
    finally:
        for channel, listener in listeners.items():
            cherrypy.engine.unsubscribe(channel, listener)
    assert heard == ["acquire_thread", "before_request", "after_request"] * 2


def test_thread_locals_are_empty_between_requests(site_state: Any) -> None:
    cherrypy.tree.mount(Root())
    call(cherrypy.tree, "/")
    assert serving.__dict__ == {}
    assert cherrypy.request.app is None
    assert cherrypy.request.show_tracebacks is True
    assert cherrypy.response.status == ""


def test_each_thread_has_its_own_request(web: Any) -> None:
    class Slow:
        barrier = threading.Barrier(4, timeout=10)

        @cherrypy.expose
        def index(self, n: str) -> str:
            mine = cherrypy.request
            self.barrier.wait()  # four requests in flight at once
            return f"{n} {cherrypy.request.params['n']} {mine.params['n']}"

    web.mount(Slow())
    results: dict[str, bytes] = {}

    def fetch(n: str) -> None:
        from services.web.test.webtest import openURL

        results[n] = openURL(f"/?n={n}", host="127.0.0.1", port=web.PORT)[2]

    threads = [threading.Thread(target=fetch, args=(str(n),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {str(n): f"{n} {n} {n}".encode() for n in range(4)}


def plain_wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"plain app at {environ['SCRIPT_NAME']}{environ['PATH_INFO']}".encode()]


def test_foreign_wsgi_apps_beside_framework_apps(web: Any) -> None:
    flask = pytest.importorskip("flask")
    flask_app = flask.Flask("beside")

    @flask_app.route("/hello")
    def hello() -> str:
        return "hello from flask"

    web.mount(Root(), "/web")
    web.graft(flask_app, "/flask")
    web.graft(plain_wsgi_app, "/raw")
    web.getPage("/web/")
    web.assertBody("index")
    web.getPage("/flask/hello")
    web.assertBody("hello from flask")
    web.getPage("/raw/x")
    web.assertBody("plain app at /raw/x")
    web.getPage("/elsewhere")
    web.assertStatus(404)


def test_url_builds_absolute_urls(web: Any) -> None:
    class Sub:
        @cherrypy.expose
        def index(self) -> str:
            return " ".join([cherrypy.url(), cherrypy.url("page"), cherrypy.url("/abs", qs="a=1"),
                             cherrypy.url("../up", relative=True),
                             cherrypy.url("x", relative="server"),
                             cherrypy.url(qs={"b": "2"})])

    class Top:
        sub = Sub()

    web.mount(Top(), "/app")
    web.getPage("/app/sub/")
    base = web.base()
    assert web.body.decode().split() == [
        f"{base}/app/sub/", f"{base}/app/sub/page", f"{base}/app/abs?a=1", "../up",
        "/app/sub/x", f"{base}/app/sub/?b=2"]


def test_url_outside_a_request_uses_the_server_base() -> None:
    assert cherrypy.url("/x", script_name="/app") == "http://127.0.0.1:8080/app/x"


def test_request_run_without_wsgi(site_state: Any) -> None:
    from services.web.lib.httputil import Host

    app = cherrypy.Application(Root(), "")
    request, response = app.get_serving(Host("127.0.0.1", 80), Host("127.0.0.1", 5000),
                                        "http", "HTTP/1.1")
    try:
        result = request.run("GET", "/form", "a=1", "HTTP/1.1", [("Host", "localhost")],
                             io.BytesIO())
        assert result is response
        assert response.output_status == "200 OK"
        assert b"".join(response.body) == b"[('a', '1')]"
        assert ("Content-Length", "12") in response.header_list
    finally:
        app.release_serving()
    assert cherrypy._cprequest.Request.params == {}  # the class default stays empty
