"""HTTP library functions: header maps and elements, statuses, query strings, ranges, dates.

Framework-neutral: nothing here knows about requests in flight, so every function takes plain
values and returns plain values (the framework's request and response objects use them).

Header names are kept title-cased (``Content-Type``), the form ``str.title`` gives, so a
HeaderMap is a plain dict underneath and lookups cost one ``title()``. Values are text; on
output, values that latin-1 cannot carry are encoded as RFC 2047 words, and values holding CR
or LF are refused, so a response header can never be split into two.
"""

from __future__ import annotations

import base64
import email.header
import email.utils
import http
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "AcceptElement",
    "CaseInsensitiveDict",
    "HTTPDate",
    "HeaderElement",
    "HeaderMap",
    "Host",
    "decode_TEXT",
    "decode_TEXT_maybe",
    "get_ranges",
    "header_elements",
    "parse_query_string",
    "protocol_from_http",
    "response_codes",
    "urljoin",
    "urljoin_bytes",
    "valid_status",
]

response_codes: dict[int, tuple[str, str]] = {
    status.value: (status.phrase, status.description) for status in http.HTTPStatus
}
"""A map of {code: (reason phrase, longer message)}."""
response_codes[500] = (
    "Internal Server Error",
    "The server encountered an unexpected condition which prevented it from fulfilling "
    "the request.",
)
response_codes[503] = (
    "Service Unavailable",
    "The server is currently unable to handle the request due to a temporary overloading "
    "or maintenance of the server.",
)

# Statuses already checked, keyed by what callers pass (200, '200 OK', '404'...).
_valid_status_cache: dict[Any, tuple[int, str, str]] = {}


def urljoin(*atoms: str) -> str:
    """Join URL pieces with single slashes, skipping empty ones."""
    url = "/".join([x for x in atoms if x])
    while "//" in url:
        url = url.replace("//", "/")
    return url or "/"


def urljoin_bytes(*atoms: bytes) -> bytes:
    """Return the given path atoms (bytes) joined into one URL, even if some are blank."""
    url = b"/".join([x for x in atoms if x])
    while b"//" in url:
        url = url.replace(b"//", b"/")
    return url or b"/"


def protocol_from_http(protocol_str: str) -> tuple[int, int]:
    """Return a protocol tuple from an 'HTTP/x.y' string."""
    return int(protocol_str[5]), int(protocol_str[7])


def get_ranges(headervalue: str | None, content_length: int) -> list[tuple[int, int]] | None:
    """The byte ranges a Range header asks for, as (start, stop) slices, or None.

    ``bytes=3-6`` against a body gives ``[(3, 7)]``; an empty list means 416
    (no range can be satisfied); None means there is no usable Range header.
    """
    if not headervalue:
        return None
    result = []
    bytesunit, _, byteranges = headervalue.partition("=")
    if bytesunit.strip() != "bytes" or not byteranges:
        return None
    for brange in byteranges.split(","):
        start_text, dash, stop_text = (x.strip() for x in brange.partition("-"))
        if not dash:
            return None
        try:
            if start_text:
                start = int(start_text)
                if start >= content_length:
                    continue  # unsatisfiable, but others may be
                stop = int(stop_text) if stop_text else content_length - 1
                if stop < start:
                    return None  # a syntactically invalid range: ignore the header
                result.append((start, min(stop + 1, content_length)))
            else:
                if not stop_text:
                    return None
                suffix = int(stop_text)
                if suffix > content_length:
                    result.append((0, content_length))  # a suffix longer than the body
                elif suffix:
                    result.append((content_length - suffix, content_length))
        except ValueError:
            return None
    return result


class HeaderElement:
    """One comma-separated item of a header value, with its `;key=value` parameters."""

    def __init__(self, value: str, params: dict[str, Any] | None = None) -> None:
        self.value = value
        self.params = {} if params is None else params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderElement) and (self.value, self.params) == (
            other.value, other.params)

    def __lt__(self, other: HeaderElement) -> bool:
        return self.value < other.value

    def __hash__(self) -> int:
        return hash(str(self))

    def __str__(self) -> str:
        return self.value + "".join(f";{k}={v}" for k, v in self.params.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r}, {self.params!r})"

    @staticmethod
    def parse(elementstr: str) -> tuple[str, dict[str, str]]:
        """Split an item at its semicolons: the first piece is the value, the rest parameters."""
        atoms = [x.strip() for x in elementstr.split(";")]
        atoms = [x for x in atoms if x]
        initial_value = atoms.pop(0) if atoms else ""
        params = {}
        for atom in atoms:
            key, _, val = atom.partition("=")
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[key.strip()] = val
        return initial_value, params

    @classmethod
    def from_str(cls, elementstr: str) -> HeaderElement:
        """Build one from the text of a single item."""
        value, params = cls.parse(elementstr)
        return cls(value, params)


_q_separator = re.compile(r"; *q *=")


class AcceptElement(HeaderElement):
    """One item of an Accept-style header, ordered by its preference.

    The more-preferred element sorts first ("less than" the less-preferred one).
    """

    @classmethod
    def from_str(cls, elementstr: str) -> AcceptElement:
        """Construct an instance from 'media/type;param=x;q=0.5'."""
        atoms = _q_separator.split(elementstr, 1)
        media_type, params = cls.parse(atoms[0].strip())
        element = cls(media_type, params)
        if len(atoms) > 1:
            element.params["q"] = HeaderElement.from_str(atoms[1].strip())
        return element

    @property
    def qvalue(self) -> float:
        """How much the client prefers this item: its `q` parameter, 1.0 when absent."""
        val = self.params.get("q", "1")
        if isinstance(val, HeaderElement):
            val = val.value
        try:
            return float(val)
        except ValueError:
            from services.web._cperror import HTTPError

            raise HTTPError(400, f"Malformed HTTP header: `{self}`") from None

    def __lt__(self, other: HeaderElement) -> bool:
        other_q = other.qvalue if isinstance(other, AcceptElement) else 1.0
        return self.qvalue > other_q


def header_elements(fieldname: str, fieldvalue: str | None) -> list[HeaderElement]:
    """Parse a comma-separated header value into its items, most preferred first."""
    if not fieldvalue:
        return []
    accept = fieldname.startswith("Accept") or fieldname == "TE"
    cls = AcceptElement if accept else HeaderElement
    result = [cls.from_str(part) for part in fieldvalue.split(",") if part.strip()]
    if accept:
        # Most preferred first; equal qvalues in descending text order, as the reference
        # sorts them (which puts text/html;level=1 before text/html before text/*).
        result.sort(key=lambda e: (e.qvalue, str(e)), reverse=True)  # type: ignore[attr-defined]
    return result


_rfc2047_word = re.compile(r"=\?([^?]+)\?([qQbB])\?([^?]*)\?=")


def decode_TEXT(value: str) -> str:
    """Decode RFC 2047 TEXT (e.g. '=?utf-8?q?f=C3=BCr?=' gives 'für')."""
    parts = email.header.decode_header(value)
    return "".join(
        atom.decode(charset or "latin-1", "replace") if isinstance(atom, bytes) else atom
        for atom, charset in parts
    )


def decode_TEXT_maybe(value: str) -> str:
    """Decode ``value`` as RFC 2047 TEXT if it looks like an encoded word."""
    return decode_TEXT(value) if "=?" in value and _rfc2047_word.search(value) else value


def valid_status(status: Any) -> tuple[int, str, str]:
    """Return a legal (code, reason phrase, message) from an int or 'int reason' string."""
    cached = _valid_status_cache.get(status) if isinstance(status, (int, str)) else None
    if cached is not None:
        return cached
    result = _valid_status(status)
    if len(_valid_status_cache) < 512 and isinstance(status, (int, str)):
        _valid_status_cache[status] = result
    return result


def _valid_status(status: Any) -> tuple[int, str, str]:
    status = status or 200
    number: Any = status
    reason = None
    if isinstance(status, str):  # "404" or "404 Gone Fishing": the reason is optional
        number, _, given_reason = status.partition(" ")
        reason = given_reason.strip() or None
    try:
        code = int(number)
    except (TypeError, ValueError):
        raise ValueError(
            f"Illegal response status from server ({number!r} is non-numeric).") from None
    if not 100 <= code <= 599:
        raise ValueError(f"Illegal response status from server ({code!r} is out of range).")
    default_reason, message = response_codes.get(code, ("", ""))
    return code, reason if reason is not None else default_reason, message


_image_map = re.compile(r"^[0-9]+,[0-9]+$")


def parse_query_string(query_string: str, keep_blank_values: bool = True,
                       encoding: str = "utf-8") -> dict[str, Any]:
    """Build a params dict from a query string; repeated keys give lists.

    Raises UnicodeDecodeError when a value is not in ``encoding``.
    """
    if _image_map.match(query_string):
        x, y = query_string.split(",")
        return {"x": int(x), "y": int(y)}
    params: dict[str, Any] = {}
    for pair in query_string.replace(";", "&").split("&"):
        if not pair:
            continue
        name, eq, value = pair.partition("=")
        if not eq and not keep_blank_values:
            continue
        if not value and not keep_blank_values:
            continue
        key = _unquote(name, encoding)
        text = _unquote(value, encoding)
        if key in params:
            existing = params[key]
            if isinstance(existing, list):
                existing.append(text)
            else:
                params[key] = [existing, text]
        else:
            params[key] = text
    return params


def _unquote(text: str, encoding: str) -> str:
    text = text.replace("+", " ")
    if "%" not in text:
        if text.isascii():
            return text
        return text.encode("latin-1").decode(encoding)
    return urllib.parse.unquote_to_bytes(text).decode(encoding)


class CaseInsensitiveDict(dict):
    """A dict for header names: keys are stored as ``str(key).title()``, so any case finds them."""

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self, str(key).title())

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, str(key).title(), value)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, str(key).title())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, str(key).title())

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self, str(key).title(), default)

    def pop(self, key: Any, *default: Any) -> Any:
        return dict.pop(self, str(key).title(), *default)

    def setdefault(self, key: Any, x: Any = None) -> Any:
        return dict.setdefault(self, str(key).title(), x)

    def update(self, E: Any = (), **kwargs: Any) -> None:  # type: ignore[override]
        items = E.items() if isinstance(E, Mapping) else E
        for key, value in items:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    @classmethod
    def fromkeys(cls, seq: Iterable[Any], value: Any = None) -> CaseInsensitiveDict:
        new = cls()
        for key in seq:
            new[key] = value
        return new


class HeaderMap(CaseInsensitiveDict):
    """A dict of HTTP request or response headers, keyed by title-cased names."""

    protocol = (1, 1)
    encodings = ["ISO-8859-1"]
    use_rfc_2047 = True

    def elements(self, key: str) -> list[HeaderElement]:
        """The items of header `key`, parsed, most preferred first."""
        key = str(key).title()
        return header_elements(key, dict.get(self, key))

    def values(self, key: str | None = None) -> Any:
        """The values of header `key`'s items, most preferred first (all values without a key)."""
        if key is None:
            return dict.values(self)
        return [e.value for e in self.elements(key)]

    def output(self) -> list[tuple[bytes, bytes]]:
        """The headers as (name, value) pairs of bytes, ready to send (the
        reference's form; ``native_output`` gives the text pairs start_response takes)."""
        return [(name.encode("latin-1"), value.encode("latin-1"))
                for name, value in self.native_output()]

    def native_output(self) -> list[tuple[str, str]]:
        """The headers as (name, value) pairs of str, as WSGI's start_response takes them."""
        encode = self.encode
        out = []
        for name, value in self.items():
            if type(value) is not str:
                value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if not (value.isascii() and "\n" not in value and "\r" not in value):
                value = encode(value)
            if not name.isascii():
                name = encode(name)
            out.append((name, value))
        return out

    @classmethod
    def encode_header_items(cls, header_items: Iterable[tuple[Any, Any]]
                            ) -> Iterable[tuple[str, str]]:
        """Yield (name, value) pairs in a form fit to send: latin-1 text, one line each."""
        for name, value in header_items:
            if not isinstance(value, str):
                value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            yield cls.encode(name), cls.encode(value)

    @classmethod
    def encode(cls, v: str) -> str:
        """`v` ready for the wire: as is if Latin-1 can carry it, else an RFC 2047 word."""
        if "\n" in v or "\r" in v:
            raise ValueError(f"a header may not contain a line break: {v!r}")
        for enc in cls.encodings:
            try:
                v.encode(enc)
                return v
            except UnicodeEncodeError:
                continue
        if cls.protocol == (1, 1) and cls.use_rfc_2047:
            return "=?utf-8?b?" + base64.b64encode(v.encode("utf-8")).decode("ascii") + "?="
        raise ValueError(f"could not encode header part {v!r} using any of the encodings "
                         f"{cls.encodings!r}")


class Host:
    """An internet address: ip, port and, if known, the host name."""

    ip = "0.0.0.0"
    port = 80
    name = "unknown.tld"

    def __init__(self, ip: str, port: int, name: str | None = None) -> None:
        self.ip = ip
        self.port = port
        self.name = name or ip

    def __repr__(self) -> str:
        return f"httputil.Host({self.ip!r}, {self.port!r}, {self.name!r})"


_date_cache: list[tuple[int, str]] = [(0, "")]


def HTTPDate(timestamp: float | None = None) -> str:
    """Return an RFC 7231 date for ``timestamp`` (default now); cached per second."""
    if timestamp is None:
        timestamp = time.time()
    second = int(timestamp)
    cached_second, text = _date_cache[0]
    if second == cached_second:
        return text
    text = email.utils.formatdate(second, usegmt=True)
    _date_cache[0] = (second, text)
    return text

