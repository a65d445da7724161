"""Error and access logs: formats, files, reopening, escaping."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitebus.errors import EX_CANTCREAT, CannotCreateError
from sitebus.site.logs import LogManager, access_fields, log_time


@pytest.fixture
def manager() -> Iterator[LogManager]:
    log = LogManager(appid="logtest")
    log.access_log.setLevel(logging.INFO)
    log.error_log.setLevel(logging.INFO)
    yield log
    log.screen = False
    log.error_file = ""
    log.access_file = ""


def test_log_time_has_the_reference_shape_and_an_english_month() -> None:
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\]", log_time(0))
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]",
                        log_time(0, zone=True))


def test_error_file_lines_and_reopen_after_rotation(manager: LogManager, tmp_path: Path) -> None:
    target = tmp_path / "error.log"
    manager.error_file = str(target)
    manager.error("first", "ENGINE")
    rotated = tmp_path / "error.log.1"
    target.rename(rotated)
    manager.error("still the old file")
    manager.reopen_files()
    manager.error("after reopen", "HTTP", logging.WARNING)
    assert re.fullmatch(r"\[[^]]+\] ENGINE first\n\[[^]]+\] still the old file\n",
                        rotated.read_text())
    assert re.fullmatch(r"\[[^]]+\] HTTP after reopen\n", target.read_text())


def test_traceback_goes_with_the_error(manager: LogManager, tmp_path: Path) -> None:
    manager.error_file = str(tmp_path / "e.log")
    try:
        raise KeyError("missing")
    except KeyError:
        manager.error("it failed", traceback=True, severity=logging.ERROR)
    text = (tmp_path / "e.log").read_text()
    assert "it failed\nTraceback (most recent call last):" in text
    assert "KeyError: 'missing'" in text


def flush(manager: LogManager) -> None:
    for handler in manager.access_log.handlers:
        handler.flush()


def test_access_file_gets_combined_log_format_lines(manager: LogManager, tmp_path: Path) -> None:
    manager.access_file = str(tmp_path / "access.log")
    assert manager.wants_access()
    environ = {"REMOTE_ADDR": "10.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/p",
               "QUERY_STRING": "q=1", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_REFERER": "http://ref/", "HTTP_USER_AGENT": 'agent "x"\n'}
    manager.access(environ, "200 OK", 1234)
    manager.access(environ, "304 Not Modified", 0)
    flush(manager)
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert re.fullmatch(
        r'10\.0\.0\.1 - - \[[^]]+ [+-]\d{4}\] "GET /p\?q=1 HTTP/1\.1" 200 1234 '
        r'"http://ref/" "agent \\"x\\"\\x0a" - -', lines[0])
    assert ' 304 - "' in lines[1]


def test_a_custom_access_format(manager: LogManager, tmp_path: Path) -> None:
    manager.access_file = str(tmp_path / "access.log")
    manager.access_log_format = "{h} {s} {o}"
    manager.access({"REMOTE_ADDR": "1.2.3.4", "HTTP_HOST": "example.com"}, "404 Not Found", 5)
    flush(manager)
    assert (tmp_path / "access.log").read_text() == "1.2.3.4 404 example.com\n"


def test_an_unwritable_log_file_is_a_clear_error(manager: LogManager, tmp_path: Path) -> None:
    with pytest.raises(CannotCreateError) as caught:
        manager.error_file = str(tmp_path / "no-such-dir" / "error.log")
    assert caught.value.exit_code == EX_CANTCREAT
    assert str(caught.value).startswith("log.error_file: cannot open ")
    assert manager.error_file == ""


def test_screen_adds_and_removes_handlers(manager: LogManager) -> None:
    manager.screen = True
    assert manager.screen and len(manager.error_log.handlers) == 1
    manager.screen = True
    assert len(manager.error_log.handlers) == 1  # not doubled
    manager.screen = False
    # Off leaves a NullHandler, so Python's last-resort handler stays quiet too; the access
    # log needs none (its lines are INFO, below the last resort's level).
    assert [type(h) for h in manager.error_log.handlers] == [logging.NullHandler]
    assert manager.access_log.handlers == []


def test_screen_off_keeps_the_last_resort_handler_quiet(
    manager: LogManager, capsys: pytest.CaptureFixture[str]
) -> None:
    manager.screen = False
    manager.error_log.propagate = False  # as if nothing else were configured
    try:
        manager.error("a warning nobody asked to see", severity=logging.WARNING)
    finally:
        manager.error_log.propagate = True
    assert capsys.readouterr().err == ""


def test_access_fields_use_request_uri_when_the_server_gives_it() -> None:
    environ = {"REQUEST_URI": "/raw%20path?x", "REQUEST_METHOD": "POST"}
    fields = access_fields(environ, "201 Created", None)
    assert fields["r"] == "POST /raw%20path?x -" and fields["b"] == "-" and fields["s"] == "201"


def test_an_access_file_alone_is_the_access_log_s_only_handler(tmp_path: Path) -> None:
    # access() writes straight to the file when it is the only handler (no LogRecord per
    # line); a stand-in handler beside it cost 16% of a hello-world site's throughput.
    from sitebus.site.accesslog import AccessFileHandler

    manager = LogManager(appid="onlyhandler")
    manager.screen = False
    manager.access_file = str(tmp_path / "access.log")
    try:
        assert [type(h) for h in manager.access_log.handlers] == [AccessFileHandler]
        assert any(isinstance(h, logging.NullHandler) for h in manager.error_log.handlers)
    finally:
        manager.access_file = ""
