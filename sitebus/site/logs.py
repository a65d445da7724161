"""Error and access logs: the reference's line formats on the standard ``logging`` module.

A LogManager owns two loggers: the error log (``sitebus``, or ``sitebus.<appid>`` for an app),
where bus messages arrive with the context ``ENGINE``, and the access log (``sitebus.access``
or ``sitebus.access.<appid>``), one line per request. ``screen`` sends the error log to stderr
and the access log to stdout; ``error_file`` and ``access_file`` append to files, reopened by
``reopen_files`` (subscribed to ``graceful``, and called on SIGWINCH by the site, which
costs no reload: logrotate's postrotate sends that). Set all three off and configure the
loggers with ``logging.config`` to route records anywhere else. A record that cannot be
written, or a file that cannot be reopened, is reported rather than lost silently
(``sitebus.site.logfailures``).

Error lines read ``[27/Nov/2026:10:00:00] ENGINE Bus STARTED`` as the reference prints them
(``log.error_log_format = "json"``: one JSON object per record; ``log.level`` sets the level).
Access lines are the Combined Log Format with ``-`` for empty fields, then the duration in
microseconds and the request id: ``{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}" {D} {L}``; unlike
the reference, ``{t}`` carries the UTC offset (``[27/Nov/2026:10:00:00 +0000]``) as the format
defines it, so log analysers read the time right. The month is English whatever the locale.
``log.access_log_format = "json"`` writes JSON lines. How lines are formatted and written
cheaply (a compiled template, a buffer flushed every second) is ``sitebus.site.accesslog``'s.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import IO, Any

from sitebus.errors import CannotCreateError, ConfigError
from sitebus.site.accesslog import (
    ACCESS_LOG_FORMAT,
    FLUSH_INTERVAL,
    JSON_FORMAT,
    AccessFileHandler,
    JSONErrorFormatter,
    compile_format,
    log_time,
)
from sitebus.site.accesslog import escape as _escape
from sitebus.site.logfailures import (
    ReportingFileHandler,
    ReportingStreamHandler,
    reopen_file_handler,
)

__all__ = ["LogManager", "ErrorLogFormatter", "log_time", "log_to_screen"]

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
        "f": environ.get("HTTP_REFERER") or "-",
        "a": environ.get("HTTP_USER_AGENT") or "-",
        "o": environ.get("HTTP_HOST", "-"),
        "z": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    return {key: _escape(value) for key, value in fields.items()}


class _ScreenHandler(ReportingStreamHandler):
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

    settings = ("screen", "error_file", "access_file", "access_log_format", "level",
                "error_log_format", "request_id", "access_flush_interval")
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
        self._error_log_format = "text"
        self._access_log_format = ACCESS_LOG_FORMAT
        self._line_format = ACCESS_LOG_FORMAT
        self._line = compile_format(ACCESS_LOG_FORMAT)
        self._access_flush_interval = FLUSH_INTERVAL
        self._request_id: bool | None = None
        self.reopen_failures: list[str] = []
        """What the last ``reopen_files`` could not reopen."""

    # -- writing -----------------------------------------------------------------------------

    def error(self, msg: str = "", context: str = "", severity: int = logging.INFO,
              traceback: bool = False) -> None:
        """Write ``msg`` to the error log, with the current exception if ``traceback``."""
        exc_info: Any = sys.exc_info() if traceback and sys.exc_info()[0] else None
        self.error_log.log(severity, msg, exc_info=exc_info, extra={"context": context})

    __call__ = error

    def access(self, environ: Mapping[str, Any], status: str, size: int | None,
               duration: float | None = None, request_id: str | None = None) -> None:
        """Write one access line for a request answered with ``status`` and ``size`` bytes.

        ``duration`` (seconds) and ``request_id`` default to what the tree noted in the
        environ (``sitebus.request_start``, ``sitebus.request_id``).
        """
        log = self.access_log
        if not log.isEnabledFor(logging.INFO):
            return
        if duration is None and "sitebus.request_start" in environ:
            duration = perf_counter() - environ["sitebus.request_start"]
        if request_id is None:
            request_id = environ.get("sitebus.request_id")
        line = self.line_formatter()(environ, status, size, duration, request_id)
        handlers = log.handlers
        if (len(handlers) == 1 and type(handlers[0]) is AccessFileHandler
                and not log.propagate and not log.filters):
            handlers[0].write_line(line)  # the common case, without a LogRecord
        else:
            log.log(logging.INFO, line)

    def line_formatter(self) -> Callable[..., str]:
        """The compiled ``access_log_format`` (recompiled when the class's attribute was
        replaced, as the reference's tests do to try a format)."""
        line_format = self.access_log_format
        if line_format is not self._line_format:
            self._line_format, self._line = line_format, compile_format(line_format)
        return self._line

    def wants_request_id(self, logging: bool) -> bool:
        """Return True when a request gets an id, ``logging`` saying if its access line is
        wanted (``wants_access``, which the caller asks once per request anyway)."""
        wanted = self._request_id
        return logging if wanted is None else wanted

    def wants_access(self) -> bool:
        """Return True when an access line would be written anywhere."""
        log: logging.Logger | None = self.access_log
        while log is not None:  # asked for every request: plain loops, no generator
            for handler in log.handlers:
                if type(handler) is not logging.NullHandler:
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
    def access_log_format(self) -> str:
        """The access line's fields (``{h} {t} "{r}" {s}``...), or 'json' for JSON lines."""
        return self._access_log_format

    @access_log_format.setter
    def access_log_format(self, value: str) -> None:
        try:
            line = compile_format(value)
        except (ValueError, TypeError, SyntaxError) as error:
            raise ConfigError(f"expected a format of fields such as {ACCESS_LOG_FORMAT!r}, or "
                              f"'json': {error}", key="log.access_log_format",
                              value=value) from None
        self._access_log_format = self._line_format = value
        self._line = line

    @property
    def request_id(self) -> bool | None:
        """Give every request an id (X-Request-ID), in its environ, response and access line:
        True always, False never, None (the default) while access lines are written: the id
        is there to join a request's access line to the app's own log lines, and a site that
        writes none does not pay for one per request."""
        return self._request_id

    @request_id.setter
    def request_id(self, value: bool | None) -> None:
        if type(value) not in (bool, type(None)):
            raise ConfigError("expected True (every request), False (none) or None (while "
                              "access lines are written)", key="log.request_id", value=value)
        self._request_id = value

    @property
    def access_flush_interval(self) -> float:
        """Seconds an access line may wait to be written with others (0: each as it comes)."""
        return self._access_flush_interval

    @access_flush_interval.setter
    def access_flush_interval(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError("expected a number of seconds, 0 or more (0 writes each line as "
                              "it comes)", key="log.access_flush_interval", value=value)
        self._access_flush_interval = float(value)
        for handler in self._handlers(self.access_log, "file"):
            if isinstance(handler, AccessFileHandler):
                handler.interval = float(value)

    @property
    def level(self) -> str:
        """The error log's level: 'DEBUG', 'INFO' (the default), 'WARNING', 'ERROR'..."""
        return logging.getLevelName(self.error_log.getEffectiveLevel())

    @level.setter
    def level(self, value: str | int) -> None:
        number = value if isinstance(value, int) and not isinstance(value, bool) else (
            logging.getLevelName(value.upper()) if isinstance(value, str) else None)
        if not isinstance(number, int):
            raise ConfigError("expected a level: 'DEBUG', 'INFO', 'WARNING', 'ERROR' or "
                              f"'CRITICAL' (or a number), got {value!r}", key="log.level",
                              value=value)
        self.error_log.setLevel(number)

    @property
    def error_log_format(self) -> str:
        """'text' (``[time] CONTEXT message``) or 'json' (one JSON object per record)."""
        return self._error_log_format

    @error_log_format.setter
    def error_log_format(self, value: str) -> None:
        if value not in ("text", JSON_FORMAT):
            raise ConfigError(f"expected 'text' or 'json', got {value!r}",
                              key="log.error_log_format", value=value)
        self._error_log_format = value
        for handler in self.error_log.handlers:
            if getattr(handler, "_sitebus_kind", None) in ("screen", "file"):
                handler.setFormatter(self._error_formatter())

    def _error_formatter(self) -> logging.Formatter:
        return JSONErrorFormatter() if self._error_log_format == JSON_FORMAT \
            else ErrorLogFormatter()

    @property
    def screen(self) -> bool:
        """Write the error log to stderr and the access log to stdout."""
        return self._screen

    @screen.setter
    def screen(self, on: bool) -> None:
        self._screen = bool(on)
        self._set_streams()

    def _set_streams(self) -> None:
        """Write the error log to stderr and the access log to stdout: with ``screen``, or
        where the file is '-' (``--error-log -``, ``--access-log -``); one copy each.

        Off, a NullHandler stands in for the error log: with no handler at all, Python's
        last-resort handler would still print its warnings and errors to stderr. The access
        log needs none (its lines are INFO), and a second handler there would cost every line
        the slow path of ``access()``."""
        error_handler: logging.Handler = logging.NullHandler()
        access_handler: logging.Handler | None = None  # INFO lines: the last resort skips them
        if self._screen or self._error_file == "-":
            error_handler = _ScreenHandler("stderr")
            error_handler.setFormatter(self._error_formatter())
        if self._screen or self._access_file == "-":
            access_handler = _ScreenHandler("stdout")
            access_handler.setFormatter(logging.Formatter("%(message)s"))
        self._set_handler(self.error_log, "screen", error_handler)
        self._set_handler(self.access_log, "screen", access_handler)

    def _open_file(self, setting: str, filename: str, formatter: logging.Formatter
                   ) -> logging.Handler | None:
        if not filename:
            return None
        try:
            handler = (AccessFileHandler(filename) if setting == "access_file"
                       else ReportingFileHandler(filename, encoding="utf-8"))
        except OSError as error:
            raise CannotCreateError(
                f"log.{setting}: cannot open {filename!r} for appending: {error.strerror}"
            ) from None
        handler.setFormatter(formatter)
        if isinstance(handler, AccessFileHandler):
            handler.interval = self._access_flush_interval
        return handler

    @property
    def error_file(self) -> str:
        """The file the error log is appended to ('' for none)."""
        return self._error_file

    @error_file.setter
    def error_file(self, filename: str) -> None:
        handler = None if filename == "-" else self._open_file("error_file", filename,
                                                               self._error_formatter())
        self._set_handler(self.error_log, "file", handler)
        self._error_file = filename or ""
        self._set_streams()

    @property
    def access_file(self) -> str:
        """The file the access log is appended to ('' for none)."""
        return self._access_file

    @access_file.setter
    def access_file(self, filename: str) -> None:
        handler = None if filename == "-" else self._open_file("access_file", filename,
                                                               logging.Formatter("%(message)s"))
        self._set_handler(self.access_log, "file", handler)
        self._access_file = filename or ""
        self._set_streams()

    def reopen_files(self) -> list[str]:
        """Close and reopen the log files, e.g. after logrotate moved them away.

        A file that cannot be reopened keeps its old stream; the failures are logged there and
        returned (``log.error_file: cannot reopen ...``), and kept in ``reopen_failures``.
        """
        failures = []
        for setting, log in (("error_file", self.error_log), ("access_file", self.access_log)):
            for handler in self._handlers(log, "file"):
                assert isinstance(handler, logging.FileHandler)
                failure = reopen_file_handler(handler)
                if failure is not None:
                    failures.append(f"log.{setting}: {failure}")
        for failure in failures:
            self.error(failure, "ENGINE", logging.ERROR)
        self.reopen_failures = failures
        return failures
