"""Encoding of response bodies (``tools.encode``) and decoding of request bodies (``decode``).

``ResponseEncoder`` wraps the page handler: the text it returns (or yields) is encoded with
a charset the client accepts (Accept-Charset, in the client's order of preference; utf-8
when the client says nothing), and for ``text/*`` responses that charset is added to the
Content-Type (``text/html;charset=utf-8``). When no acceptable charset can encode the body
the answer is 406. Unlike the reference, text returned for a non-text type (say
``application/json``) is encoded with the default encoding rather than refused.

gzip and friends come with the rest of the library (part 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.web._cperror import HTTPError
from services.web._cprequest import prepare_iter
from services.web._serving import serving
from services.web.lib import closable
from services.web.lib.httputil import HeaderElement

__all__ = ["ResponseEncoder", "UTF8StreamEncoder", "decode", "prepare_iter"]


def decode(encoding: Any = None, default_encoding: Any = "utf-8") -> None:
    """Replace or extend the list of charsets used to decode a request entity.

    ``encoding`` (a string or a list) restricts the charsets attempted, whatever the
    Content-Type says; otherwise ``default_encoding`` extends them.
    """
    body = serving.request.body
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

    def encode_stream(self, encoding: str) -> bool:
        """Encode a streaming response body with a generator wrapper."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        errors = self.errors

        def encoder(body: Any) -> Iterator[bytes]:
            for chunk in body:
                if isinstance(chunk, str):
                    chunk = chunk.encode(encoding, errors)
                yield chunk

        self.body = encoder(self.body)
        return True

    def encode_string(self, encoding: str) -> bool:
        """Encode a buffered response body; False when ``encoding`` cannot encode it."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        body = []
        for chunk in self.body:
            if isinstance(chunk, str):
                try:
                    chunk = chunk.encode(encoding, self.errors)
                except (LookupError, UnicodeError):
                    return False
            body.append(chunk)
        self.body = body
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

        if self.encoding is None and not dict.get(request.headers, "Accept-Charset"):
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
            msg = "Your client did not send an Accept-Charset header."
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
