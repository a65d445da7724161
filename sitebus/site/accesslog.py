"""Access lines, made cheap: a template compiled once, and a file written from a buffer.

An access line used to cost more than the request it described (21 us against 0.8 us for
routing a hello world, profiled with cProfile): every field was escaped one character at a
time in Python, every line built a ``logging.LogRecord`` (with ``findCaller`` walking the
stack), and ``FileHandler`` flushed each line with a ``write(2)``. Here:

- ``compile_format`` turns ``log.access_log_format`` into one function, generated once per
  format, that computes only the fields the format names. Values are escaped by one regular
  expression search (nearly always finding nothing) instead of a Python loop; the time is
  formatted once per second.
- ``AccessFileHandler`` is the ``log.access_file`` handler: it gathers lines and writes them
  in whole-line chunks (so workers appending to one file never split each other's lines).
  ``LogManager.access`` hands it lines directly, without a LogRecord, while it is the access
  logger's only handler (anything else, a handler from ``logging.config`` or journald, gets
  records as before).
- ``Flusher``, one thread per process, flushes every buffered handler within a second of its
  first unflushed line (``log.access_flush_interval``; 0 writes each line as it comes, for
  whoever reads the file while the site runs), and blocks while nothing is written. Closing
  a handler flushes it, ``flush_access_logs`` runs on the bus's ``exit`` and at interpreter
  exit (and ``logging.shutdown``, on ``bus.flush_and_exit``, flushes them too): a clean stop
  or a restart loses no line, a crash at most the last second.

Fields (the letters of the reference, Apache's where it has one): ``h`` client address, ``l``
``-``, ``u`` remote user, ``t`` time (``[05/Dec/2026:10:00:00 +0000]``), ``r`` request line,
``s`` status, ``b`` bytes of the body, ``f`` Referer, ``a`` User-Agent, ``o`` Host, ``z`` UTC
time in ISO 8601, ``D`` duration in microseconds (Apache's ``%D``), ``L`` the request id,
``i`` a UUID4 made for the line (the reference's unique id). An
empty field is ``-``. ``log.access_log_format = "json"`` writes JSON lines instead (keys in
``JSON_KEYS``), escaped by ``json`` with non-ASCII text kept as it is.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from string import Formatter
from typing import Any

from sitebus.site.logfailures import ReportingFileHandler
from sitebus.site.logfailures import _say as say

__all__ = ["ACCESS_LOG_FORMAT", "AccessFileHandler", "JSON_FORMAT", "compile_format",
           "escape", "json_line", "log_time"]

ACCESS_LOG_FORMAT = '{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}" {D} {L}'
"""The Combined Log Format, then the duration in microseconds and the request id."""

JSON_FORMAT = "json"
"""The ``log.access_log_format`` (and ``log.error_log_format``) value for JSON lines."""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

FLUSH_INTERVAL = 1.0
"""Seconds an access line may wait in a buffer: what a crash may lose."""

CHUNK_SIZE = 64 * 1024
"""Characters of gathered lines that are written at once without waiting for the flusher."""


def log_time(timestamp: float | None = None, zone: bool = False) -> str:
    """Return ``[dd/Mon/yyyy:HH:MM:SS]`` in local time (with ``+hhmm`` when ``zone``)."""
    t = time.localtime(timestamp)
    day = f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}"
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if not zone:
        return f"[{day}:{clock}]"
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    return f"[{day}:{clock} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}]"


# -- escaping --------------------------------------------------------------------------------

_UNSAFE = "".join(c for c in map(chr, range(256))
                  if c in '"\\' or ord(c) < 0x20 or (ord(c) >= 0x7F and not c.isprintable()))
_needs_escape = re.compile("[" + re.escape(_UNSAFE) + "]").search


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\x{ord(char):02x}"


_escape_all = re.compile("[" + re.escape(_UNSAFE) + "]").sub


def escape(value: str) -> str:
    """Escape what must not reach a log line raw: quotes, backslashes, control characters."""
    if _needs_escape(value) is None:
        return value
    return _escape_all(_escape_char, value)


# -- the time, once per second ---------------------------------------------------------------

class _Clock:
    """The current second in the access log's two time formats, recomputed once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.next = 0.0
        """When the second after ``second`` begins: a line refreshes the clock from then."""
        self.clf = ""
        self.iso = ""

    def refresh(self, now: float) -> None:
        second = int(now)
        if second != self.second:
            self.clf = log_time(second, zone=True)
            self.iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self.second = second
            self.next = second + 1.0


_clock = _Clock()


# -- the request line and friends ------------------------------------------------------------

def request_uri(environ: Mapping[str, Any]) -> str:
    """Return the request's target as the client sent it (or rebuilt from the WSGI paths)."""
    uri = environ.get("REQUEST_URI")
    if uri:
        return uri
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def request_line(environ: Mapping[str, Any]) -> str:
    return (f"{environ.get('REQUEST_METHOD', '-')} {request_uri(environ) or '-'} "
            f"{environ.get('SERVER_PROTOCOL', '-')}")


_TEXT_FIELDS: dict[str, str] = {
    "h": 'environ.get("REMOTE_ADDR") or "-"',
    "u": 'environ.get("REMOTE_USER") or "-"',
    "r": ('f"{environ.get(\'REQUEST_METHOD\', \'-\')} '
          '{environ.get(\'REQUEST_URI\') or request_uri(environ) or \'-\'} '
          '{environ.get(\'SERVER_PROTOCOL\', \'-\')}"'),  # request_line, inlined
    "f": 'environ.get("HTTP_REFERER") or "-"',
    "a": 'environ.get("HTTP_USER_AGENT") or "-"',
    "o": 'environ.get("HTTP_HOST") or "-"',
    "L": 'request_id or "-"',
}
"""Fields that come from the request, as Python expressions: escaped before they are written."""

_PLAIN_FIELDS: dict[str, str] = {
    "l": '"-"',
    "t": "clock.clf",
    "s": 'status.split(" ", 1)[0]',
    "b": 'str(size) if size else "-"',
    "z": "clock.iso",
    "D": '("-" if duration is None else str(int(duration * 1e6)))',  # _micros, inlined
    "i": "str(uuid4())",  # the reference's unique id: a UUID4, made only where named
}
"""Fields the site makes itself, which never need escaping."""

_FIELDS = {**_TEXT_FIELDS, **_PLAIN_FIELDS}

LineFormatter = Callable[[Mapping[str, Any], str, "int | None", "float | None", "str | None"],
                         str]


def compile_format(template: str) -> LineFormatter:
    """Return ``line(environ, status, size, duration, request_id)`` for a format.

    ``duration`` is in seconds; ``JSON_FORMAT`` gives JSON lines. Raises ValueError naming a
    field the format names that does not exist, or a format that cannot be parsed. The
    request's fields are looked up once each and searched for characters to escape in one
    go (nearly always finding none).
    """
    if template == JSON_FORMAT:
        return json_line
    parts: list[str] = []
    texts: list[str] = []
    for literal, name, spec, conversion in Formatter().parse(template):
        if literal:
            parts.append(repr(literal))
        if name is None:
            continue
        if name not in _FIELDS:
            raise ValueError(f"unknown field {{{name}}}; expected one of "
                             + ", ".join(f"{{{k}}}" for k in _FIELDS))
        if name in _TEXT_FIELDS:
            if name not in texts:
                texts.append(name)
            expression = f"v_{name}"
        else:
            expression = _PLAIN_FIELDS[name]
        if conversion:
            converter = {"r": "repr", "s": "str", "a": "ascii"}.get(conversion)
            if converter is None:
                raise ValueError(f"unknown conversion !{conversion}")
            expression = f"{converter}({expression})"
        if spec:
            expression = f"format({expression}, {spec!r})"
        parts.append(f"({expression})")
    lines = ["def line(environ, status, size, duration, request_id):",
             "    now = time()",
             "    if not clock.second <= now < clock.next:  # a new second (or a step back)",
             "        clock.refresh(now)"]
    lines += [f"    v_{name} = {_TEXT_FIELDS[name]}" for name in texts]
    if texts:
        lines.append(f"    if needs_escape({' + '.join(f'v_{name}' for name in texts)}):")
        lines += [f"        v_{name} = e(v_{name})" for name in texts]
    lines.append(f"    return ''.join(({', '.join(parts) or repr('')},))")
    namespace: dict[str, Any] = {"e": escape, "needs_escape": _needs_escape, "clock": _clock,
                                 "time": time.time, "request_uri": request_uri,
                                 "uuid4": uuid.uuid4}
    exec(compile("\n".join(lines) + "\n", f"<access format {template!r}>", "exec"),  # noqa: S102
         namespace)
    return namespace["line"]


def _text(value: str) -> str:
    """Return a WSGI string (bytes seen as latin-1) as the UTF-8 text it carries."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


JSON_KEYS = ("time", "remote_addr", "remote_user", "request", "method", "uri", "protocol",
             "status", "bytes", "referer", "user_agent", "host", "duration_us", "request_id")


def json_line(environ: Mapping[str, Any], status: str, size: int | None,
              duration: float | None, request_id: str | None) -> str:
    """Return one access line as a JSON object (see JSON_KEYS); absent values are null."""
    _clock.refresh(time.time())
    code = status.split(" ", 1)[0]
    record = {
        "time": _clock.iso,
        "remote_addr": environ.get("REMOTE_ADDR") or None,
        "remote_user": environ.get("REMOTE_USER") or None,
        "request": _text(request_line(environ)),
        "method": environ.get("REQUEST_METHOD"),
        "uri": _text(request_uri(environ)),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "status": int(code) if code.isdigit() else code,
        "bytes": size or 0,
        "referer": _text(environ["HTTP_REFERER"]) if environ.get("HTTP_REFERER") else None,
        "user_agent": (_text(environ["HTTP_USER_AGENT"]) if environ.get("HTTP_USER_AGENT")
                       else None),
        "host": environ.get("HTTP_HOST") or None,
        "duration_us": None if duration is None else int(duration * 1e6),
        "request_id": request_id,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


# -- the error log as JSON -------------------------------------------------------------------

class JSONErrorFormatter(logging.Formatter):
    """Format an error-log record as one JSON object: time, level, context, message."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "context": getattr(record, "context", "") or None,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


# -- writing ---------------------------------------------------------------------------------

class AccessFileHandler(ReportingFileHandler):
    """A file handler that gathers lines and writes them in whole-line chunks, at the latest
    FLUSH_INTERVAL after the first: one ``write(2)`` of many lines instead of one per line.

    Each chunk is written with one ``os.write`` on a file opened for appending, so the
    workers of a site, each with its own handler on the same file, never cut into each
    other's lines (a buffered file object would split a line at its buffer's edge).
    """

    def __init__(self, filename: str) -> None:
        super().__init__(filename, encoding="utf-8")
        self.pending = False
        self.interval = FLUSH_INTERVAL
        """Seconds a line may wait for others (``log.access_flush_interval``); 0: none."""
        self._lines: list[str] = []
        self._size = 0
        _all_handlers.add(self)

    def write_line(self, line: str) -> None:
        """Add one line (no LogRecord); write the chunk out once it is large."""
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            self._size += len(line)
            if self._size >= CHUNK_SIZE or not self.interval:
                self._write_out()
                if not self.interval:
                    return
        # After adding: a flush that cleared ``pending`` before it either took this line
        # or leaves ``pending`` False here, so the flusher is woken again.
        if not self.pending:
            self.pending = True
            flusher().wake(self)

    def _write_out(self) -> None:
        """Write the gathered lines (the lock is held)."""
        if not self._lines:
            return
        count = len(self._lines)
        data = ("\n".join(self._lines) + "\n").encode("utf-8", "backslashreplace")
        self._lines = []
        self._size = 0
        try:
            stream = self.stream
            if stream is None:
                stream = self.stream = self._open()
            stream.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(stream.fileno(), view):]
        except (OSError, ValueError):
            # Said once per cause, counted, as for every log file (sitebus.site.logfailures).
            self._lost += count - 1
            self.handleError(logging.makeLogRecord({}))
            return
        if self._failing is not None:
            say(f"sitebus: writing {self.destination()} again; {self._lost} records were lost")
            self._failing, self._lost = None, 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write every gathered line now."""
        self.pending = False
        with self.lock:  # type: ignore[union-attr]
            self._write_out()
        super().flush()


_all_handlers: weakref.WeakSet[AccessFileHandler] = weakref.WeakSet()


def flush_access_logs() -> None:
    """Write every gathered access line now (at exit, whatever became of logging's list).

    ``logging.shutdown`` flushes the handlers in logging's own list, which
    ``logging.config.dictConfig`` empties (Django calls it when it sets itself up), so the
    site does not count on it: this runs on the bus's ``exit`` and at interpreter exit.
    """
    for handler in list(_all_handlers):
        if handler._lines:
            try:
                handler.flush()
            except (OSError, ValueError):
                pass


atexit.register(flush_access_logs)


class Flusher:
    """One thread that flushes buffered handlers within their interval of their first line."""

    def __init__(self) -> None:
        self._handlers: weakref.WeakSet[AccessFileHandler] = weakref.WeakSet()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self, handler: AccessFileHandler) -> None:
        with self._lock:
            self._handlers.add(handler)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sitebus log flusher",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                handlers = list(self._handlers)
            waits = [handler.interval for handler in handlers if handler.pending]
            time.sleep(min(waits, default=FLUSH_INTERVAL))  # let lines gather, write at once
            self._wake.clear()
            with self._lock:
                handlers = list(self._handlers)
            for handler in handlers:
                if handler.pending:
                    try:
                        handler.flush()
                    except (OSError, ValueError):
                        pass  # a closed or full file: the next write reports it


_flusher: Flusher | None = None


def flusher() -> Flusher:
    """Return this process's flusher (a forked child gets its own on first use)."""
    global _flusher
    if _flusher is None:
        _flusher = Flusher()
    return _flusher


def _flush_before_fork() -> None:
    """Write what is buffered, so a forked child does not inherit (and write again) lines."""
    if _flusher is not None:
        for handler in list(_flusher._handlers):
            if handler.pending:
                try:
                    handler.flush()
                except (OSError, ValueError):
                    pass


def _forget_flusher_after_fork() -> None:
    global _flusher
    _flusher = None  # its thread did not survive the fork


os.register_at_fork(before=_flush_before_fork, after_in_child=_forget_flusher_after_fork)
