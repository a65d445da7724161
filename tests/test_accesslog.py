"""Access lines: the compiled format, JSON lines, escaping, the buffer flushed every second."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest

from sitebus.errors import ConfigError
from sitebus.site.accesslog import (
    ACCESS_LOG_FORMAT,
    FLUSH_INTERVAL,
    AccessFileHandler,
    JSONErrorFormatter,
    compile_format,
    escape,
)
from sitebus.site.logs import LogManager
from tests.processes import wait_until

ENVIRON = {"REMOTE_ADDR": "10.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/p",
           "QUERY_STRING": "q=1", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "curl"}


def reference_escape(value: str) -> str:
    """The escaping the access log had before it was compiled: one character at a time."""
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


def test_escaping_is_unchanged_for_every_latin1_character() -> None:
    for code in range(0x200):
        char = chr(code)
        assert escape(f"a{char}b") == reference_escape(f"a{char}b"), hex(code)


def test_combined_format_with_dashes_duration_and_request_id() -> None:
    line = compile_format(ACCESS_LOG_FORMAT)(ENVIRON, "200 OK", 12, 0.001234, "abc-1")
    assert re.fullmatch(r'10\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /p\?q=1 HTTP/1\.1" 200 12 "-" "curl" 1234 abc-1', line), line


def test_missing_values_are_dashes() -> None:
    line = compile_format(ACCESS_LOG_FORMAT)({}, "500 Internal Server Error", 0, None, None)
    assert line.startswith("- - - [") and line.endswith('"- - -" 500 - "-" "-" - -')


def test_a_format_naming_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown field \{x\}"):
        compile_format("{h} {x}")
    assert compile_format("{s!r:>8}|{b:>4}")({}, "200 OK", 5, None, None) == "   '200'|   5"
    manager = LogManager(appid="formattest")
    for bad in ("{h} {x}", "{h", "{s!z}", 42):
        with pytest.raises(ConfigError, match=r"^log\.access_log_format: expected a format"):
            manager.access_log_format = bad  # type: ignore[assignment]
    assert manager.access_log_format == ACCESS_LOG_FORMAT


def test_json_lines_escape_correctly_and_keep_non_ascii() -> None:
    environ = {**ENVIRON, "PATH_INFO": "/caf\u00e9".encode().decode("latin-1"),
               "QUERY_STRING": "", "HTTP_USER_AGENT": 'quote " backslash \\ newline \n',
               "HTTP_REFERER": "http://r\u00e9f/".encode().decode("latin-1")}
    line = compile_format("json")(environ, "404 Not Found", None, 0.5, "id-1")
    assert "\n" not in line and "caf\u00e9" in line  # UTF-8 text, not \u escapes
    record = json.loads(line)
    assert record["uri"] == "/caf\u00e9" and record["referer"] == "http://r\u00e9f/"
    assert record["user_agent"] == 'quote " backslash \\ newline \n'
    assert record["status"] == 404 and record["bytes"] == 0
    assert record["duration_us"] == 500000 and record["request_id"] == "id-1"
    assert record["remote_user"] is None


def test_lines_wait_in_the_buffer_then_are_flushed_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    handler = AccessFileHandler(str(path))
    try:
        handler.write_line("one")
        written = time.monotonic()
        assert path.read_text() == ""  # no write(2) per line
        wait_until(lambda: path.read_text() == "one\n", 5, "the flusher")
        assert time.monotonic() - written < FLUSH_INTERVAL + 0.5
        handler.write_line("two")  # the flusher is woken again after a flush
        wait_until(lambda: path.read_text() == "one\ntwo\n", 5, "the second flush")
        handler.write_line("three")
    finally:
        handler.close()  # closing writes what is buffered: a clean stop loses nothing
    assert path.read_text() == "one\ntwo\nthree\n"


def test_a_zero_flush_interval_writes_each_line_as_it_comes(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    logs = LogManager(logger_root="flush-test")
    logs.access_file = str(path)
    try:
        logs.access_flush_interval = 0
        logs.access(ENVIRON, "200", 2, 0.001, "one")
        assert path.read_text().endswith(" one\n")  # no wait for the flusher
        logs.access_flush_interval = 0.2
        logs.access(ENVIRON, "200", 2, 0.001, "two")
        assert path.read_text().count("\n") == 1
        wait_until(lambda: path.read_text().endswith(" two\n"), 5, "the flusher")
    finally:
        logs.access_file = ""


@pytest.mark.parametrize("value", [-1, "soon", True, None])
def test_a_flush_interval_must_be_seconds(value: object) -> None:
    with pytest.raises(ConfigError, match="log.access_flush_interval"):
        LogManager("flush-test").access_flush_interval = value  # type: ignore[assignment]


@pytest.mark.parametrize("value", [1, "yes", "auto"])
def test_request_id_is_true_false_or_none(value: object) -> None:
    with pytest.raises(ConfigError, match="log.request_id"):
        LogManager("id-test").request_id = value  # type: ignore[assignment]


def test_log_manager_writes_directly_to_its_file_handler(tmp_path: Path) -> None:
    manager = LogManager(appid="accesslogtest")
    manager.access_log.setLevel(logging.INFO)
    manager.access_log.propagate = False
    manager.access_file = str(tmp_path / "access.log")
    try:
        manager.access({**ENVIRON, "sitebus.request_id": "rid-7"}, "200 OK", 3, 0.000002)
        manager.access_log_format = "json"
        manager.access(ENVIRON, "201 Created", 3)
    finally:
        manager.access_file = ""  # closes the handler, which flushes it
    first, second = (tmp_path / "access.log").read_text().splitlines()
    assert first.endswith('"-" "curl" 2 rid-7')
    assert json.loads(second)["status"] == 201


def test_level_and_json_error_log(tmp_path: Path) -> None:
    manager = LogManager(appid="errorlogtest")
    manager.error_file = str(tmp_path / "error.log")
    try:
        manager.level = "warning"
        assert manager.level == "WARNING"
        manager.error("not written", "ENGINE", logging.INFO)
        manager.error_log_format = "json"
        manager.error("caf\u00e9 \"quoted\"", "ENGINE", logging.ERROR)
        with pytest.raises(ConfigError, match="log.level: expected a level"):
            manager.level = "loud"
        with pytest.raises(ConfigError, match="log.error_log_format: expected 'text' or 'json'"):
            manager.error_log_format = "xml"
    finally:
        manager.error_file = ""
    [line] = (tmp_path / "error.log").read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["message"] == 'caf\u00e9 "quoted"' and record["level"] == "ERROR"
    assert record["context"] == "ENGINE" and "caf\u00e9" in line


def test_json_error_records_carry_the_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        record = logging.LogRecord("sitebus", logging.ERROR, __file__, 1, "failed", None,
                                   __import__("sys").exc_info())
    data = json.loads(JSONErrorFormatter().format(record))
    assert data["message"] == "failed" and "KeyError: 'missing'" in data["traceback"]


def test_the_unique_id_field_is_a_new_uuid4_per_line() -> None:
    line = compile_format("{i}")
    first, second = line(ENVIRON, "200", 1, 0.1, None), line(ENVIRON, "200", 1, 0.1, None)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        first)
    assert first != second


def test_a_format_set_on_the_class_is_used_by_its_instances(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "access.log"
    logs = LogManager(logger_root="class-format-test")
    logs.access_file = str(path)
    try:
        logs.access_flush_interval = 0
        monkeypatch.setattr(LogManager, "access_log_format", "{s} {o}")
        logs.access(dict(ENVIRON, HTTP_HOST="example.org"), "404 Not Found", 0, 0.1, None)
        monkeypatch.undo()  # back to the instance's own format
        logs.access(ENVIRON, "200 OK", 2, 0.1, "id-2")
        first, second = path.read_text().splitlines()
        assert first == "404 example.org"
        assert second.startswith("10.0.0.1 - - [") and second.endswith(" id-2")
    finally:
        logs.access_file = ""
