"""Log records are never lost without a word: failed writes and failed reopens are reported.

Writing. The standard ``logging`` handlers print a "--- Logging error ---" block with a
traceback for every record they fail to write: on a full disk that is some 28 lines to
stderr per request, thousands a second, and nothing says when writing works again. The
handlers of the site's log files and screen (``ReportingFileHandler``,
``ReportingStreamHandler``) report one line per cause instead (the error's type and errno,
on stderr), count the records lost meanwhile, and say so once a record is written again.

Reopening. logrotate moves a log file away and asks for a reload; the site then opens the
file's name again. When that fails (a privilege drop left the site unable to create files in
a root-owned log directory; a full disk), ``reopen_file_handler`` keeps the old stream, so
records still go to the rotated file, and returns what went wrong, for the log and the
status file: ``sitebus reload`` then exits non-zero (73) with the reason.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ReportingFileHandler", "ReportingStreamHandler", "reopen_file_handler"]


def _say(line: str) -> None:
    """Write one line to stderr, if stderr itself can be written."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except (OSError, ValueError):
        pass  # stderr is the broken stream (or closed): nowhere left to say it


class _ReportsFailuresOnce(logging.Handler):
    """A handler that reports a failed write once per cause, and when writing works again."""

    _failing: tuple[str, int | None] | None = None
    _lost = 0
    _failed_now = False

    def destination(self) -> str:
        return "the log"

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if error is None or not logging.raiseExceptions:
            return
        self._failed_now = True
        self._lost += 1
        cause = (type(error).__name__, getattr(error, "errno", None))
        if cause == self._failing:
            return
        self._failing = cause
        _say(f"sitebus: cannot write {self.destination()}: {type(error).__name__}: {error}; "
             "records are lost until it works again (said once per cause)")

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)
        if self._failing is not None and not self._failed_now:
            _say(f"sitebus: writing {self.destination()} again; {self._lost} records were lost")
            self._failing, self._lost = None, 0


class ReportingStreamHandler(_ReportsFailuresOnce, logging.StreamHandler):
    """A StreamHandler (the screen) that reports write failures once per cause."""

    def destination(self) -> str:
        return f"the log to {getattr(self.stream, 'name', 'a stream')}"


class ReportingFileHandler(_ReportsFailuresOnce, logging.FileHandler):
    """A FileHandler (``log.error_file``, ``log.access_file``) that reports failures once."""

    def destination(self) -> str:
        return f"the log file {self.baseFilename!r}"

    def close(self) -> None:
        """Close the file; what cannot be flushed (a full disk) was already reported as lost."""
        try:
            super().close()
        except OSError:
            pass


def reopen_file_handler(handler: logging.FileHandler) -> str | None:
    """Point ``handler`` at a new open file of its name; on failure keep the old one, say why."""
    handler.acquire()
    try:
        try:
            stream = handler._open()
        except OSError as error:
            return (f"cannot reopen {handler.baseFilename!r}: {error.strerror or error}; "
                    "still writing to the file opened before")
        old, handler.stream = handler.stream, stream
        if old is not None:
            try:
                old.close()
            except OSError:
                pass  # what it could not flush was already reported as lost
    finally:
        handler.release()
    return None
