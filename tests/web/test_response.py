"""The response: status, headers, body types, streaming, and close() of iterable bodies."""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import services.web as cherrypy

CHUNK = b"x" * 16 * 1024  # 256 of them: 4 MiB, more than socket buffers hold


class Counted:
    """Iterators that count how many of their kind are started and not yet finished."""

    live: dict[str, int] = {}
    lock = threading.Lock()

    @classmethod
    def change(cls, name: str, delta: int) -> None:
        with cls.lock:
            cls.live[name] = cls.live.get(name, 0) + delta


class OurIterator:
    def __init__(self, chunks: int = 256) -> None:
        self.remaining = chunks
        self.started = False
        self.finished = False

    def __iter__(self) -> OurIterator:
        return self

    def __next__(self) -> bytes:
        if not self.started:
            self.started = True
            Counted.change(type(self).__name__, 1)
        if self.remaining == 0:
            self._finish()
            raise StopIteration
        self.remaining -= 1
        return CHUNK

    def _finish(self) -> None:
        if self.started and not self.finished:
            self.finished = True
            Counted.change(type(self).__name__, -1)


class OurClosableIterator(OurIterator):
    def close(self) -> None:
        self._finish()


class OurNotClosableIterator(OurIterator):
    def close(self, somearg: Any) -> None:  # needs an argument: cannot be called
        self._finish()


class OurUnclosableIterator(OurIterator):
    close = "close"  # not callable


def our_generator(name: str = "OurGenerator") -> Iterator[bytes]:
    Counted.change(name, 1)
    try:
        for _ in range(256):
            yield CHUNK
    finally:
        Counted.change(name, -1)


KINDS = {
    "OurClosableIterator": OurClosableIterator,
    "OurNotClosableIterator": OurNotClosableIterator,
    "OurUnclosableIterator": OurUnclosableIterator,
    "OurGenerator": our_generator,
}
CLOSABLE = {"OurClosableIterator", "OurGenerator"}


class Root:
    @cherrypy.expose
    def text(self) -> str:
        return "héllo"

    @cherrypy.expose
    def raw(self) -> bytes:
        cherrypy.response.headers["Content-Type"] = "application/octet-stream"
        return b"\x00\xff"

    @cherrypy.expose
    def chunks(self) -> list[str]:
        return ["a", "b", "c"]

    @cherrypy.expose
    def gen(self) -> Iterator[str]:
        yield "one "
        yield "two"

    @cherrypy.expose
    def filelike(self) -> Any:
        return io.BytesIO(b"from a file")

    @cherrypy.expose
    def none(self) -> None:
        return None

    @cherrypy.expose
    def status(self, code: str) -> str:
        cherrypy.response.status = code
        return "body"

    @cherrypy.expose
    def headers(self) -> str:
        cherrypy.response.headers["X-Unicode"] = "Ελλάδα"
        cherrypy.response.headers["X-Int"] = 5
        return "ok"

    @cherrypy.expose
    def bad_header(self) -> str:
        cherrypy.response.headers["X-Bad"] = "a\r\nSet-Cookie: evil=1"
        return "never"

    @cherrypy.expose
    def iterator_error(self) -> Iterator[str]:
        yield "partial"
        raise ValueError("inside the generator")

    @cherrypy.expose
    def count(self, name: str) -> str:
        return str(Counted.live.get(name, 0))

    @cherrypy.expose
    def getall(self, name: str) -> Any:
        return KINDS[name]()

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream(self, name: str) -> Any:
        return KINDS[name]()

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream_text(self) -> Iterator[str]:
        # Headers must be set before the body is produced: return an inner generator.
        cherrypy.response.headers["Content-Type"] = "text/plain"

        def content() -> Iterator[str]:
            cherrypy.response.headers["X-Too-Late"] = "ignored"
            yield "streamed "
            yield "téxt"

        return content()

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream_error(self) -> Iterator[str]:
        yield "first chunk "
        raise ValueError("late")

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream_error_first(self) -> Iterator[str]:
        raise ValueError("early")
        yield "never"

    @cherrypy.expose
    @cherrypy.config(**{"response.stream": True})
    def stream_with_length(self) -> Iterator[bytes]:
        cherrypy.response.headers["Content-Length"] = "6"
        return iter([b"abc", b"def"])

    @cherrypy.expose
    @cherrypy.config(**{"tools.encode.on": False})
    def no_encode(self) -> str:
        return "text without the encode tool"

    @cherrypy.expose
    @cherrypy.tools.flatten()
    def nested(self) -> Iterator[Any]:
        def inner() -> Iterator[bytes]:
            yield b"b"
            yield b"c"

        yield b"a"
        yield inner()


@pytest.fixture
def app(web: Any) -> Any:
    web.mount(Root())
    return web


@pytest.mark.parametrize(
    "path, body, content_type",
    [
        ("/text", "héllo".encode(), "text/html;charset=utf-8"),
        ("/raw", b"\x00\xff", "application/octet-stream"),
        ("/chunks", b"abc", "text/html;charset=utf-8"),
        ("/gen", b"one two", "text/html;charset=utf-8"),
        ("/filelike", b"from a file", "text/html;charset=utf-8"),
        ("/none", b"", "text/html;charset=utf-8"),
        ("/nested", b"abc", "text/html;charset=utf-8"),
    ],
)
def test_body_types(app: Any, path: str, body: bytes, content_type: str) -> None:
    app.getPage(path)
    app.assertStatus(200)
    app.assertBody(body)
    app.assertHeader("Content-Type", content_type)
    app.assertHeader("Content-Length", str(len(body)))


def test_text_without_the_encode_tool_is_an_error(app: Any) -> None:
    app.getPage("/no_encode")
    app.assertStatus(500)
    app.assertInBody("A page handler returned str where bytes are expected")


@pytest.mark.parametrize(
    "code, status",
    [("201", "201 Created"), ("299%20Custom", "299 Custom"), ("204", "204 No Content")],
)
def test_status(app: Any, code: str, status: str) -> None:
    app.getPage(f"/status?code={code}")
    app.assertStatus(status)
    if status.startswith("204"):
        app.assertBody(b"")
        app.assertNoHeader("Content-Length")


def test_an_illegal_status_is_a_500(app: Any) -> None:
    app.getPage("/status?code=999")
    app.assertStatus(500)
    app.assertInBody("Illegal response status from server (999 is out of range).")


def test_response_headers(app: Any) -> None:
    app.getPage("/headers")
    app.assertHeader("X-Int", "5")
    app.assertHeader("X-Unicode", "=?utf-8?b?zpXOu867zqzOtM6x?=")
    app.assertHeader("Server", "sitebus")
    app.assertHeader("Date")


def test_header_injection_is_refused(app: Any) -> None:
    app.getPage("/bad_header")
    app.assertStatus(500)
    app.assertNoHeader("Set-Cookie")


def test_head_sends_headers_only(app: Any) -> None:
    app.getPage("/text", method="HEAD")
    app.assertStatus(200)
    app.assertHeader("Content-Length", "6")
    app.assertBody(b"")


def test_an_error_inside_a_buffered_generator_is_an_error_page(app: Any) -> None:
    app.getPage("/iterator_error")
    app.assertStatus(500)
    app.assertInBody("inside the generator")


def test_streaming(app: Any) -> None:
    app.getPage("/stream_text")
    app.assertStatus(200)
    app.assertHeader("Transfer-Encoding", "chunked")
    app.assertNoHeader("Content-Length")
    app.assertHeader("Content-Type", "text/plain;charset=utf-8")
    app.assertNoHeader("X-Too-Late")
    app.assertBody("streamed téxt")
    app.getPage("/stream_with_length")
    app.assertHeader("Content-Length", "6")
    app.assertBody("abcdef")


def test_streaming_with_http10_closes_the_connection_at_the_end(app: Any) -> None:
    app.getPage("/stream_text", protocol="HTTP/1.0")
    app.assertStatus(200)
    app.assertBody("streamed téxt")


def test_an_error_before_the_first_streamed_chunk_is_still_a_500(app: Any) -> None:
    app.getPage("/stream_error_first")
    app.assertStatus(500)
    app.assertInBody("Unrecoverable error in the server.")
    app.assertInBody("early")


def test_an_error_inside_a_streamed_body_cuts_the_response(app: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", app.PORT, timeout=10)
    try:
        conn.request("GET", "/stream_error")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as raised:
            response.read()
        assert raised.value.partial == b"first chunk "
    finally:
        conn.close()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_buffered_bodies_are_consumed_before_sending(app: Any, name: str) -> None:
    Counted.live.clear()
    app.getPage(f"/getall?name={name}")
    app.assertStatus(200)
    app.assertHeader("Content-Length", str(len(CHUNK) * 256))
    app.getPage(f"/count?name={name}")
    app.assertBody("0")


@pytest.mark.parametrize("name", sorted(KINDS))
def test_streamed_bodies_are_closed_when_the_client_goes_away(web: Any, name: str) -> None:
    ended = threading.Event()

    def on_end_request() -> None:
        ended.set()

    web.mount(Root(), "", {"/": {"hooks.on_end_request": on_end_request}})
    Counted.live.clear()
    conn = http.client.HTTPConnection("127.0.0.1", web.PORT, timeout=10)
    conn.request("GET", f"/stream?name={name}")
    response = conn.getresponse()
    assert response.status == 200
    response.read(len(CHUNK))
    assert Counted.live == {name: 1}  # started, not finished
    conn.close()
    # The server notices the closed connection on a write, then ends the request.
    assert ended.wait(20)
    assert Counted.live == {name: 0 if name in CLOSABLE else 1}


def test_unconsumed_bodies_are_closed_for_head(app: Any) -> None:
    Counted.live.clear()
    app.getPage("/stream?name=OurGenerator", method="HEAD")
    app.assertStatus(200)
    app.assertBody(b"")
    # The generator was never started, so nothing was counted; closing it must not fail.
    app.getPage("/count?name=OurGenerator")
    app.assertBody("0")


def test_a_timed_out_response_stops_the_request(web: Any) -> None:
    ran: list[str] = []

    class Slow:
        @cherrypy.expose
        def index(self) -> str:
            ran.append("handler")
            return "never"

    def expire() -> None:
        cherrypy.response.check_timeout()  # response.timeout is 0 here: now is too late

    web.mount(Slow(), "", {"/": {"response.timeout": -1, "hooks.before_handler": expire}})
    web.getPage("/")
    web.assertStatus(500)
    web.assertInBody("TimeoutError")
    assert ran == []


def test_the_timeout_monitor_checks_responses_in_flight(web: Any) -> None:
    monitor = cherrypy.engine.timeout_monitor
    seen: list[Any] = []

    class Root:
        @cherrypy.expose
        def index(self) -> str:
            response = cherrypy.serving.response
            response.timeout = -1
            seen.append(len(monitor.servings))
            monitor.run()  # what the monitor's thread does every `frequency` seconds
            return str(response.timed_out)

    web.mount(Root())
    web.getPage("/")
    web.assertBody("True")
    assert seen == [1]
