"""The one-liner's values: bind addresses, APP arguments, SITEBUS_* variables, precedence."""

from __future__ import annotations

from typing import Any

import pytest

from sitebus.errors import EX_USAGE, UsageError
from sitebus.site.apps import TreeEntry
from sitebus.site.launch import Options, options_from_environ, parse_app, parse_bind


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    (":8000", ("0.0.0.0", 8000)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::]:80", ("::", 80)),
])
def test_tcp_binds(text: str, address: tuple[str, int]) -> None:
    assert parse_bind(text) == address


def test_unix_binds_are_absolute(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_bind("unix:site.sock") == str(tmp_path / "site.sock")
    assert parse_bind("unix:/run/site.sock") == "/run/site.sock"


@pytest.mark.parametrize(("text", "message"), [
    ("8080", "expected HOST:PORT, :PORT, \\[IPv6\\]:PORT or unix:PATH, got '8080'"),
    ("127.0.0.1:http", "got '127.0.0.1:http'"),
    ("127.0.0.1:70000", "got '127.0.0.1:70000'"),
    ("::1:8080", "put an IPv6 address in brackets"),
    ("[nothost]:80", "'nothost' is not an IPv6 address"),
    ("unix:", "no path"),
])
def test_bad_binds_name_the_flag(text: str, message: str) -> None:
    with pytest.raises(UsageError, match="^-b/--bind: .*" + message) as caught:
        parse_bind(text)
    assert caught.value.exit_code == EX_USAGE


@pytest.mark.parametrize(("text", "entry"), [
    ("app:app", TreeEntry("APP 'app:app'", "", "app:app")),
    ("/api=pkg.api:make", TreeEntry("APP '/api=pkg.api:make'", "/api", "pkg.api:make")),
    ("api/=m:a", TreeEntry("APP 'api/=m:a'", "/api", "m:a")),
])
def test_app_arguments(text: str, entry: TreeEntry) -> None:
    assert parse_app(text) == entry


@pytest.mark.parametrize("text", ["app", "app:", ":app", "/x=app"])
def test_bad_app_arguments(text: str) -> None:
    with pytest.raises(UsageError, match=f"^APP: expected module:attr or /PREFIX=module:attr, "
                                         f"got '{text}'"):
        parse_app(text)


def test_environment_variables_fill_what_the_command_line_left_unset() -> None:
    environ = {"SITEBUS_BIND": "127.0.0.1:1, unix:/tmp/s.sock", "SITEBUS_WORKERS": "3",
               "SITEBUS_APP": "a:app /b=b:app", "SITEBUS_CONFIG": "one.conf:two.conf",
               "SITEBUS_ENV": "production", "SITEBUS_ACCESS_LOG": "-",
               "SITEBUS_RELOAD": "off", "SITEBUS_CHDIR": "/srv"}
    options = options_from_environ(Options(), environ)
    assert options == Options(config_files=["one.conf", "two.conf"], environment="production",
                              apps=["a:app", "/b=b:app"],
                              binds=["127.0.0.1:1", "unix:/tmp/s.sock"], workers=3,
                              access_log="-", chdir="/srv", reload=False)
    given = Options(binds=["127.0.0.1:2"], workers=0, reload=True)
    assert options_from_environ(given, environ).binds == ["127.0.0.1:2"]
    assert options_from_environ(given, environ).workers == 0  # 0 given is given
    assert options_from_environ(given, environ).reload is True


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SITEBUS_WORKERS", "two", "SITEBUS_WORKERS: expected a number of workers"),
    ("SITEBUS_RELOAD", "maybe", "SITEBUS_RELOAD: expected one of 1, true"),
])
def test_bad_environment_variables_name_the_variable(name: str, value: str,
                                                     message: str) -> None:
    with pytest.raises(UsageError, match="^" + message):
        options_from_environ(Options(), {name: value})
