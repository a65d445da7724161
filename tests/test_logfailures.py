"""Logs never lost silently: write failures said once per cause, failed reopens keep writing."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitebus.site.logfailures import ReportingStreamHandler
from sitebus.site.logs import LogManager


@pytest.fixture
def manager() -> Iterator[LogManager]:
    log = LogManager(appid="failtest")
    log.error_log.setLevel(logging.INFO)
    log.access_log.setLevel(logging.INFO)
    # Not also to the site's screen, which writes to whatever sys.stderr is (pytest's capture).
    propagate = log.error_log.propagate, log.access_log.propagate
    log.error_log.propagate = log.access_log.propagate = False
    yield log
    log.error_log.propagate, log.access_log.propagate = propagate
    log.screen = False
    log.error_file = ""
    log.access_file = ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_said_once_not_per_record(
    manager: LogManager, capsys: pytest.CaptureFixture[str]
) -> None:
    manager.error_file = "/dev/full"
    manager.access_file = "/dev/full"
    for n in range(200):
        manager.error(f"record {n}", "HTTP", logging.ERROR)
        manager.access({"REQUEST_METHOD": "GET", "PATH_INFO": f"/{n}"}, "200 OK", 5)
    for handler in manager.access_log.handlers:
        handler.flush()  # access lines are written in chunks: the failure shows when written
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    lines = err.splitlines()
    assert lines == [
        "sitebus: cannot write the log file '/dev/full': OSError: [Errno 28] No space left on "
        "device; records are lost until it works again (said once per cause)"
    ] * 2  # one for the error log, one for the access log


class FlakyStream(io.StringIO):
    """A stream whose writes fail with ``errors`` (one each) before they work."""

    def __init__(self, errors: list[OSError]) -> None:
        super().__init__()
        self.failures = errors

    def write(self, text: str) -> int:
        if self.failures:
            raise self.failures.pop(0)
        return super().write(text)


def test_each_cause_is_said_once_and_so_is_recovery(capsys: pytest.CaptureFixture[str]) -> None:
    full, denied = OSError(28, "No space left on device"), OSError(13, "Permission denied")
    stream = FlakyStream([full, full, full, denied, denied, full])
    handler = ReportingStreamHandler(stream)
    logger = logging.getLogger("sitebus.test.flaky")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(6):
            logger.warning("record %d", n)
    finally:
        logger.removeHandler(handler)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 3  # 6 failures, 3 causes in a row, and no recovery in between
    assert "OSError: [Errno 28] No space left on device; records are lost" in said[0]
    assert "PermissionError: [Errno 13] Permission denied; records are lost" in said[1]
    assert "OSError: [Errno 28] No space left on device; records are lost" in said[2]
    logger.addHandler(handler)
    try:
        logger.warning("record 6")
        logger.warning("record 7")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().err == "sitebus: writing the log to a stream again; 6 records " \
        "were lost\n"
    assert stream.getvalue() == "record 6\nrecord 7\n"


def test_a_failed_reopen_keeps_the_old_stream_and_says_so(
    manager: LogManager, tmp_path: Path
) -> None:
    target = tmp_path / "error.log"
    manager.error_file = str(target)
    manager.error("before the rotation")
    rotated = tmp_path / "error.log.1"
    target.rename(rotated)
    target.mkdir()  # the name cannot be opened again
    failures = manager.reopen_files()
    assert failures == [f"log.error_file: cannot reopen {str(target)!r}: Is a directory; still "
                        "writing to the file opened before"]
    assert manager.reopen_failures == failures
    manager.error("after the failed reopen")
    text = rotated.read_text()
    assert f"ENGINE {failures[0]}\n" in text  # said where the records still go
    assert text.endswith(" after the failed reopen\n")
    target.rmdir()
    assert manager.reopen_files() == [] and manager.reopen_failures == []
    manager.error("in the new file")
    assert target.read_text().endswith(" in the new file\n")
