"""tools.encode's options (text_only, add_charset, errors, streamed bodies), non-text bodies,
UTF8StreamEncoder, and tools.decode restricting or extending the charsets of request bodies."""

from __future__ import annotations

from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import encoding

TEXT = "h\u00e9llo \u20ac"


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return TEXT

    @cherrypy.expose
    def typed(self, ct: str) -> str:
        cherrypy.response.headers["Content-Type"] = ct
        return TEXT

    @cherrypy.expose
    def png(self) -> bytes:
        cherrypy.response.headers["Content-Type"] = "image/png"
        return b"\x89PNG\r\n\x1a\n"

    @cherrypy.expose
    def stream(self) -> Any:
        def chunks() -> Any:
            yield "h\u00e9llo "
            yield b"raw "
            yield "\u20ac"

        return chunks()

    stream._cp_config = {"response.stream": True}  # type: ignore[attr-defined]

    @cherrypy.expose
    def echo(self, **params: Any) -> str:
        return repr(sorted(params.items()))


def test_non_text_bodies(web: Any) -> None:
    web.mount(Root())
    web.getPage("/png")
    web.assertHeader("Content-Type", "image/png")
    web.assertBody(b"\x89PNG\r\n\x1a\n")
    web.getPage("/typed?ct=application/xml")
    web.assertHeader("Content-Type", "application/xml")  # text only: no charset announced
    web.assertBody(TEXT.encode())


@pytest.mark.parametrize(
    "settings, path, content_type, body",
    [
        ({"tools.encode.text_only": False}, "/typed?ct=application/xml",
         "application/xml;charset=utf-8", TEXT.encode()),
        ({"tools.encode.add_charset": False}, "/", "text/html", TEXT.encode()),
        ({"tools.encode.encoding": "ascii", "tools.encode.errors": "replace"}, "/",
         "text/html;charset=ascii", b"h?llo ?"),
        ({"tools.encode.encoding": "ascii", "tools.encode.errors": "xmlcharrefreplace"}, "/",
         "text/html;charset=ascii", b"h&#233;llo &#8364;"),
        ({"tools.encode.default_encoding": "utf-16"}, "/", "text/html;charset=utf-16",
         TEXT.encode("utf-16")),
    ],
)
def test_encode_options(web: Any, settings: dict[str, Any], path: str, content_type: str,
                        body: bytes) -> None:
    web.mount(Root(), "", {"/": settings})
    web.getPage(path)
    web.assertHeader("Content-Type", content_type)
    web.assertBody(body)


def test_a_charset_that_cannot_encode_the_body_is_refused(web: Any) -> None:
    web.mount(Root(), "", {"/": {"tools.encode.encoding": "ascii"}})
    web.getPage("/")
    web.assertStatus(406)


def test_the_first_accepted_charset_that_can_encode_the_body_wins(web: Any) -> None:
    web.mount(Root())
    web.getPage("/", headers=[("Accept-Charset", "x-no-such-charset, ascii, utf-16;q=0.5")])
    web.assertHeader("Content-Type", "text/html;charset=utf-16")
    web.assertBody(TEXT.encode("utf-16"))
    web.getPage("/", headers=[("Accept-Charset", "x-no-such-charset, ascii;q=0.9")])
    web.assertStatus(406)
    web.assertInBody("We tried these charsets: ascii, iso-8859-1, x-no-such-charset.")


def test_streamed_text_is_encoded_as_it_goes(web: Any) -> None:
    web.mount(Root())
    web.getPage("/stream", headers=[("Accept-Charset", "iso-8859-15")])
    web.assertHeader("Content-Type", "text/html;charset=iso-8859-15")
    web.assertBody("h\u00e9llo ".encode("iso-8859-15") + b"raw " + "\u20ac".encode("iso-8859-15"))


def test_utf8_stream_encoder() -> None:
    closed = []

    def chunks() -> Any:
        try:
            yield "\u20ac"
            yield b"b"
        finally:
            closed.append(True)

    stream = encoding.UTF8StreamEncoder(chunks())
    assert next(stream) == "\u20ac".encode()
    stream.close()
    assert closed == [True]
    assert list(encoding.UTF8StreamEncoder(iter(["a", b"b"]))) == [b"a", b"b"]


@pytest.mark.parametrize(
    "settings, content_type, status, body",
    [
        ({}, "application/x-www-form-urlencoded", 400, "could not be decoded"),
        ({"tools.decode.on": True, "tools.decode.default_encoding": "iso-8859-1"},
         "application/x-www-form-urlencoded", 200, repr([("b", "\u00e9t\u00e9")])),
        ({"tools.decode.on": True, "tools.decode.default_encoding": ["ascii", "cp1252"]},
         "application/x-www-form-urlencoded", 200, repr([("b", "\u00e9t\u00e9")])),
        # encoding restricts the charsets, whatever the Content-Type says
        ({"tools.decode.on": True, "tools.decode.encoding": "utf-8"},
         "application/x-www-form-urlencoded;charset=latin-1", 400, "could not be decoded"),
        ({"tools.decode.on": True, "tools.decode.encoding": ["ascii", "latin-1"]},
         "application/x-www-form-urlencoded;charset=utf-8", 200,
         repr([("b", "\u00e9t\u00e9")])),
    ],
)
def test_decode_tool(web: Any, settings: dict[str, Any], content_type: str, status: int,
                     body: str) -> None:
    web.mount(Root(), "", {"/": settings})
    web.getPage("/echo", method="POST", body="b=%E9t%E9",
                headers=[("Content-Type", content_type)])
    web.assertStatus(status)
    web.assertInBody(body)
