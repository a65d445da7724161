"""Config files, values, namespaces and environments."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitebus.errors import EX_CONFIG, ConfigError
from sitebus.site.config import (
    Config,
    NamespaceSet,
    as_dict,
    attributes,
    environments,
    merge,
    unrepr,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080", 8080),
        ("'0.0.0.0'", "0.0.0.0"),
        ('"x"', "x"),
        ("True", True),
        ("None", None),
        ("60 * 60", 3600),
        ("-1", -1),
        ("0o644", 0o644),
        ("[1, 'a', (2, 3)]", [1, "a", (2, 3)]),
        ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}),
        ("{'GET', 'HEAD'}", {"GET", "HEAD"}),
        ("('POST', 'PUT')", ("POST", "PUT")),
        ("os.sep", os.sep),
        ("os.path.join('a', 'b')", os.path.join("a", "b")),
        ("dict(a=1, **{'b': 2})", {"a": 1, "b": 2}),
        ("collections.OrderedDict([('k', 'v')])", {"k": "v"}),
        ("str", str),
        ("", ""),
    ],
)
def test_unrepr_gives_python_values(text: str, expected: Any) -> None:
    assert unrepr(text) == expected


@pytest.mark.parametrize(
    "text",
    ["hello world", "[x for x in ()]", "lambda: 1", "a if b else c", "x := 1"],
)
def test_unrepr_refuses_what_is_not_a_config_value(text: str) -> None:
    # (Calls and attributes of their results are config values, as in the reference:
    # ``__import__('pkg', globals(), locals(), ['']).thing``. A config file is trusted code.)
    with pytest.raises((ValueError, SyntaxError, ImportError, AttributeError)):
        unrepr(text)


def test_attributes_imports_the_longest_module_prefix() -> None:
    assert attributes("os.path.join") is os.path.join
    assert attributes("sitebus.errors.ConfigError") is ConfigError
    with pytest.raises(ImportError):
        attributes("no_such_module_anywhere.thing")


def test_a_file_keeps_key_case_sections_and_interpolation(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    site.write_text(
        "[global]\n"
        "server.socket_host = '127.0.0.1'\n"
        "server.socket_port: 8080\n"
        "[DEFAULT]\n"
        "base = '/srv/www'\n"
        "[/]\n"
        "tools.staticdir.root = %(base)s\n"
        "[Databases]\n"
        "DriverName = 'postgres'\n",
    )
    parsed = as_dict(str(site))
    assert parsed["global"]["server.socket_port"] == 8080
    assert parsed["/"]["tools.staticdir.root"] == "/srv/www"
    assert parsed["Databases"] == {"DriverName": "postgres", "base": "/srv/www"}
    assert as_dict(io.StringIO(site.read_text())) == parsed
    assert as_dict({"a": 1}) == {"a": 1}


def test_a_bad_value_names_file_section_line_and_key(tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    site.write_text("[global]\nserver.socket_port = 8080\n\nserver.socket_host = localhost\n")
    with pytest.raises(ConfigError) as caught:
        as_dict(str(site))
    error = caught.value
    message = str(error)
    assert message.startswith("server.socket_host: expected a Python value, got localhost, "
                              "which names nothing importable; strings need quotes: "
                              'server.socket_host = "localhost"')
    assert "ImportError" not in message
    assert f"({site}, [global], line 4)" in message
    assert (error.filename, error.section, error.lineno) == (str(site), "global", 4)
    assert error.exit_code == EX_CONFIG


def test_an_unreadable_or_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file: No such file"):
        as_dict(str(tmp_path / "missing.conf"))
    broken = tmp_path / "broken.conf"
    broken.write_text("server.socket_port = 80\n")
    with pytest.raises(ConfigError, match="not a valid config file: File contains no section"):
        as_dict(str(broken))


def test_merge_adds_sections_and_refuses_flat_app_config() -> None:
    base: dict[str, Any] = {"/": {"a": 1}}
    merge(base, {"/": {"b": 2}, "/x": {"c": 3}})
    assert base == {"/": {"a": 1, "b": 2}, "/x": {"c": 3}}
    with pytest.raises(ConfigError, match="application config is a dict of paths"):
        merge(base, {"tools.gzip.on": True})


@pytest.fixture
def config() -> Iterator[Config]:
    yield Config()


def test_update_runs_namespace_handlers(config: Config) -> None:
    seen: list[tuple[str, Any]] = []
    config.namespaces["db"] = lambda k, v: seen.append((k, v))
    config.update({"db.connstring": "Oracle:host=1.10.100.200;sid=TEST", "other.key": 1})
    assert seen == [("connstring", "Oracle:host=1.10.100.200;sid=TEST")]
    assert config["other.key"] == 1


def test_context_manager_handlers_see_all_keys_then_exit(config: Config) -> None:
    events: list[Any] = []

    class Collect:
        def __enter__(self) -> Any:
            events.append("enter")
            return lambda k, v: events.append((k, v))

        def __exit__(self, *exc: object) -> None:
            events.append("exit")

    config.namespaces["newauth"] = Collect()
    config.update({"newauth.check_access.on": True, "newauth.check_access.default": False})
    assert events == ["enter", ("check_access.on", True), ("check_access.default", False), "exit"]


def test_update_from_a_file_takes_global_only(config: Config, tmp_path: Path) -> None:
    site = tmp_path / "site.conf"
    site.write_text("[global]\nserver.socket_port = 9090\n[/]\ntools.gzip.on = True\n")
    config.update(str(site))
    assert config == {"server.socket_port": 9090}
    assert config.files == [str(site)]


def test_handler_errors_name_the_file_line_and_key(config: Config, tmp_path: Path) -> None:
    def server(key: str, value: Any) -> None:
        if key == "socket_port" and not isinstance(value, int):
            raise ValueError(f"expected a port number, got {value!r}")

    config.namespaces["server"] = server
    site = tmp_path / "site.conf"
    site.write_text("[global]\n# the port\nserver.socket_port = 'eighty'\n")
    with pytest.raises(ConfigError) as caught:
        config.update(str(site))
    assert str(caught.value) == (
        f"server.socket_port: ValueError: expected a port number, got 'eighty' "
        f"({site}, [global], line 3)"
    )


@pytest.mark.parametrize("name", ["staging", "production", "embedded", "test_suite"])
def test_environments_import_their_keys_but_explicit_keys_win(config: Config, name: str) -> None:
    config.update({"environment": name, "checker.on": True})
    for key, value in environments[name].items():
        assert config[key] == (True if key == "checker.on" else value)


def test_environment_contents_match_the_reference() -> None:
    assert environments["embedded"]["engine.SIGHUP"] is None
    assert environments["test_suite"]["request.show_tracebacks"] is True
    assert environments["production"]["log.screen"] is False
    assert "log.screen" not in environments["staging"]


def test_an_unknown_environment_lists_the_known_ones(config: Config) -> None:
    with pytest.raises(ConfigError, match="unknown environment 'prod'; expected one of "
                                          "development, embedded, production, staging, "
                                          "test_suite"):
        config.update({"environment": "prod"})


def test_config_as_a_decorator_sets_cp_config(config: Config) -> None:
    @config(**{"tools.gzip.on": True})
    def handler() -> str:
        return "x"

    assert handler._cp_config == {"tools.gzip.on": True}  # type: ignore[attr-defined]


def test_namespace_set_copy_keeps_its_type() -> None:
    namespaces = NamespaceSet(a=print)
    assert isinstance(namespaces.copy(), NamespaceSet) and namespaces.copy()["a"] is print


def test_cherrypy_names_in_config_files_resolve_to_services_web() -> None:
    pytest.importorskip("services.web")
    import importlib.util

    if importlib.util.find_spec("cherrypy") is not None:
        pytest.skip("CherryPy itself is installed here; the alias only applies without it")
    from services.web.dispatch import MethodDispatcher

    assert isinstance(unrepr("cherrypy.dispatch.MethodDispatcher()"), MethodDispatcher)
    assert unrepr("cherrypy.dispatch.MethodDispatcher") is MethodDispatcher


def test_a_handler_that_registers_a_namespace_gets_its_keys_handled_too(config: Config) -> None:
    seen: list[tuple[str, Any]] = []

    def loader(key: str, value: Any) -> None:
        config.namespaces["tools"] = lambda k, v: seen.append((k, v))

    config.namespaces["tree"] = loader
    config.update({"tools.gzip.on": True, "tree.app": "x"})
    assert seen == [("gzip.on", True)]
