"""LogCase: assertions on the lines a test wrote to a log file (the reference's logtest).

A LogCase names a file (``logfile``); ``markLog()`` notes where the interesting part starts,
and ``assertLog(sliceargs, lines)`` / ``assertInLog`` / ``assertNotInLog`` look at the lines
written since then. ``sliceargs`` is a line index or a ``(start, stop)`` pair.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["LogCase"]


class LogCase:
    """Assertions on a log file, mixed into a TestCase."""

    logfile: str | None = None
    lastmarker: str | None = None
    markerPrefix = b"test suite marker: "

    def _handleLogError(self, msg: str, data: Any, marker: Any, pattern: Any) -> None:  # noqa: N802
        raise AssertionError(f"{msg}\n  marker: {marker!r}\n  pattern: {pattern!r}\n"
                             f"  lines: {data!r}")

    def emptyLog(self) -> None:  # noqa: N802
        """Truncate the log file."""
        assert self.logfile is not None
        with open(self.logfile, "wb"):
            pass

    def markLog(self, key: Any = None) -> None:  # noqa: N802
        """Write a marker line; later assertions read only what follows it."""
        assert self.logfile is not None
        if key is None:
            key = str(time.time()) + "-" + uuid.uuid4().hex[:8]
        self.lastmarker = str(key)
        with open(self.logfile, "ab") as handle:
            handle.write(self.markerPrefix + self.lastmarker.encode("utf-8") + b"\n")

    def _read_marked_region(self, marker: Any = None) -> list[bytes]:
        """The log's lines after the marker (all lines with marker None and no mark made)."""
        assert self.logfile is not None
        with open(self.logfile, "rb") as handle:
            lines = handle.readlines()
        if marker is None:
            if self.lastmarker is None:
                return lines
            marker = self.lastmarker
        wanted = self.markerPrefix + str(marker).encode("utf-8")
        for index in range(len(lines) - 1, -1, -1):
            if lines[index].startswith(wanted):
                return lines[index + 1:]
        return []

    @staticmethod
    def _as_bytes(value: Any) -> bytes:
        return value.encode("utf-8") if isinstance(value, str) else value

    def assertInLog(self, line: Any, marker: Any = None) -> None:  # noqa: N802
        """Fail if ``line`` is not in the marked region."""
        data = self._read_marked_region(marker)
        wanted = self._as_bytes(line)
        if not any(wanted in logline for logline in data):
            self._handleLogError(f"{line!r} not found in log", data, marker, line)

    def assertNotInLog(self, line: Any, marker: Any = None) -> None:  # noqa: N802
        """Fail if ``line`` is in the marked region."""
        data = self._read_marked_region(marker)
        wanted = self._as_bytes(line)
        for logline in data:
            if wanted in logline:
                self._handleLogError(f"{line!r} found in log", data, marker, line)

    def assertValidUUIDv4(self, marker: Any = None) -> None:  # noqa: N802
        """Fail unless the marked region's first line ends in a UUID version 4."""
        data = self._read_marked_region(marker)
        text = data[0].decode("utf-8").strip() if data else ""
        candidate = text.rsplit(" ", 1)[-1]
        try:
            ok = uuid.UUID(candidate).version == 4
        except ValueError:
            ok = False
        if not ok:
            self._handleLogError("no UUID4 at the end of the line", data, marker, candidate)

    def assertLog(self, sliceargs: Any, lines: Any, marker: Any = None) -> None:  # noqa: N802
        """Fail unless the marked region's line ``sliceargs`` (an int) contains ``lines``
        (one line), or its lines ``sliceargs[0]:sliceargs[1]`` contain ``lines`` in order."""
        data = self._read_marked_region(marker)
        if isinstance(sliceargs, int):
            if isinstance(lines, (tuple, list)):
                lines = lines[0]
            wanted = self._as_bytes(lines)
            try:
                found = data[sliceargs]
            except IndexError:
                self._handleLogError(f"no line {sliceargs}", data, marker, lines)
                return
            if wanted not in found:
                self._handleLogError(f"{lines!r} not in line {sliceargs}", data, marker, lines)
            return
        start, stop = sliceargs
        region = data[start:stop]
        wanted_lines = [lines] if isinstance(lines, (str, bytes)) else list(lines)
        if len(region) != len(wanted_lines):
            self._handleLogError(f"expected {len(wanted_lines)} lines", region, marker, lines)
            return
        for found, want in zip(region, wanted_lines, strict=True):
            if self._as_bytes(want) not in found:
                self._handleLogError(f"{want!r} not found", region, marker, lines)
