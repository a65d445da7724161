"""journald: log records with their priority and fields, through systemd-python's handler.

Under systemd, stderr usually goes to the journal already, but as plain lines: every one at the
same priority, without fields. ``log_to_journal`` attaches systemd-python's JournalHandler to
the ``sitebus`` logger instead when stderr *is* the journal (JOURNAL_STREAM names stderr's
device and inode; ``journal_stream_matches`` decides) or when asked, with SYSLOG_IDENTIFIER and
two fields: SITEBUS_CONTEXT (ENGINE, HTTP...) and SITEBUS_STATE (the bus state). A forced
request without systemd-python is an error naming the package; an automatic one is skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from sitebus.bus import Bus
from sitebus.errors import UnavailableError

__all__ = ["journal_stream_matches", "log_to_journal"]

def journal_stream_matches(environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> bool:
    """Return True when JOURNAL_STREAM (``device:inode``) names stderr: stderr is the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if stderr_stat is None or not (device.isdigit() and inode.isdigit()):
        return False
    return (int(device), int(inode)) == (stderr_stat.st_dev, stderr_stat.st_ino)


def _stderr_stat() -> os.stat_result | None:
    try:
        return os.fstat(2)
    except OSError:
        return None


class _JournalFields(logging.Filter):
    """Add the bus state and the log context (ENGINE, HTTP...) as journal fields."""

    def __init__(self, bus: Bus | None) -> None:
        super().__init__()
        self.bus = bus

    def filter(self, record: logging.LogRecord) -> bool:
        record.SITEBUS_CONTEXT = getattr(record, "context", "") or record.name
        if self.bus is not None:
            record.SITEBUS_STATE = self.bus.state.name
        return True


def log_to_journal(
    bus: Bus | None = None,
    logger: str = "sitebus",
    identifier: str = "sitebus",
    level: int = logging.INFO,
    force: bool = False,
) -> logging.Handler | None:
    """Send the records of ``logger`` to journald when stderr is the journal, or when forced.

    Returns the handler, or None when the journal is not wanted. Without systemd-python a
    forced request is an UnavailableError naming the package; an automatic one is skipped
    (stderr already reaches the journal, only without priorities and fields).
    """
    if not force and not journal_stream_matches(os.environ, _stderr_stat()):
        return None
    try:
        from systemd.journal import (  # type: ignore[import-not-found,unused-ignore]
            JournalHandler,
        )
    except ImportError:
        if force:
            raise UnavailableError(
                "logging to journald needs systemd-python, which is not installed: "
                "pip install sitebus[systemd] (it builds with libsystemd-dev and pkg-config)"
            ) from None
        return None
    handler = JournalHandler(level=level, SYSLOG_IDENTIFIER=identifier)
    handler.addFilter(_JournalFields(bus))
    target = logging.getLogger(logger)
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    return handler
