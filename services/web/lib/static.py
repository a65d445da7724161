"""Static content: ``serve_file``, ``serve_fileobj``, ``serve_download`` and the tools
``staticdir`` and ``staticfile``.

Serving a file answers as HTTP/1.1 caches and download managers expect: ``Last-Modified``
and an ``ETag`` (from the file's modification time and size), the preconditions of RFC 7232
in its order (If-Match and If-Unmodified-Since give 412; If-None-Match and
If-Modified-Since give 304 to GET and HEAD), and byte ranges (RFC 7233): one range is a 206
with Content-Range, several are ``multipart/byteranges``, none satisfiable is a 416, and an
If-Range that no longer matches serves the whole file. Ranges are bounded (``bounded_ranges``) so
a Range header cannot amplify a response: overlapping or adjacent ranges are merged, and a
request of more than ``MAX_RANGES`` ranges, or whose ranges add up to more than the file, is
served the whole file with 200, as RFC 7233 lets a server ignore Range. The Content-Type comes from
``mimetypes.types_map`` by extension (so ``mimetypes.types_map['.csv'] = 'text/csv'`` works
as the reference says); an unknown extension is ``application/octet-stream``, never the
default ``text/html`` (the reference's), so an uploaded file cannot be served as a page.

Paths. ``staticdir`` maps the part of the URL below its section onto ``dir`` (absolute, or
relative to ``root``). A path that leaves the directory, by ``..``, an encoded slash
(``%2F``, which cheroot leaves encoded; it is read as a slash and then checked like any
other) or a symbolic link that points out of the tree, is a 403; a NUL byte is a 404. Links
that stay inside the tree are followed; ``follow_symlinks=True`` also follows links that
leave it (the reference's behaviour, for trees that link to shared assets on purpose).
Directories are served only through ``index``. Only GET and HEAD are answered; other
methods fall through to the page handler.
"""

from __future__ import annotations

import email.utils
import io
import mimetypes
import os
import re
import stat
import unicodedata
import uuid
from collections.abc import Iterator
from typing import IO, Any

from services.web._cperror import HTTPError, NotFound
from services.web._serving import serving
from services.web.lib import file_generator, httputil
from sitebus.errors import ConfigError

__all__ = ["serve_download", "serve_file", "serve_fileobj", "staticdir", "staticfile"]

mimetypes.init()
for _ext, _type in {".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript",
                    ".json": "application/json", ".svg": "image/svg+xml",
                    ".ico": "image/x-icon", ".wasm": "application/wasm",
                    ".woff": "font/woff", ".woff2": "font/woff2", ".webp": "image/webp",
                    ".gz": "application/gzip", ".bz2": "application/x-bzip2",
                    ".dwg": "image/x-dwg"}.items():
    mimetypes.types_map[_ext] = _type

DEFAULT_CONTENT_TYPE = "application/octet-stream"


def guess_type(path: str) -> str:
    """Return the Content-Type for ``path`` from its extension."""
    ext = os.path.splitext(path)[1].lower()
    return mimetypes.types_map.get(ext) or DEFAULT_CONTENT_TYPE


def make_etag(st: os.stat_result) -> str:
    """Return a strong entity tag for a file's modification time and size."""
    return f'"{st.st_mtime_ns // 1000:x}-{st.st_size:x}"'


# -- preconditions (RFC 7232), as a pure function ----------------------------------------------


def _parse_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_list(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _weak_match(tags: list[str], etag: str) -> bool:
    bare = etag[2:] if etag.startswith("W/") else etag
    return any(tag == "*" or (tag[2:] if tag.startswith("W/") else tag) == bare for tag in tags)


def _strong_match(tags: list[str], etag: str) -> bool:
    return not etag.startswith("W/") and any(tag == "*" or tag == etag for tag in tags)


def precondition_status(method: str, headers: Any, etag: str | None,
                        last_modified: float | None) -> int | None:
    """Return 304 or 412 if the request's preconditions say so (RFC 7232 section 6), else None.

    ``headers`` maps request header names to values; ``last_modified`` is a timestamp.
    """
    modified = int(last_modified) if last_modified is not None else None
    if_match = headers.get("If-Match")
    if if_match is not None:
        if etag is None or not _strong_match(_etag_list(if_match), etag):
            return 412
    else:
        since = _parse_date(headers.get("If-Unmodified-Since"))
        if since is not None and modified is not None and modified > since:
            return 412
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if etag is not None and _weak_match(_etag_list(if_none_match), etag):
            return 304 if safe else 412
    elif safe:
        since = _parse_date(headers.get("If-Modified-Since"))
        if since is not None and modified is not None and modified <= since:
            return 304
    return None


def range_applies(headers: Any, etag: str | None, last_modified: float | None) -> bool:
    """Return False if an If-Range header says the client's copy is stale (serve it whole)."""
    if_range = headers.get("If-Range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', 'W/"')):
        return etag is not None and _strong_match([if_range], etag)
    date = _parse_date(if_range)
    return date is not None and last_modified is not None and int(last_modified) == date


# -- serving ----------------------------------------------------------------------------------


def _disposition(disposition: str, name: str) -> str:
    """Return a Content-Disposition value (RFC 6266) that any filename is safe in."""
    # The ASCII fallback keeps what survives decomposition (é -> e) and drops the rest.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in ascii_name)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        from urllib.parse import quote

        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def _check_preconditions(etag: str | None, last_modified: float | None) -> None:
    request = serving.request
    status = precondition_status(request.method, request.headers, etag, last_modified)
    if status == 304:
        from services.web._cperror import HTTPRedirect

        raise HTTPRedirect([], 304)
    if status == 412:
        raise HTTPError(412)


def serve_file(path: str, content_type: str | None = None, disposition: str | None = None,
               name: str | None = None, debug: bool = False) -> Any:
    """Answer with the file at ``path`` (absolute): status, headers and a body that reads it.

    The Content-Type is ``content_type`` or guessed from the extension; with
    ``disposition`` (e.g. 'attachment') a Content-Disposition names the file ``name``
    (default: its base name). A missing file (or a directory) is a 404.
    """
    response = serving.response
    if not os.path.isabs(path):
        raise ValueError(f"{path!r} is not an absolute path.")
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError):  # ValueError: a NUL byte in the path
        raise NotFound() from None
    if not stat.S_ISREG(st.st_mode):
        raise NotFound()
    etag = make_etag(st)
    response.headers["Last-Modified"] = httputil.HTTPDate(st.st_mtime)
    response.headers["ETag"] = etag
    _check_preconditions(etag, st.st_mtime)
    if content_type is None:
        content_type = guess_type(path)
    if disposition is not None:
        response.headers["Content-Disposition"] = _disposition(
            disposition, os.path.basename(path) if name is None else name)
    try:
        fileobj = open(path, "rb")
    except OSError:
        raise NotFound() from None
    return _serve_fileobj(fileobj, content_type, st.st_size, etag, st.st_mtime, 0)


def serve_fileobj(fileobj: IO[bytes], content_type: str | None = None,
                  disposition: str | None = None, name: str | None = None,
                  debug: bool = False) -> Any:
    """Answer with an open file object's content, from where it stands; Range gets parts of it.

    Content is served from the object's current position. For a Range request the object
    is seeked (from that position); an object that cannot seek is served whole.
    """
    response = serving.response
    length = None
    etag = None
    modified = None
    start = 0
    try:
        st = os.fstat(fileobj.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        start = fileobj.tell()
        length = st.st_size - start
        modified = st.st_mtime
        response.headers["Last-Modified"] = httputil.HTTPDate(modified)
        _check_preconditions(None, modified)
    elif _seekable(fileobj):
        start = fileobj.tell()
        length = fileobj.seek(0, io.SEEK_END) - start
        fileobj.seek(start)
    if disposition is not None:
        response.headers["Content-Disposition"] = (
            disposition if name is None else _disposition(disposition, name))
    return _serve_fileobj(fileobj, content_type, length, etag, modified, start)


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, ValueError):
        return False


def _slice(fileobj: IO[bytes], start: int, count: int, close: bool) -> Iterator[bytes]:
    """Yield ``count`` bytes of ``fileobj`` from ``start``; close the file at the end."""
    try:
        fileobj.seek(start)
        remaining = count
        while remaining > 0:
            chunk = fileobj.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        if close:
            fileobj.close()


MAX_RANGES = 100
"""The most ranges one request may ask for; more are answered with the whole file."""


def bounded_ranges(ranges: list[tuple[int, int]], length: int,
                   limit: int = MAX_RANGES) -> list[tuple[int, int]] | None:
    """Return the parts to send for ``ranges`` of a ``length``-byte body; None for all of it.

    Overlapping or adjacent ranges are merged (in offset order); ranges that do not touch keep
    the order the client asked for. Ranges adding up to more than the body, or more than
    ``limit`` ranges once merged, give None: a plain 200 costs no more than the body itself.
    """
    if sum(stop - start for start, stop in ranges) > length:
        return None
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    if len(merged) > limit:
        return None
    return ranges if len(merged) == len(ranges) else merged


def _serve_fileobj(fileobj: IO[bytes], content_type: str | None, length: int | None,
                   etag: str | None, modified: float | None, offset: int) -> Any:
    request = serving.request
    response = serving.response
    headers = response.headers
    if content_type is not None:
        headers["Content-Type"] = content_type
    if length is not None and request.protocol >= (1, 1):
        headers["Accept-Ranges"] = "bytes"
        ranges = httputil.get_ranges(request.headers.get("Range"), length)
        if ranges is not None and not range_applies(request.headers, etag, modified):
            ranges = None
        if ranges:
            ranges = bounded_ranges(ranges, length)
        if ranges == []:
            headers["Content-Range"] = f"bytes */{length}"
            fileobj.close()
            raise HTTPError(416, "Requested Range Not Satisfiable")
        if ranges:
            response.status = "206 Partial Content"
            if len(ranges) == 1:
                start, stop = ranges[0]
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{length}"
                headers["Content-Length"] = str(stop - start)
                response.body = _slice(fileobj, offset + start, stop - start, True)
                return response.body
            return _multipart(fileobj, ranges, length, headers.get("Content-Type"), offset)
    if length is not None:
        headers["Content-Length"] = str(length)
    response.body = file_generator(fileobj)
    return response.body


def _multipart(fileobj: IO[bytes], ranges: list[tuple[int, int]], length: int,
               content_type: str | None, offset: int) -> Any:
    response = serving.response
    boundary = uuid.uuid4().hex
    response.headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    response.headers.pop("Content-Range", None)
    heads = []
    for start, stop in ranges:
        head = f"--{boundary}\r\n"
        if content_type:
            head += f"Content-type: {content_type}\r\n"
        head += f"Content-range: bytes {start}-{stop - 1}/{length}\r\n\r\n"
        heads.append(head.encode("ascii"))
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    # Every part, the first too, opens with CRLF--boundary (RFC 2046's delimiter), as the
    # reference writes it.
    total = sum(len(h) for h in heads) + sum(stop - start for start, stop in ranges) + \
        2 * len(ranges) + len(tail)
    response.headers["Content-Length"] = str(total)

    def parts() -> Iterator[bytes]:
        try:
            for (start, stop), head in zip(ranges, heads, strict=True):
                yield b"\r\n"
                yield head
                yield from _slice(fileobj, offset + start, stop - start, False)
            yield tail
        finally:
            fileobj.close()

    response.body = parts()
    return response.body


def serve_download(path: str, name: str | None = None) -> Any:
    """Serve ``path`` as an application/x-download attachment."""
    return serve_file(path, "application/x-download", "attachment", name)


# -- the tools --------------------------------------------------------------------------------


def _inside(path: str, base: str) -> bool:
    try:
        return os.path.commonpath([path, base]) == base
    except ValueError:
        return False


def _serve_found(filename: str, content_types: dict[str, str] | None, debug: bool) -> bool:
    """Serve ``filename`` with the content type its extension maps to; False if it is not there."""
    content_type = None
    if content_types:
        ext = os.path.splitext(filename)[1]
        content_type = content_types.get(ext[1:]) or content_types.get(ext)
    try:
        serve_file(filename, content_type=content_type, debug=debug)
        return True
    except NotFound:
        return False


def _attempt(filename: str, content_types: dict[str, str] | None, base: str,
             follow_symlinks: bool, debug: bool = False) -> bool:
    """Serve ``filename`` if it is a file; False if there is none to serve."""
    if not follow_symlinks:
        try:
            real = os.path.realpath(filename)
        except ValueError:
            return False  # a NUL byte
        if not _inside(real, os.path.realpath(base)):
            if os.path.lexists(filename):
                raise HTTPError(403, "The path leads out of the static directory.")
            return False
    return _serve_found(filename, content_types, debug)


def _absolute(path: str, root: str | None, key: str) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return os.path.normpath(path)
    if not root or not os.path.isabs(root):
        raise ConfigError(f"expected an absolute path, or a relative one with an absolute "
                          f"tools.{key.split('.')[0]}.root (got root {root!r})",
                          key=f"tools.{key}", value=path)
    return os.path.normpath(os.path.join(root, path))


_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


def staticdir(section: str, dir: str, root: str = "", match: str = "",  # noqa: A002
              content_types: dict[str, str] | None = None, index: str = "",
              follow_symlinks: bool = False, debug: bool = False) -> bool:
    """Answer from the files under ``dir`` (joined to ``root``); True if a file answered.

    ``match``: a regular expression ``request.path_info`` must contain; ``content_types``:
    {extension: type}; ``index``: the file served for a directory.
    """
    request = serving.request
    if request.method not in ("GET", "HEAD"):
        return False
    if match and not re.search(match, request.path_info):
        return False
    base = _absolute(dir, root, "staticdir.dir")
    if section == "global":
        section = "/"
    section = section.rstrip("/")
    path_info = request.path_info
    if path_info != section and not path_info.startswith(section + "/"):
        return False
    branch = _ENCODED_SLASH.sub("/", path_info[len(section) + 1:]).lstrip("/")
    if "\x00" in branch:
        raise NotFound()
    filename = os.path.normpath(os.path.join(base, branch))
    if not _inside(filename, base):
        raise HTTPError(403, "The path leads out of the static directory.")
    handled = _attempt(filename, content_types, base, follow_symlinks, debug)
    if not handled and index:
        handled = _attempt(os.path.join(filename, index), content_types, base,
                           follow_symlinks, debug)
        if handled:
            request.is_index = True  # so trailing_slash redirects "/dir" to "/dir/"
    return handled


def staticfile(filename: str, root: str | None = None, match: str = "",
               content_types: dict[str, str] | None = None, debug: bool = False) -> bool:
    """Answer with the file ``filename`` (joined to ``root``); True if it answered."""
    request = serving.request
    if request.method not in ("GET", "HEAD"):
        return False
    if match and not re.search(match, request.path_info):
        return False
    filename = _absolute(filename, root, "staticfile.filename")
    return _serve_found(filename, content_types, debug)
