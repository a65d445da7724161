"""Logging for the site: the reference's line format, and the screen handler.

Bus messages go to the ``sitebus`` logger with the context ``ENGINE``; a line on the screen
reads ``[27/Nov/2026:10:00:00] ENGINE Bus STARTED``, as the reference prints it. The month is
always English, whatever the locale, so log parsers see one format everywhere.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def log_time(timestamp: float | None = None) -> str:
    """Return ``[dd/Mon/yyyy:HH:MM:SS]`` in local time, as the reference's logs show it."""
    t = time.localtime(timestamp)
    day = f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}"
    return f"[{day}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}]"


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
