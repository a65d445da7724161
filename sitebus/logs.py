"""Error and access logs: the reference's line formats on the standard ``logging`` module.

A LogManager owns two loggers: the error log (``sitebus``, or ``sitebus.<appid>`` for an app),
where bus messages arrive with the context ``ENGINE``, and the access log (``sitebus.access``
or ``sitebus.access.<appid>``), one line per request. ``screen`` sends the error log to stderr
and the access log to stdout; ``error_file`` and ``access_file`` append to files, reopened by
``reopen_files`` (subscribed to ``graceful``), so logrotate's postrotate can run
``sitebus reload``. Set all three off and configure the loggers with ``logging.config`` to
route records anywhere else.

Error lines read ``[27/Nov/2026:10:00:00] ENGINE Bus STARTED``, as the reference prints them.
Access lines are the Combined Log Format, ``{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}"``; unlike
the reference, ``{t}`` carries the UTC offset (``[27/Nov/2026:10:00:00 +0000]``) as the format
defines it, so log analysers read the time right. The month is English whatever the locale.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from sitebus.errors import CannotCreateError

__all__ = ["LogManager", "ErrorLogFormatter", "log_time", "log_to_screen"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ACCESS_LOG_FORMAT = '{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}"'


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


class ErrorLogFormatter(logging.Formatter):
    """Format a record as ``[time] CONTEXT message``, with its traceback if it has one."""

    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "context", "")
        parts = [log_time(record.created)]
        if context:
            parts.append(context)
        parts.append(record.getMessage())
        line = " ".join(parts)
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def log_to_screen(
    logger: str = "sitebus", level: int = logging.INFO, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the records of ``logger`` to the screen (stderr) in the reference's format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ErrorLogFormatter())
    handler.setLevel(level)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler


def _escape(value: str) -> str:
    """Escape what must not reach a log line raw: quotes, backslashes, control characters."""
    out = []
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or 0x7F <= code <= 0xFF and not char.isprintable():
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def access_fields(
    environ: Mapping[str, Any], status: str, size: int | None, now: float | None = None
) -> dict[str, str]:
    """Return the access-log fields of one request, escaped, keyed by their format letters."""
    query = environ.get("QUERY_STRING", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    uri = environ.get("REQUEST_URI") or (f"{path}?{query}" if query else path)
    method = environ.get("REQUEST_METHOD", "-")
    request_line = f"{method} {uri} {environ.get('SERVER_PROTOCOL', '-')}"
    fields = {
        "h": environ.get("REMOTE_ADDR") or "-",
        "l": "-",
        "u": environ.get("REMOTE_USER") or "-",
        "t": log_time(now, zone=True),
        "r": request_line,
        "s": status.split(" ", 1)[0],
        "b": "-" if not size else str(size),
        "f": environ.get("HTTP_REFERER", ""),
        "a": environ.get("HTTP_USER_AGENT", ""),
        "o": environ.get("HTTP_HOST", "-"),
        "z": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    return {key: _escape(value) for key, value in fields.items()}


class _ScreenHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` (or ``sys.stdout``) is when a record comes,
    so replacing the stream (a test's capture, a daemon's redirect) never leaves it writing to
    a closed one."""

    def __init__(self, name: str) -> None:
        self._stream_name = name
        super().__init__()

    @property
    def stream(self) -> Any:
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys stream


class LogManager:
    """The error and access logs of the site (``appid`` None) or of one application."""

    access_log_format = ACCESS_LOG_FORMAT
    settings = ("screen", "error_file", "access_file", "access_log_format")
    """The names the ``log.*`` config keys may set."""

    def __init__(self, appid: str | None = None, logger_root: str = "sitebus") -> None:
        self.appid = appid
        self.logger_root = logger_root
        suffix = f".{appid}" if appid else ""
        self.error_log = logging.getLogger(f"{logger_root}{suffix}")
        self.access_log = logging.getLogger(f"{logger_root}.access{suffix}")
        if appid is None:
            self.error_log.setLevel(logging.INFO)
            self.access_log.setLevel(logging.INFO)
            # Access lines must not land in the error log's handlers.
            self.access_log.propagate = False
        self._screen = False
        self._error_file = ""
        self._access_file = ""

    # -- writing -----------------------------------------------------------------------------

    def error(self, msg: str = "", context: str = "", severity: int = logging.INFO,
              traceback: bool = False) -> None:
        """Write ``msg`` to the error log, with the current exception if ``traceback``."""
        exc_info: Any = sys.exc_info() if traceback and sys.exc_info()[0] else None
        self.error_log.log(severity, msg, exc_info=exc_info, extra={"context": context})

    __call__ = error

    def access(self, environ: Mapping[str, Any], status: str, size: int | None) -> None:
        """Write one access line for a request answered with ``status`` and ``size`` bytes."""
        if not self.access_log.isEnabledFor(logging.INFO):
            return
        fields = access_fields(environ, status, size)
        try:
            line = self.access_log_format.format(**fields)
        except (KeyError, IndexError, ValueError):
            line = ACCESS_LOG_FORMAT.format(**fields)
            self.error(f"Bad access_log_format {self.access_log_format!r}; using the default",
                       "HTTP", logging.WARNING)
        self.access_log.log(logging.INFO, line)

    def wants_access(self) -> bool:
        """Return True when an access line would be written anywhere."""
        log: logging.Logger | None = self.access_log
        while log is not None:
            if any(type(h) is not logging.NullHandler for h in log.handlers):
                return log.isEnabledFor(logging.INFO)
            log = log.parent if log.propagate else None
        return False

    @staticmethod
    def time() -> str:
        """Return now in the access log's format."""
        return log_time(zone=True)

    # -- destinations ------------------------------------------------------------------------

    def _handlers(self, log: logging.Logger, kind: str) -> list[logging.Handler]:
        return [h for h in log.handlers if getattr(h, "_sitebus_kind", None) == kind]

    def _set_handler(self, log: logging.Logger, kind: str, handler: logging.Handler | None) -> None:
        for old in self._handlers(log, kind):
            log.removeHandler(old)
            old.close()
        if handler is not None:
            handler._sitebus_kind = kind  # type: ignore[attr-defined]
            log.addHandler(handler)

    @property
    def screen(self) -> bool:
        """Write the error log to stderr and the access log to stdout."""
        return self._screen

    @screen.setter
    def screen(self, on: bool) -> None:
        self._screen = bool(on)
        # Off, a NullHandler stands in: with no handler at all, Python's last-resort handler
        # would still print warnings and errors to stderr.
        error_handler: logging.Handler = logging.NullHandler()
        access_handler: logging.Handler = logging.NullHandler()
        if on:
            error_handler = _ScreenHandler("stderr")
            error_handler.setFormatter(ErrorLogFormatter())
            access_handler = _ScreenHandler("stdout")
            access_handler.setFormatter(logging.Formatter("%(message)s"))
        self._set_handler(self.error_log, "screen", error_handler)
        self._set_handler(self.access_log, "screen", access_handler)

    def _open_file(self, setting: str, filename: str, formatter: logging.Formatter
                   ) -> logging.Handler | None:
        if not filename:
            return None
        try:
            handler = logging.FileHandler(filename, encoding="utf-8")
        except OSError as error:
            raise CannotCreateError(
                f"log.{setting}: cannot open {filename!r} for appending: {error.strerror}"
            ) from None
        handler.setFormatter(formatter)
        return handler

    @property
    def error_file(self) -> str:
        """The file the error log is appended to ('' for none)."""
        return self._error_file

    @error_file.setter
    def error_file(self, filename: str) -> None:
        handler = self._open_file("error_file", filename, ErrorLogFormatter())
        self._set_handler(self.error_log, "file", handler)
        self._error_file = filename or ""

    @property
    def access_file(self) -> str:
        """The file the access log is appended to ('' for none)."""
        return self._access_file

    @access_file.setter
    def access_file(self, filename: str) -> None:
        handler = self._open_file("access_file", filename, logging.Formatter("%(message)s"))
        self._set_handler(self.access_log, "file", handler)
        self._access_file = filename or ""

    def reopen_files(self) -> None:
        """Close and reopen the log files, e.g. after logrotate moved them away."""
        for log in (self.error_log, self.access_log):
            for handler in self._handlers(log, "file"):
                assert isinstance(handler, logging.FileHandler)
                handler.acquire()
                try:
                    if handler.stream is not None:
                        handler.stream.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()
