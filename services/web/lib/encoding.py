"""Encoding of response bodies (``tools.encode``) and decoding of request bodies (``decode``).

``ResponseEncoder`` wraps the page handler: the text it returns (or yields) is encoded with
a charset the client accepts (Accept-Charset, in the client's order of preference; utf-8
when the client says nothing), and for ``text/*`` responses that charset is added to the
Content-Type (``text/html;charset=utf-8``). When no acceptable charset can encode the body
the answer is 406. Unlike the reference, text returned for a non-text type (say
``application/json``) is encoded with the default encoding rather than refused.

``gzip`` (``tools.gzip``, at before_finalize, priority 80: after the body is encoded and
any ETag computed) compresses the body as a stream when the client accepts gzip and the
Content-Type is one of ``mime_types``; it always adds ``Accept-Encoding`` to Vary. The
Accept-Encoding header is parsed strictly (tokens and RFC 7231 qvalues): a malformed one
is ignored, so the body goes out uncompressed (identity is always acceptable) rather than
failing. Unlike the reference, a client that accepts only unknown codings gets identity
rather than 406 (406 only when identity is refused and gzip is not accepted); a body that
already has a Content-Encoding, a partial (206) response and an empty body are left alone;
the gzip header carries no timestamp, so equal bodies compress to equal bytes; and a
streamed body (``response.stream``) is flushed chunk by chunk, so streaming still streams.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from services.web._cperror import HTTPError
from services.web._cprequest import prepare_iter
from services.web._serving import serving
from services.web.lib import closable, set_vary_header
from services.web.lib.httputil import HeaderElement, HeaderMap

__all__ = ["ResponseEncoder", "UTF8StreamEncoder", "compress", "decode", "decompress", "gzip",
           "prepare_iter"]


def decode(encoding: Any = None, default_encoding: Any = "utf-8") -> None:
    """Choose the charsets a request body is decoded with.

    ``encoding`` (a string or a list) restricts the charsets attempted, whatever the
    Content-Type says; otherwise ``default_encoding`` extends them.
    """
    body = serving.request.body
    body.content_type  # noqa: B018 (puts the Content-Type's charset first, once, now)
    if encoding is not None:
        body.attempt_charsets = encoding if isinstance(encoding, list) else [encoding]
    elif default_encoding:
        extra = default_encoding if isinstance(default_encoding, list) else [default_encoding]
        body.attempt_charsets = body.attempt_charsets + extra


class UTF8StreamEncoder:
    """An iterator which encodes the text chunks of another iterator as UTF-8."""

    def __init__(self, iterator: Any) -> None:
        self._iterator = iterator

    def __iter__(self) -> UTF8StreamEncoder:
        return self

    def __next__(self) -> bytes:
        res = next(self._iterator)
        return res.encode("utf-8") if isinstance(res, str) else res

    next = __next__

    def close(self) -> None:
        if closable(self._iterator):
            self._iterator.close()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(self, attr)
        return getattr(self._iterator, attr)


def _encode_as_sent(body: Any, encoding: str, errors: str) -> Iterator[bytes]:
    """Yield the chunks of ``body``, its text ones encoded."""
    for piece in body:
        yield piece.encode(encoding, errors) if isinstance(piece, str) else piece


class ResponseEncoder:
    """Encode the page handler's text output (``tools.encode``, on by default)."""

    default_encoding = "utf-8"
    failmsg = "Response body could not be encoded with %r."
    encoding: str | None = None
    errors = "strict"
    text_only = True
    add_charset = True
    debug = False

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.attempted_charsets: set[str] = set()
        self.body: Any = []
        request = serving.request
        if request.handler is not None:
            self.oldhandler = request.handler
            request.handler = self

    def _first_try(self, encoding: str) -> bool:
        """Note an attempt with ``encoding``; False if it was made before (it failed then)."""
        tried = encoding in self.attempted_charsets
        self.attempted_charsets.add(encoding)
        return not tried

    def encode_stream(self, encoding: str) -> bool:
        """Encode a streaming response body as it is sent (failures surface while sending)."""
        if not self._first_try(encoding):
            return False
        self.body = _encode_as_sent(self.body, encoding, self.errors)
        return True

    def encode_string(self, encoding: str) -> bool:
        """Encode a buffered response body; False when ``encoding`` cannot encode it."""
        if not self._first_try(encoding):
            return False
        try:
            self.body = [piece.encode(encoding, self.errors) if isinstance(piece, str) else piece
                         for piece in self.body]
        except (LookupError, UnicodeError):
            return False
        return True

    def find_acceptable_charset(self) -> str:
        """Encode the body with a charset the client accepts, and return that charset."""
        request = serving.request
        response = serving.response
        if response.stream:
            encoder = self.encode_stream
        else:
            encoder = self.encode_string
            # Encoded text may change length: let finalize() compute it again.
            response.headers.pop("Content-Length", None)

        headers = request.headers
        if type(headers) is not HeaderMap:
            headers.get("Accept-Charset")  # let tools.autovary see that the answer varies
        if self.encoding is None and not dict.get(headers, "Accept-Charset"):
            # The usual case: the client says nothing, so any charset will do.
            if encoder(self.default_encoding):
                return self.default_encoding
            raise HTTPError(500, self.failmsg % self.default_encoding)
        encs = request.headers.elements("Accept-Charset")
        charsets = [enc.value.lower() for enc in encs]
        if self.encoding is not None:
            encoding = self.encoding.lower()
            if (not charsets or "*" in charsets or encoding in charsets) and encoder(encoding):
                return encoding
        elif not encs:
            if encoder(self.default_encoding):
                return self.default_encoding
            raise HTTPError(500, self.failmsg % self.default_encoding)
        else:
            for element in encs:
                if element.qvalue > 0:
                    if element.value == "*":
                        if encoder(self.default_encoding):
                            return self.default_encoding
                    elif encoder(element.value):
                        return element.value
            if "*" not in charsets:
                # Where no '*' is given, ISO-8859-1 is acceptable unless explicitly refused.
                iso = "iso-8859-1"
                if iso not in charsets and encoder(iso):
                    return iso

        header = request.headers.get("Accept-Charset")
        if header is None:
            msg = "The request has no Accept-Charset header."
        else:
            msg = f"Your client sent this Accept-Charset header: {header}."
        msg += f" We tried these charsets: {', '.join(sorted(self.attempted_charsets))}."
        raise HTTPError(406, msg)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        body = prepare_iter(self.oldhandler(*args, **kwargs))
        response = serving.response
        response.close_later(body)
        self.body = body
        headers = response.headers
        ct_value = dict.get(headers, "Content-Type")
        if not ct_value:
            return self._encode_anyway()
        if ct_value == "text/html":  # the default, untouched: skip the parsing
            ct = HeaderElement("text/html", {})
        else:
            elements = headers.elements("Content-Type")
            if not elements:
                return self._encode_anyway()
            ct = elements[0]
        if self.text_only and not ct.value.lower().startswith("text/"):
            return self._encode_anyway()
        ct.params["charset"] = self.find_acceptable_charset()
        if self.add_charset:
            headers["Content-Type"] = str(ct)
        return self.body

    def _encode_anyway(self) -> Any:
        """Encode any text with the default encoding, without announcing a charset."""
        body = self.body
        if isinstance(body, list) and not any(isinstance(chunk, str) for chunk in body):
            return body
        if serving.response.stream:
            self.encode_stream(self.encoding or self.default_encoding)
        elif not self.encode_string(self.encoding or self.default_encoding):
            raise HTTPError(500, self.failmsg % (self.encoding or self.default_encoding))
        return self.body


# -- gzip -------------------------------------------------------------------------------------

_GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255])
"""Magic, deflate, no flags, no timestamp, no extra flags, unknown OS (RFC 1952)."""


def compress(body: Iterable[bytes], compress_level: int, flush: bool = False
             ) -> Iterator[bytes]:
    """Compress ``body`` (an iterable of bytes) at ``compress_level``, as a gzip stream.

    With ``flush``, each chunk is flushed as it comes (for streamed responses); empty
    chunks are never yielded (an empty chunk would end a chunked response).
    """
    yield _GZIP_HEADER
    crc = 0
    size = 0
    zobj = zlib.compressobj(compress_level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    for chunk in body:
        if not chunk:
            continue
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
        data = zobj.compress(chunk)
        if flush:
            data += zobj.flush(zlib.Z_SYNC_FLUSH)
        if data:
            yield data
    yield zobj.flush() + struct.pack("<LL", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


def decompress(body: bytes) -> bytes:
    """Return the data of the gzip stream ``body``."""
    import gzip as _gzip

    return _gzip.decompress(body)


_token = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_qvalue = re.compile(r"^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$")


def accepted_codings(header: str) -> list[tuple[str, float]] | None:
    """Parse an Accept-Encoding value into (coding, qvalue) pairs in the client's order.

    Returns None when the value is malformed (a bad token, a parameter other than q, a
    qvalue outside RFC 7231's grammar): such a header is best ignored.
    """
    result = []
    for element in header.split(","):
        element = element.strip()
        if not element:
            continue
        coding, *params = (part.strip() for part in element.split(";"))
        if not _token.match(coding):
            return None
        q = 1.0
        for param in params:
            name, eq, value = param.partition("=")
            if name.strip().lower() != "q" or not eq or not _qvalue.match(value.strip()):
                return None
            q = float(value)
        result.append((coding.lower(), q))
    return result


def _gzip_choice(codings: list[tuple[str, float]]) -> tuple[bool, bool]:
    """Return (compress, refuse): whether to gzip, and whether nothing acceptable is left."""
    explicit = {coding: q for coding, q in reversed(codings)}  # the first mention wins
    star = explicit.get("*")
    gzip_q = explicit.get("gzip", explicit.get("x-gzip", star if star is not None else 0.0))
    identity_q = explicit.get("identity", star if star is not None else 1.0)
    if gzip_q <= 0:
        return False, identity_q <= 0
    if "identity" not in explicit or identity_q < gzip_q:
        return True, False
    if identity_q > gzip_q:
        return False, False
    order = [coding for coding, _ in codings]
    first_gzip = min(order.index(c) for c in ("gzip", "x-gzip", "*") if c in order)
    return first_gzip < order.index("identity"), False


def _mime_matches(content_type: str, mime_types: Iterable[str]) -> bool:
    """Return whether ``content_type`` is one of ``type/subtype``, ``type/*``, ``type/*+x``."""
    if content_type in mime_types:
        return True
    major, _, minor = content_type.partition("/")
    for pattern in mime_types:
        pmajor, _, pminor = pattern.partition("/")
        if pmajor != major:
            continue
        if pminor == "*":
            return True
        if pminor.startswith("*+") and minor.endswith(pminor[1:]):
            return True
    return False


def gzip(compress_level: int = 5, mime_types: Iterable[str] = ("text/html", "text/plain"),
         debug: bool = False) -> None:
    """Compress the body with gzip when the client allows it and its type is one of ``mime_types``.

    ``response.headers['Content-Type']`` must be set before this runs. ``mime_types`` holds
    ``type/subtype``, ``type/*`` or ``type/*+subtype`` forms. Nothing is compressed when the
    client sends no Accept-Encoding, does not accept gzip or x-gzip with a qvalue above 0,
    or prefers identity.
    """
    if isinstance(compress_level, bool) or not isinstance(compress_level, int) \
            or not 0 <= compress_level <= 9:
        raise ValueError(f"tools.gzip.compress_level: expected an integer from 0 to 9, "
                         f"got {compress_level!r}")
    request = serving.request
    response = serving.response
    set_vary_header(response, "Accept-Encoding")
    body = response.body
    if not body or getattr(request, "cached", False):
        return  # empty (a 304, say), or served from the cache already compressed
    header = request.headers.get("Accept-Encoding")
    if not header:
        return
    codings = accepted_codings(header)
    if codings is None:
        return
    should_compress, refuse = _gzip_choice(codings)
    if not should_compress:
        if refuse:
            HTTPError(406, "identity, gzip").set_response()
        return
    headers = response.headers
    if "Content-Encoding" in headers or "Content-Range" in headers:
        return
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if isinstance(mime_types, str):
        mime_types = [mime_types]
    if not _mime_matches(content_type, [m.lower() for m in mime_types]):
        return
    headers["Content-Encoding"] = "gzip"
    headers.pop("Content-Length", None)  # finalize computes it again
    # The old body stays among the response's closables, so it is closed at the end.
    response.body = compress(body, compress_level, flush=response.stream)
