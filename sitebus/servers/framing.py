"""Strict HTTP/1.1 request framing: what sitebus accepts as a request head and a body.

Where one message ends and the next begins must be read the same way by every hop between
the client and the app, or a request can be smuggled past a proxy inside another's body. So
sitebus refuses, with 400 and a closed connection, every head whose framing a proxy could read
differently (RFC 9112 sections 2.2, 5, 6 and 7): ``Content-Length`` together with
``Transfer-Encoding``; more than one ``Content-Length``, or one that is not plain digits
(``+5``, ``-1``, ``5, 5``); a transfer coding list that does not end in ``chunked``, or names
it twice; ``Transfer-Encoding`` in an HTTP/1.0 request (whose body length cannot then be
known); whitespace before a field's colon; an obs-fold (a line starting with whitespace); NUL,
a bare CR, a bare LF or another control character anywhere in the head; more than one
``Host``. A coding other than ``chunked`` (``gzip, chunked``) is 501, as RFC 9112 asks; a
declared body over the size limit is 413.

Chunked bodies are decoded here too (``ChunkedInput``), not by cheroot's ``ChunkedRFile``,
which passes its chunk sizes to ``int(x, 16)`` and so accepts ``0x5``, ``+5``, ``5_0`` and
``-1`` (read as the last chunk). Chunk sizes are 1 to 16 hex digits, each chunk ends in CRLF,
a truncated body is an error, and the decoded size is held to the limit (413). Errors are
``FramingError`` (a ValueError, which a WSGI app reading ``wsgi.input`` expects) carrying the
status to answer; the server answers it in place of whatever the app answered (see
``sitebus.servers.headreader``).

Everything here is a pure function of bytes, or reads from a file object it is given, so the
rules are tested from tables without sockets. The head checks are regular expressions over the
whole head: a typical request costs a few microseconds, run once per request by the head
reader before cheroot parses the same bytes again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple

__all__ = [
    "ChunkedInput",
    "FramingError",
    "Head",
    "LengthInput",
    "Refusal",
    "find_head_end",
    "parse_chunk_size",
    "read_head",
]

BAD_REQUEST = "400 Bad Request"
TOO_LARGE = "413 Request Entity Too Large"
HEADER_TOO_LARGE = "431 Request Header Fields Too Large"

# The reasons cheroot (so the reference) gives, word for word: clients and tests of the
# reference look for them (as the first words of "Malformed Request-Line" and "Illegal
# header line.", which sitebus answers too).
NO_CRLF = "HTTP requires CRLF terminators"
BODY_TOO_LARGE = "The entity sent with the request exceeds the maximum allowed bytes."
NOT_IMPLEMENTED = "501 Not Implemented"

MAX_CHUNK_LINE = 4096
"""The longest chunk-size line (with extensions) or trailer line read, in bytes."""

MAX_TRAILERS = 100
"""The most trailer fields read after the last chunk."""

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_VALUE = rb"[\t\x20-\x7e\x80-\xff]*"  # field-content: no NUL, CR, LF or other control byte

_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") [^\x00-\x20\x7f]+ HTTP/(\d)\.(\d)\r\n")
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":" + _VALUE + rb"\r\n)*\r\n")
_FRAMING = re.compile(
    rb"\n(content-length|transfer-encoding|host|expect):[\t ]*([^\r]*?)[\t ]*\r", re.IGNORECASE
)
_DIGITS = re.compile(rb"[0-9]{1,19}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[\t ]*;" + _VALUE + rb")?\r\n")
_TRAILER = re.compile(_TOKEN + rb":" + _VALUE + rb"\r\n")


@dataclass(frozen=True)
class Refusal:
    """A request refused before it reaches the app: the status line and a reason."""

    status: str
    reason: str

    def response(self) -> bytes:
        """Return the whole response: status, plain-text reason (no newline after it, as
        cheroot's own refusals), connection closed."""
        body = self.reason.encode("ascii", "replace")
        return (
            f"HTTP/1.1 {self.status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii") + body


class Head(NamedTuple):
    """The framing of an accepted head: how its body is delimited (a tuple: made per request)."""

    length: int
    """Bytes of the head itself (with its blank line)."""
    content_length: int
    """The declared body size (0 without Content-Length)."""
    chunked: bool
    expect_continue: bool


class FramingError(ValueError):
    """A request body that breaks its framing; ``refusal`` says what to answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def find_head_end(data: bytes | bytearray, start: int = 0) -> int:
    """Return the offset just past the blank line ending the head in ``data``, or -1.

    One empty line before the request line is skipped (RFC 9112 section 2.2). A head ended
    by bare LFs is found too, so that it is refused rather than waited for. ``start`` is
    where the previous search stopped, to avoid scanning a slowly growing head again.
    """
    skip = 2 if data[:2] == b"\r\n" else 0
    match = _END.search(data, max(skip, start - 3))
    return match.end() if match else -1


def read_head(head: bytes | bytearray, max_body_size: int = 0) -> Head | Refusal:
    """Return the framing of a complete head, or why it is refused.

    ``head`` ends with its blank line (see ``find_head_end``); ``max_body_size`` is 0 for
    no limit.
    """
    start = 2 if head.startswith(b"\r\n") else 0
    if b"\0" in head:
        return Refusal(BAD_REQUEST, "NUL in the request head")
    line = _REQUEST_LINE.match(head, start)
    if line is None:
        first = head[start:head.find(b"\n", start)]
        if not first.endswith(b"\r"):
            return Refusal(BAD_REQUEST, NO_CRLF)
        return Refusal(BAD_REQUEST, "Malformed Request-Line")
    if _FIELDS.fullmatch(head, line.end()) is None:
        return Refusal(BAD_REQUEST, _field_problem(bytes(head[line.end():])))
    http10 = line.group(2) == b"1" and line.group(3) == b"0"
    lengths: list[bytes] = []
    codings: list[bytes] = []
    hosts = 0
    expect_continue = False
    for name, value in _FRAMING.findall(head, line.end() - 1):
        name = name.lower()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
        elif name == b"host":
            hosts += 1
        elif value.lower() == b"100-continue":
            expect_continue = True
    if hosts > 1:
        return Refusal(BAD_REQUEST, "More than one Host header")
    if codings:
        refusal = _coding_problem(codings, bool(lengths), http10)
        if refusal is not None:
            return refusal
        return Head(len(head), 0, True, expect_continue)
    if len(lengths) > 1:
        return Refusal(BAD_REQUEST, "More than one Content-Length header")
    content_length = 0
    if lengths:
        if _DIGITS.fullmatch(lengths[0]) is None:
            return Refusal(BAD_REQUEST, "Content-Length is not a number of bytes")
        content_length = int(lengths[0])
        if max_body_size and content_length > max_body_size:
            return Refusal(TOO_LARGE, BODY_TOO_LARGE)
    return Head(len(head), content_length, False, expect_continue)


def _field_problem(fields: bytes) -> str:
    for raw in fields.split(b"\n")[:-1]:  # each line without its LF, the blank one last
        if not raw.endswith(b"\r"):
            return NO_CRLF
        if b"\r" in raw[:-1]:
            return "A bare CR in a header line"
        if raw == b"\r":
            break
        if raw[:1] in (b" ", b"\t"):
            return "A folded header line (obs-fold)"
        name, colon, _value = raw.partition(b":")
        if not colon or re.fullmatch(_TOKEN, name) is None:
            return "Illegal header line. A malformed header name (whitespace before the colon?)"
    return "A control character in a header value"


def _coding_problem(codings: list[bytes], has_length: bool, http10: bool) -> Refusal | None:
    if has_length:
        return Refusal(BAD_REQUEST, "Both Content-Length and Transfer-Encoding")
    if http10:
        return Refusal(BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
    if b"" in codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        return Refusal(BAD_REQUEST, "Transfer-Encoding must end with one chunked")
    if len(codings) > 1:
        return Refusal(NOT_IMPLEMENTED, "Only the chunked transfer coding is implemented")
    return None


def parse_chunk_size(line: bytes) -> int:
    """Return the size a chunk-size line (with its CRLF) announces; raise FramingError."""
    match = _CHUNK_SIZE.fullmatch(line)
    if match is None:
        raise FramingError(Refusal(BAD_REQUEST, f"Bad chunk size line {line[:40]!r}"))
    return int(match.group(1), 16)


class LineReader:
    """The line-by-line half of a body reader (``readlines``, iteration), built on its
    ``readline``: one copy for the chunked and the length-bound readers and their wrappers."""

    def readline(self, size: int | None = None) -> bytes:
        raise NotImplementedError

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Read the body's lines (until their total passes ``hint`` when positive)."""
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> LineReader:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class ChunkedInput(LineReader):
    """``wsgi.input`` for a chunked body: decoded strictly from ``rfile``, size held to a limit."""

    def __init__(self, rfile: BinaryIO | Any, max_size: int = 0) -> None:
        self.rfile = rfile
        self.max_size = max_size
        self.size = 0
        """Decoded bytes so far."""
        self.done = False
        """True once the last chunk and the trailer are read."""
        self.trailers: list[bytes] = []
        """The trailer field lines (with their CRLF), once the body is read."""
        self._chunk_left = 0
        self._buffer = b""

    def _refuse(self, status: str, reason: str) -> FramingError:
        return FramingError(Refusal(status, reason))

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        if not line.endswith(b"\r\n"):
            if len(line) > MAX_CHUNK_LINE:
                raise self._refuse(BAD_REQUEST, "A chunk line is too long")
            if not line or not line.endswith(b"\n"):
                raise self._refuse(BAD_REQUEST, "The chunked body ends early")
            raise self._refuse(BAD_REQUEST, "A chunk line not ended by CRLF")
        return line

    def _exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:
            raise self._refuse(BAD_REQUEST, "The chunked body ends early")
        return data

    def _next_chunk(self) -> bool:
        """Start the next chunk; False at the end of the body."""
        size = parse_chunk_size(self._line())
        if size == 0:
            for _ in range(MAX_TRAILERS + 1):
                line = self._line()
                if line == b"\r\n":
                    self.done = True
                    return False
                if _TRAILER.fullmatch(line) is None:
                    raise self._refuse(BAD_REQUEST, "A malformed trailer field")
                self.trailers.append(line)
            raise self._refuse(BAD_REQUEST, f"More than {MAX_TRAILERS} trailer fields")
        if self.max_size and self.size + size > self.max_size:
            raise self._refuse(TOO_LARGE, f"The body is larger than {self.max_size} bytes")
        self._chunk_left = size
        return True

    def _fill(self, wanted: int) -> bytes:
        """Return up to ``wanted`` decoded bytes (-1: all), b'' at the end."""
        parts = [self._buffer] if self._buffer else []
        have = len(self._buffer)
        self._buffer = b""
        while (wanted < 0 or have < wanted) and not self.done:
            if self._chunk_left == 0 and not self._next_chunk():
                break
            take = self._chunk_left if wanted < 0 else min(self._chunk_left, wanted - have)
            data = self._exact(take)
            self._chunk_left -= take
            self.size += take
            if self._chunk_left == 0 and self._exact(2) != b"\r\n":
                raise self._refuse(BAD_REQUEST, "A chunk not followed by CRLF")
            parts.append(data)
            have += take
        return b"".join(parts)

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes of the body (all of it when negative or None)."""
        if size is None:
            size = -1
        data = self._fill(size)
        if size >= 0 and len(data) > size:
            data, self._buffer = data[:size], data[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line of the body, at most ``size`` bytes."""
        parts: list[bytes] = []
        have = 0
        while size is None or size < 0 or have < size:
            data = self.read(8192 if size is None or size < 0 else min(8192, size - have))
            if not data:
                break
            newline = data.find(b"\n")
            if newline >= 0:
                self._buffer = data[newline + 1:] + self._buffer
                data = data[:newline + 1]
            parts.append(data)
            have += len(data)
            if newline >= 0:
                break
        return b"".join(parts)

    def read_trailer_lines(self) -> Iterator[bytes]:
        """Read the rest of the body; yield its trailer lines (cheroot's ChunkedRFile has this)."""
        while self.read(65536):
            pass
        yield from self.trailers


class LengthInput(LineReader):
    """``wsgi.input`` for a body of known length: a body cut short is a FramingError."""

    def __init__(self, rfile: Any, length: int) -> None:
        self.rfile = rfile
        self.remaining = length

    def _limit(self, size: int | None) -> int:
        return self.remaining if size is None or size < 0 else min(size, self.remaining)

    def _cut_short(self) -> FramingError:
        return FramingError(Refusal(BAD_REQUEST, "The body is shorter than Content-Length"))

    def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes of the body (all of it when None or negative)."""
        wanted = self._limit(size)
        data = self.rfile.read(wanted)
        self.remaining -= len(data)
        if len(data) < wanted:
            raise self._cut_short()
        return data

    def readline(self, size: int | None = None) -> bytes:
        """Read one line of the body, at most ``size`` bytes."""
        wanted = self._limit(size)
        data = self.rfile.readline(wanted)
        self.remaining -= len(data)
        if len(data) < wanted and not data.endswith(b"\n"):
            raise self._cut_short()
        return data

