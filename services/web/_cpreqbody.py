"""Request bodies: read by processors chosen by media type.

``request.body`` is a RequestBody (an Entity). Its ``processors`` map a media type (or a
top-level type, ``multipart``) to a function that reads the entity; the built-in ones are:

- ``application/x-www-form-urlencoded``: the fields become ``body.params``;
- ``multipart/form-data``: fields become params; a file field's value is its Part, whose
  ``.file`` is a temporary file (uploads are always streamed to disk) with ``.filename``
  and ``.content_type``; other parts are kept in memory up to ``maxrambytes``;
- ``multipart``: the parts are read into ``body.parts``.

Other types are left unread (``default_proc``) for the handler: ``request.body.read()``.
Tools add processors (``json_in``) or replace ``default_proc``. Body params are merged into
``request.params`` after processing. Text is decoded with ``attempt_charsets`` (the
Content-Type's charset first); an entity that none of them decodes is a 400.

Sizes: a body longer than ``request.body.maxbytes`` (if set, e.g. per handler in config) is
a 413, checked against Content-Length before reading and while reading; the server's
``max_request_body_size`` applies as well. A body-carrying request with neither a
Content-Length nor chunked transfer coding is a 411.
"""

from __future__ import annotations

import email.message
import re
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from typing import IO, Any

from services.web._cperror import HTTPError
from services.web.lib import httputil

__all__ = [
    "Entity",
    "Part",
    "RequestBody",
    "SizedReader",
    "process_multipart",
    "process_multipart_form_data",
    "process_urlencoded",
]

_boundary_pattern = re.compile(r"^[ -~]{0,200}[!-~]$")


def _merge_param(params: dict[str, Any], key: str, value: Any) -> None:
    if key in params:
        existing = params[key]
        if isinstance(existing, list):
            existing.append(value)
        else:
            params[key] = [existing, value]
    else:
        params[key] = value


def process_urlencoded(entity: Entity) -> None:
    """Decode a form-encoded body into `entity.params`, trying each allowed charset in turn."""
    qs = entity.fp.read()
    for charset in entity.attempt_charsets:
        try:
            params: dict[str, Any] = {}
            for pair in qs.replace(b";", b"&").split(b"&"):
                if not pair:
                    continue
                name, _, value = pair.partition(b"=")
                key = urllib.parse.unquote_to_bytes(name.replace(b"+", b" ")).decode(charset)
                text = urllib.parse.unquote_to_bytes(value.replace(b"+", b" ")).decode(charset)
                _merge_param(params, key, text)
        except (UnicodeDecodeError, LookupError):
            continue
        entity.charset = charset
        break
    else:
        raise HTTPError(400, "The request entity could not be decoded. The following "
                        f"charsets were attempted: {entity.attempt_charsets!r}")
    for key, value in params.items():
        _merge_param(entity.params, key, value)


def process_multipart(entity: Entity) -> None:
    """Split a multipart body at its boundary: each part becomes a Part in `entity.parts`."""
    boundary = entity.content_type.params.get("boundary", "").strip('"')
    if not _boundary_pattern.match(boundary):
        raise HTTPError(400, f"Invalid boundary in multipart form: {boundary!r}")
    marker = ("--" + boundary).encode("ascii")
    # Skip the preamble up to the first boundary.
    while True:
        line = entity.readline()
        if not line:
            return
        if line.strip() == marker:
            break
    while True:
        part = entity.part_class.from_fp(entity.fp, marker, entity)
        entity.parts.append(part)
        part.process()
        if part.fp.done:
            break


def process_multipart_form_data(entity: Entity) -> None:
    """As `process_multipart`, then named parts go to params: fields as text, uploads as Parts."""
    process_multipart(entity)
    kept_parts = []
    for part in entity.parts:
        if part.name is None:
            kept_parts.append(part)
        elif part.filename is None:
            _merge_param(entity.params, part.name, part.fullvalue())
            if part.file is not None:  # a field too large for memory: its text is all we keep
                part.file.close()
        else:
            _merge_param(entity.params, part.name, part)
    entity.parts = kept_parts


def process_multipart_params(entity: Entity) -> None:
    """Read a multipart body (multipart/mixed...) into entity.parts, and also into params as
    the reference does: a named part under its name, unnamed ones in the list ``parts``
    (text parts as their text, file parts whole)."""
    process_multipart(entity)
    for part in entity.parts:
        value = part.fullvalue() if part.filename is None else part
        _merge_param(entity.params, part.name or "parts", value)


class Entity:
    """An HTTP request body, or a part of a multipart body."""

    attempt_charsets = ["utf-8"]
    """Charsets tried, in order, to decode text; the Content-Type's charset comes first."""

    charset: str | None = None
    """The charset that decoded the entity."""

    default_content_type = "application/x-www-form-urlencoded"
    filename: str | None = None
    name: str | None = None
    file: IO[bytes] | None = None
    value: bytes | None = None
    maxrambytes = 1000
    """Parts longer than this are written to a temporary file rather than kept in memory."""

    processors: dict[str, Callable[[Any], None]] = {
        "application/x-www-form-urlencoded": process_urlencoded,
        "multipart/form-data": process_multipart_form_data,
        "multipart": process_multipart_params,
    }
    part_class: type[Part]

    def __init__(self, fp: Any, headers: httputil.HeaderMap,
                 params: dict[str, Any] | None = None,
                 parts: list[Part] | None = None) -> None:
        self.processors = dict(self.processors)
        self.fp = fp
        self.headers = headers
        self.params = {} if params is None else params
        self.parts = [] if parts is None else parts
        self._content_type: httputil.HeaderElement | None = None
        self.length: int | None = None
        length = headers.get("Content-Length")
        if length is not None and "chunked" not in headers.get("Transfer-Encoding", ""):
            try:
                self.length = int(length)
            except ValueError:
                raise HTTPError(400, f"Malformed Content-Length header: {length!r}") from None

    @property
    def content_type(self) -> httputil.HeaderElement:
        """The Content-Type of the entity (its default if the client sent none)."""
        if self._content_type is None:
            elements = self.headers.elements("Content-Type")
            self._content_type = elements[0] if elements else \
                httputil.HeaderElement.from_str(self.default_content_type)
            charset = self._content_type.params.get("charset")
            if charset:
                self.attempt_charsets = [charset] + [c for c in self.attempt_charsets
                                                     if c != charset]
            else:
                self.attempt_charsets = list(self.attempt_charsets)
        return self._content_type

    @content_type.setter
    def content_type(self, value: httputil.HeaderElement) -> None:
        self._content_type = value

    @property
    def type(self) -> httputil.HeaderElement:
        """A deprecated alias for content_type."""
        return self.content_type

    # -- reading ----------------------------------------------------------------------------

    def read(self, size: int | None = None, fp_out: IO[bytes] | None = None) -> Any:
        return self.fp.read(size, fp_out)

    def readline(self, size: int | None = None) -> bytes:
        return self.fp.readline(size)

    def readlines(self, sizehint: int | None = None) -> list[bytes]:
        return self.fp.readlines(sizehint)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def read_into_file(self, fp_out: IO[bytes] | None = None) -> IO[bytes]:
        """Copy the whole body into `fp_out` (a new `make_file()` if None) and return that file."""
        if fp_out is None:
            fp_out = self.make_file()
        self.read(fp_out=fp_out)
        return fp_out

    def make_file(self) -> IO[bytes]:
        """Where a large body is spooled: an anonymous temporary file (override to change)."""
        return tempfile.TemporaryFile()

    def fullvalue(self) -> str:
        """Return this entity as text, whether it is stored in a file or not."""
        if self.file is not None:
            self.file.seek(0)
            value = self.file.read()
            self.file.seek(0)
        else:
            value = self.value or b""
        return self.decode_entity(value)

    def decode_entity(self, value: bytes) -> str:
        """Return ``value`` decoded with the first of attempt_charsets that can."""
        for charset in self.attempt_charsets:
            try:
                text = value.decode(charset)
            except (UnicodeDecodeError, LookupError):
                continue
            self.charset = charset
            return text
        raise HTTPError(400, "The request entity could not be decoded. The following charsets "
                        f"were attempted: {self.attempt_charsets!r}")

    # -- processing -------------------------------------------------------------------------

    def process(self) -> None:
        """Hand the body to the processor registered for its media type, or its major type."""
        media_type = self.content_type.value
        proc = self.processors.get(media_type)
        if proc is None:
            proc = self.processors.get(media_type.split("/", 1)[0])
        if proc is None:
            self.default_proc()
        else:
            proc(self)

    def default_proc(self) -> None:
        """What runs when no processor knows the body's type: the body is left for the handler."""

    def close_files(self) -> None:
        """Close the temporary files of this entity and of its parts (and of params)."""
        if self.file is not None:
            self.file.close()
        for part in self.parts:
            part.close_files()
        for value in self.params.values():
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, Entity):
                    item.close_files()


class Part(Entity):
    """A MIME part of a multipart entity."""

    attempt_charsets = ["us-ascii", "utf-8"]
    boundary: bytes
    default_content_type = "text/plain"
    maxrambytes = 1000

    def __init__(self, fp: Any, headers: httputil.HeaderMap, boundary: bytes) -> None:
        super().__init__(fp, headers)
        self.boundary = boundary
        disposition = headers.get("Content-Disposition")
        if disposition:
            message = email.message.Message()
            message["Content-Disposition"] = disposition
            name = message.get_param("name", header="Content-Disposition")
            filename = message.get_filename()
            self.name = name if isinstance(name, str) else None
            self.filename = filename

    @classmethod
    def from_fp(cls, fp: Any, boundary: bytes, parent: Entity | None = None) -> Part:
        part = cls(fp, cls.read_headers(fp), boundary)
        if parent is not None and "charset" not in part.content_type.params:
            parent_charsets = [c for c in parent.attempt_charsets if c not in part.attempt_charsets]
            part.attempt_charsets = part.attempt_charsets + parent_charsets
        return part

    @classmethod
    def read_headers(cls, fp: Any) -> httputil.HeaderMap:
        headers = httputil.HeaderMap()
        key = None
        while True:
            line = fp.readline()
            if not line:
                raise HTTPError(400, "Illegal end of headers in a multipart body.")
            if line == b"\r\n":
                break
            if not line.endswith(b"\r\n"):
                raise HTTPError(400, f"MIME requires CRLF terminators: {line!r}")
            if line[:1] in (b" ", b"\t") and key is not None:
                value = line.strip().decode("latin-1")  # a continued header
            else:
                name, colon, raw = line.partition(b":")
                if not colon:
                    raise HTTPError(400, f"Malformed multipart header: {line!r}")
                key = name.strip().decode("latin-1")
                value = raw.strip().decode("latin-1")
            existing = headers.get(key)
            headers[key] = f"{existing}, {value}" if existing else value
        return headers

    def read_lines_to_boundary(self, fp_out: IO[bytes] | None = None) -> Any:
        """Read bytes up to the next boundary: into memory (bytes) or ``fp_out`` (a file).

        Content longer than ``maxrambytes`` goes to a temporary file. The line break before a
        boundary belongs to the boundary, so each line's break is held back and only written
        once the next line shows it was content.
        """
        spool = _Spool(fp_out, self.maxrambytes, self.make_file)
        closing = self.boundary + b"--"
        held = b""
        starts_line = True
        for chunk in iter(lambda: self.fp.readline(65536), b""):
            if starts_line:  # only a whole line can be a boundary
                marker = chunk.strip() if chunk[:2] == b"--" else None
                if marker == self.boundary:
                    return spool.result()
                if marker == closing:
                    self.fp.finish()
                    return spool.result()
            text, brk = _split_line_break(chunk)
            spool.write(held + text)
            held, starts_line = brk, bool(brk)
        raise HTTPError(400, "The multipart body ends before its closing boundary.")

    def default_proc(self) -> None:
        """Read the part: an upload into a temporary file, a field into memory unless it
        passes maxrambytes (then into a temporary file too)."""
        content = self.read_lines_to_boundary(self.make_file() if self.filename else None)
        if isinstance(content, bytes):
            self.value = content
        else:
            self.file = content

    def read_into_file(self, fp_out: IO[bytes] | None = None) -> IO[bytes]:
        """Read the part's content into ``fp_out`` (a new temporary file if None); return it."""
        return self.read_lines_to_boundary(self.make_file() if fp_out is None else fp_out)


Entity.part_class = Part


def _split_line_break(chunk: bytes) -> tuple[bytes, bytes]:
    """Split ``chunk`` into its text and its final line break (CRLF, LF or none)."""
    for brk in (b"\r\n", b"\n"):
        if chunk.endswith(brk):
            return chunk[: -len(brk)], brk
    return chunk, b""


class _Spool:
    """Where a part's content goes: memory while it is small, then a file."""

    def __init__(self, out: IO[bytes] | None, limit: int, make_file: Callable[[], IO[bytes]]
                 ) -> None:
        self.out = out
        self.limit = limit
        self.make_file = make_file
        self.pieces: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.out is not None:
            self.out.write(data)
            return
        self.pieces.append(data)
        self.size += len(data)
        if self.size > self.limit:
            self.out = self.make_file()
            self.out.writelines(self.pieces)
            self.pieces.clear()

    def result(self) -> bytes | IO[bytes]:
        """Return the content in memory, or the file it went to, rewound."""
        if self.out is None:
            return b"".join(self.pieces)
        self.out.seek(0)
        return self.out


class SizedReader:
    """Reads a request body from the server's stream, counting bytes against a limit.

    ``bytes_read`` counts the bytes handed out, never more than the declared length; what a
    line read takes from the stream past the line's end waits in ``buffer`` for the next call.
    """

    def __init__(self, fp: Any, length: int | None, maxbytes: int | None,
                 bufsize: int = 8192, has_trailers: bool = False) -> None:
        self.fp, self.length, self.maxbytes, self.bufsize = fp, length, maxbytes, bufsize
        self.has_trailers = has_trailers
        self.buffer = b""
        self.bytes_read = 0
        self.done = False  # set at the end of the stream, or by the closing boundary

    def _allowance(self, size: int | None) -> int | None:
        """Return how many bytes a call may hand out (None: up to the end of the stream)."""
        if self.length is None:
            return size
        rest = self.length - self.bytes_read
        return rest if size is None else min(size, rest)

    def _take(self, most: int) -> bytes:
        """Return up to ``most`` bytes, from the read-ahead first, and count them."""
        if self.buffer:
            data, self.buffer = self.buffer[:most], self.buffer[most:]
        else:
            try:
                data = self.fp.read(most)
            except Exception as error:
                if type(error).__name__ != "MaxSizeExceeded":  # cheroot's limit, by name
                    raise
                raise HTTPError(413, f"Maximum request length: {error.args[1:]!r}") from None
        self.bytes_read += len(data)
        if self.maxbytes and self.bytes_read > self.maxbytes:
            raise HTTPError(413)
        return data

    def _give_back(self, data: bytes) -> None:
        """Return bytes read past a line's end to the front of the read-ahead."""
        self.buffer = data + self.buffer
        self.bytes_read -= len(data)

    def read(self, size: int | None = None, fp_out: IO[bytes] | None = None) -> Any:
        """Read bytes (at most ``size``); into ``fp_out`` if given (then return None)."""
        allowance = self._allowance(size)
        if allowance == 0:
            self.finish()
        pieces: list[bytes] = []
        store = pieces.append if fp_out is None else fp_out.write
        while allowance is None or allowance > 0:
            data = self._take(self.bufsize if allowance is None else min(allowance, self.bufsize))
            if not data:
                self.finish()
                break
            store(data)
            if allowance is not None:
                allowance -= len(data)
        return b"".join(pieces) if fp_out is None else None

    def readline(self, size: int | None = None) -> bytes:
        """The body's next line, up to ``size`` bytes, newline included."""
        line = bytearray()
        while size is None or len(line) < size:
            room = self.bufsize if size is None else min(size - len(line), self.bufsize)
            data = self.read(room)
            newline = data.find(b"\n")
            if newline >= 0:
                self._give_back(data[newline + 1:])
                line += data[:newline + 1]
                break
            if not data:
                break
            line += data
        return bytes(line)

    def readlines(self, sizehint: int | None = None) -> list[bytes]:
        """Read lines from the request body (about ``sizehint`` bytes of them) and return them."""
        budget = self._allowance(sizehint)
        lines: list[bytes] = []
        total = 0
        for line in iter(self.readline, b""):
            lines.append(line)
            total += len(line)
            if budget is not None and total >= budget:
                break
        return lines

    def finish(self) -> None:
        self.done = True


class RequestBody(Entity):
    """The body of a request: its headers, limits and the processors that decode it."""

    bufsize = 8 * 1024
    default_content_type = ""
    maxbytes: int | None = None
    """Raise 413 if more bytes than this arrive (None: only the server's limit applies)."""

    def __init__(self, fp: Any, headers: httputil.HeaderMap,
                 params: dict[str, Any] | None = None,
                 request_params: dict[str, Any] | None = None) -> None:
        super().__init__(fp, headers, params)
        # With no Content-Type the body is not parsed (default_content_type ''): the handler
        # reads it raw from request.body, as the reference does.
        self.request_params = {} if request_params is None else request_params

    def process(self) -> None:
        """Check the body's size against the limits, then decode it by its Content-Type."""
        headers = self.headers
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            raise HTTPError(411)
        if self.maxbytes and self.length is not None and self.length > self.maxbytes:
            raise HTTPError(413)
        self.fp = SizedReader(self.fp, self.length, self.maxbytes, bufsize=self.bufsize,
                              has_trailers="Trailer" in headers)
        super().process()
        request_params = self.request_params
        for key, value in self.params.items():
            _merge_param(request_params, key, value)
