"""tools.gzip and lib.encoding's compress/decompress: which clients get gzip, what is never
compressed, streamed bodies flushed chunk by chunk, and hostile Accept-Encoding headers."""

from __future__ import annotations

import gzip as gziplib
import http.client
import threading
import urllib.parse
import zlib
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import encoding

TEXT = "Hello, w\u00f6rld! " * 200
released = threading.Event()


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return TEXT

    @cherrypy.expose
    def typed(self, ct: str) -> str:
        cherrypy.response.headers["Content-Type"] = ct
        return TEXT

    @cherrypy.expose
    def empty(self) -> str:
        return ""

    @cherrypy.expose
    def encoded(self) -> bytes:
        cherrypy.response.headers["Content-Encoding"] = "br"
        return b"already compressed"

    @cherrypy.expose
    def missing(self) -> str:
        raise cherrypy.NotFound()

    @cherrypy.expose
    def stream(self) -> Any:
        def chunks() -> Any:
            yield "first chunk|"
            released.wait(20)  # until the client has decompressed the first chunk
            yield "second chunk"

        return chunks()

    stream._cp_config = {"response.stream": True}  # type: ignore[attr-defined]


@pytest.fixture
def app(web: Any) -> Any:
    web.mount(Root(), "", {"/": {"tools.gzip.on": True}})
    return web


def header(web: Any, name: str) -> str | None:
    for key, value in web.headers:
        if key.lower() == name.lower():
            return value
    return None


# (Accept-Encoding, compressed, status): None means no header at all.
CASES = [
    (None, False, 200),
    ("gzip", True, 200),
    ("x-gzip", True, 200),
    ("GZIP", True, 200),
    ("deflate, gzip, br", True, 200),
    ("gzip;q=0", False, 200),
    ("identity", False, 200),
    ("identity, gzip", False, 200),  # equal qvalues: the client's order decides
    ("gzip, identity", True, 200),
    ("gzip;q=0.5, identity", False, 200),
    ("identity;q=0.5, gzip", True, 200),
    ("*", True, 200),
    ("*;q=0.3, identity", False, 200),
    ("br", False, 200),  # identity is always acceptable (the reference says 406)
    ("identity;q=0", False, 406),
    ("identity;q=0, gzip", True, 200),
    ("*;q=0", False, 406),
    ("*;q=0, identity", False, 200),
    ("", False, 200),
    # Malformed headers are ignored: identity, never an error.
    ("gzip;q=abc", False, 200),
    ("gzip;q=2", False, 200),
    ("gzip;q=nan", False, 200),
    ("gzip;q=-1", False, 200),
    ("gzip;q=0.0001", False, 200),
    ("gzip;q", False, 200),
    ("gzip; level=9", False, 200),
    ("gzip;;;", False, 200),
    ("gz(ip", False, 200),
    (",,,, ,", False, 200),
    ("gzip" + ", x" * 5000, True, 200),
]


@pytest.mark.parametrize("accept_encoding, compressed, status", CASES)
def test_which_clients_get_gzip(app: Any, accept_encoding: str | None, compressed: bool,
                                status: int) -> None:
    headers = [] if accept_encoding is None else [("Accept-Encoding", accept_encoding)]
    app.getPage("/", headers=headers)
    app.assertStatus(status)
    app.assertHeader("Vary", "Accept-Encoding")
    if compressed:
        app.assertHeader("Content-Encoding", "gzip")
        assert header(app, "Content-Length") == str(len(app.body))
        assert gziplib.decompress(app.body) == TEXT.encode()
    else:
        app.assertNoHeader("Content-Encoding")
        if status == 200:
            assert app.body == TEXT.encode()


@pytest.mark.parametrize(
    "mime_types, content_type, compressed",
    [
        (["text/html", "text/plain"], "text/plain", True),
        (["text/html", "text/plain"], "text/css", False),
        (["text/html", "text/plain"], "application/json", False),
        (["text/*"], "text/css", True),
        (["application/*+json"], "application/vnd.api+json", True),
        (["application/*+json"], "application/json", False),
        ("text/css", "text/css", True),
    ],
)
def test_mime_types(web: Any, mime_types: Any, content_type: str, compressed: bool) -> None:
    web.mount(Root(), "", {"/": {"tools.gzip.on": True, "tools.gzip.mime_types": mime_types}})
    web.getPage(f"/typed?ct={urllib.parse.quote(content_type)}",
                headers=[("Accept-Encoding", "gzip")])
    web.assertStatus(200)
    assert (header(web, "Content-Encoding") == "gzip") is compressed


def test_what_is_never_compressed(app: Any) -> None:
    gz = [("Accept-Encoding", "gzip")]
    app.getPage("/empty", headers=gz)
    app.assertStatus(200)
    app.assertNoHeader("Content-Encoding")
    app.getPage("/encoded", headers=gz)
    app.assertHeader("Content-Encoding", "br")
    app.assertBody(b"already compressed")


def test_error_pages_and_head_requests(app: Any) -> None:
    gz = [("Accept-Encoding", "gzip")]
    app.getPage("/missing", headers=gz)
    app.assertStatus(404)
    app.assertHeader("Content-Encoding", "gzip")
    assert b"Not Found" in gziplib.decompress(app.body)
    app.getPage("/", headers=gz)
    full = app.body
    app.getPage("/", headers=gz, method="HEAD")
    app.assertStatus(200)
    app.assertHeader("Content-Encoding", "gzip")
    assert header(app, "Content-Length") == str(len(full))
    app.assertBody(b"")


def test_a_bad_compress_level_is_a_clear_error(web: Any) -> None:
    web.mount(Root(), "", {"/": {"tools.gzip.on": True, "tools.gzip.compress_level": 12}})
    web.getPage("/", headers=[("Accept-Encoding", "gzip")])
    web.assertStatus(500)
    web.assertInBody("tools.gzip.compress_level: expected an integer from 0 to 9, got 12")


def test_a_streamed_body_is_flushed_chunk_by_chunk(app: Any) -> None:
    released.clear()
    conn = http.client.HTTPConnection("127.0.0.1", app.PORT, timeout=20)
    try:
        conn.request("GET", "/stream", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Encoding") == "gzip"
        assert response.getheader("Transfer-Encoding") == "chunked"
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = b""
        while b"first chunk|" not in text:  # arrives while the handler still waits
            data = response.read1(65536)
            assert data, "the stream ended before the first chunk could be decompressed"
            text += inflate.decompress(data)
        assert text == b"first chunk|"
        released.set()
        text += inflate.decompress(response.read()) + inflate.flush()
        assert text == b"first chunk|second chunk"
    finally:
        released.set()
        conn.close()


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("gzip", [("gzip", 1.0)]),
        ("gzip;q=0.5, identity ; q=1.0", [("gzip", 0.5), ("identity", 1.0)]),
        ("GZip;Q=0", [("gzip", 0.0)]),
        ("gzip;q=1.000", [("gzip", 1.0)]),
        ("gzip;q=1.001", None),
        ("gzip;q=.5", None),
        ("gzip;q=0.5;q=1", [("gzip", 1.0)]),
        ("a b", None),
        ("", []),
    ],
)
def test_accepted_codings(value: str, expected: Any) -> None:
    assert encoding.accepted_codings(value) == expected


def test_compress_is_gzip_and_deterministic() -> None:
    chunks = [b"abc" * 1000, b"", b"def" * 1000]
    once = b"".join(encoding.compress(chunks, 9))
    assert once == b"".join(encoding.compress(chunks, 9))  # no timestamp inside
    assert encoding.decompress(once) == b"abc" * 1000 + b"def" * 1000
    assert gziplib.decompress(once) == b"abc" * 1000 + b"def" * 1000
    flushed = list(encoding.compress(chunks, 5, flush=True))
    assert all(flushed)  # no empty chunk: it would end a chunked response
    assert len(flushed) == 4  # header, one per non-empty chunk, trailer
    assert gziplib.decompress(b"".join(flushed)) == b"abc" * 1000 + b"def" * 1000
