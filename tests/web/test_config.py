"""Config: namespaces (request, response, hooks, error_page, tools, wsgi, log, checker, custom
ones), validation where config enters, and the request config cache seeing every change."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web._cpchecker import Checker
from sitebus.errors import ConfigError
from tests.processes import wait_until


class Root:
    _cp_config = {"demo.level": "class"}

    @cherrypy.expose
    def index(self) -> str:
        return "index"

    @cherrypy.expose
    def setting(self, key: str) -> str:
        return repr(cherrypy.request.config.get(key))

    @cherrypy.expose
    def attrs(self) -> str:
        return (f"{cherrypy.request.show_mismatched_params} {cherrypy.response.timeout} "
                f"{cherrypy.request.body.attempt_charsets}")


@pytest.mark.parametrize(
    "conf, fragment",
    [
        ({"hooks.before_handlr": print}, "unknown hook point 'before_handlr'"),
        ({"hooks.before_handler": 5}, "expected a callable"),
        ({"tools.encode": True}, "expected tools.<tool>.<setting>"),
        ({"tools.encode.on": "yes"}, "expected True or False, got 'yes'"),
        ({"error_page.abc": "x.html"}, "expected error_page.<code>"),
        ({"error_page.302": "x.html"}, "expected error_page.<code>"),
        ({"wsgi.pipeline": []}, "belong in an application's '/' config section"),
        ({"checker.check_nothing": False}, "unknown check"),
        ({"checker.on": 1}, "expected True or False"),
    ],
)
def test_site_config_refuses_bad_keys(site_state: Any, conf: dict[str, Any],
                                      fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as raised:
        cherrypy.config.update(conf)
    assert raised.value.exit_code == 78
    assert str(raised.value).startswith(next(iter(conf)))


def test_app_config_is_checked_at_mount(site_state: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        cherrypy.tree.mount(Root(), "/bad", {"/page": {"tools.gzip": True}})
    assert str(raised.value) == ("tools.gzip: expected tools.<tool>.<setting> (e.g. "
                                 "tools.gzip.on) ([/page])")
    with pytest.raises(ConfigError, match=r"log.sreen: unknown setting"):
        cherrypy.tree.mount(Root(), "/bad", {"/": {"log.sreen": True}})
    with pytest.raises(ConfigError, match="Application config must include section headers|"
                                          "expected a section of keys"):
        cherrypy.tree.mount(Root(), "/bad", {"tools.encode.on": True})


def test_config_file_for_an_app(web: Any, tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text('[/]\ndemo.level = "file"\nresponse.timeout = 6000\n\n'
                    '[Databases]\nhost = "localhost"\nport = 5432\n')
    app = web.mount(Root(), "", str(conf))
    web.getPage("/setting?key=demo.level")
    web.assertBody("'file'")
    assert app.config["Databases"] == {"host": "localhost", "port": 5432}


def test_request_config_merges_site_app_and_handler(web: Any) -> None:
    cherrypy.config.update({"demo.level": "site", "demo.site_only": 1})
    web.mount(Root(), "", {"/": {"demo.level": "app root"}})
    web.getPage("/setting?key=demo.site_only")
    web.assertBody("1")
    web.getPage("/setting?key=demo.level")
    web.assertBody("'app root'")  # the app's section after the class's _cp_config


def test_changes_reach_the_next_request(web: Any) -> None:
    root = Root()
    app = web.mount(root, "", {"/": {"demo.value": 1}})
    web.getPage("/setting?key=demo.value")
    web.assertBody("1")
    app.config["/"]["demo.value"] = 2  # in place
    web.getPage("/setting?key=demo.value")
    web.assertBody("2")
    app.merge({"/": {"demo.value": 3}})
    web.getPage("/setting?key=demo.value")
    web.assertBody("3")
    Root._cp_config["demo.other"] = "x"  # a _cp_config changed in place
    try:
        web.getPage("/setting?key=demo.other")
        web.assertBody("'x'")
    finally:
        del Root._cp_config["demo.other"]
    web.getPage("/setting?key=demo.other")
    web.assertBody("None")
    cherrypy.config.update({"demo.other": "site"})
    web.getPage("/setting?key=demo.other")
    web.assertBody("'site'")
    app.merge({"/setting": {"demo.other": "section"}})  # a new section
    web.getPage("/setting?key=demo.other")
    web.assertBody("'section'")


def test_request_and_response_namespaces(web: Any) -> None:
    web.mount(Root(), "", {"/": {"request.show_mismatched_params": False,
                                 "request.body.attempt_charsets": ["latin-1"],
                                 "response.timeout": 6000,
                                 "response.headers.X-Default": "yes"}})
    web.getPage("/attrs")
    web.assertBody("False 6000 ['latin-1']")
    web.assertHeader("X-Default", "yes")


def test_a_custom_request_namespace_runs_per_request(web: Any) -> None:
    seen: list[tuple[str, Any]] = []

    @contextlib.contextmanager
    def collecting() -> Iterator[Any]:
        batch: list[tuple[str, Any]] = []
        yield lambda k, v: batch.append((k, v))
        seen.append(("done", sorted(batch)))

    app = web.mount(Root(), "", {"/": {"db.connstring": "sqlite://", "db.pool": 2,
                                       "ctx.a": 1}})
    app.request_class.namespaces["db"] = lambda k, v: seen.append((k, v))
    app.request_class.namespaces["ctx"] = collecting()
    try:
        web.getPage("/")
        web.getPage("/")
    finally:
        del app.request_class.namespaces["db"]
        del app.request_class.namespaces["ctx"]
    assert seen.count(("connstring", "sqlite://")) == 2
    assert seen.count(("pool", 2)) == 2
    assert seen.count(("done", [("a", 1)])) == 1  # a context manager is entered once


def test_app_namespaces_run_at_merge(site_state: Any) -> None:
    got: dict[str, Any] = {}
    app = cherrypy.Application(Root(), "/ns")
    app.namespaces["db"] = lambda k, v: got.__setitem__(k, v)
    app.merge({"/": {"db.connstring": "Oracle:host=1.10.100.200;sid=TEST"}})
    assert got == {"connstring": "Oracle:host=1.10.100.200;sid=TEST"}


def test_global_config_namespaces(site_state: Any) -> None:
    got: list[tuple[str, Any]] = []
    cherrypy.config.namespaces["dbns"] = lambda k, v: got.append((k, v))
    try:
        cherrypy.config.update({"dbns.connstring": "x"})
    finally:
        del cherrypy.config.namespaces["dbns"]
    assert got == [("connstring", "x")]


def test_environments_bring_request_settings(web: Any) -> None:
    environments = cherrypy._cpconfig.environments
    environments["web_test"] = {k: v for k, v in environments["production"].items()
                                if k.startswith(("request.", "tools."))}
    try:
        cherrypy.config.update({"environment": "web_test"})
    finally:
        del environments["web_test"]
    assert cherrypy.config["tools.log_headers.on"] is False
    web.mount(Root())
    web.getPage("/attrs")
    web.assertBody("False 300 ['utf-8']")


def test_default_tools_config() -> None:
    for name in ("log_tracebacks", "log_headers", "trailing_slash", "encode"):
        assert cherrypy.config.defaults[f"tools.{name}.on"] is True


def test_wsgi_pipeline(web: Any) -> None:
    class Tag:
        def __init__(self, nextapp: Any, tag: str = "none") -> None:
            self.nextapp = nextapp
            self.tag = tag

        def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
            def tagging_start_response(status: str, headers: list[Any], *exc: Any) -> Any:
                return start_response(status, headers + [("X-Tag", self.tag)], *exc)

            return self.nextapp(environ, tagging_start_response)

    web.mount(Root(), "", {"/": {"wsgi.pipeline": [("tag", Tag)], "wsgi.tag.tag": "tagged"}})
    web.getPage("/")
    web.assertBody("index")
    web.assertHeader("X-Tag", "tagged")


def test_app_log_gets_its_own_access_lines(web: Any, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    error = tmp_path / "error.log"
    app = web.mount(Root(), "/logged", {"/": {"log.access_file": str(access),
                                              "log.error_file": str(error)}})
    try:
        web.getPage("/logged/")
        web.assertBody("index")
        app.log.error("app message")
        # The line is written when the request ends, after the response went out.
        wait_until(lambda: access.read_text(), 10, "the app's access line")
    finally:
        app.log.access_file = ""
        app.log.error_file = ""
    lines = access.read_text().splitlines()
    assert len(lines) == 1 and '"GET /logged/ HTTP/1.1" 200 5' in lines[0]
    assert "app message" in error.read_text()


def test_checker_findings(site_state: Any, caplog: Any) -> None:
    cherrypy.tree.mount(Root(), "/empty")
    cherrypy.tree.mount(Root(), "/misconfigured", {
        "/misconfigured/page": {"demo.x": 1},
        "/": {"server.socket_port": 80, "tools.encode.on": True, "nosuch.key": 1},
        "[/brackets]": {"demo.y": 1},
    })
    checker = Checker()
    with caplog.at_level(logging.WARNING, logger="sitebus"):
        checker()
    text = "\n".join(checker.findings)
    assert "App at '/empty': mounted with no config at all." in text
    assert "config section '/misconfigured/page' repeats the mount point" in text
    assert "only in the site's config, here they do nothing: [/] server.socket_port" in text
    assert "section '[/brackets]' is written with brackets" in text
    assert "'nosuch.key' in section '/': no namespace 'nosuch'" in text
    assert "Checker: App at '/empty': mounted with no config at all." in caplog.text
    checker.on = False
    checker()
    assert checker.findings  # not run again: the old findings stay


def test_checker_namespace_turns_checks_off(site_state: Any) -> None:
    checker = cherrypy.checker
    try:
        cherrypy.config.update({"checker.check_skipped_app_config": False,
                                "checker.on": False})
        assert checker.check_skipped_app_config is False
        assert checker.on is False
    finally:
        checker.on = True
        del checker.check_skipped_app_config


def test_config_files_can_build_dispatchers(web: Any, tmp_path: Path) -> None:
    conf = tmp_path / "rest.conf"
    conf.write_text("[/]\nrequest.dispatch: services.web.dispatch.MethodDispatcher()\n"
                    "tools.trailing_slash.on = False\n")

    @cherrypy.expose
    class Resource:
        def GET(self) -> str:
            return "got"

    web.mount(Resource(), "/res", str(conf))
    web.getPage("/res")
    web.assertBody("got")
    web.assertHeader("Allow", "GET, HEAD")


@pytest.mark.parametrize("path, expected", [
    ("/a/b/c", "ab"), ("/a/b", "ab"), ("/a/b/", "ab slash"), ("/a", "a"), ("/a/x", "a"),
    ("/", "root"), ("", "root"), ("/other", "root"), ("rel/x", "relative"), ("nowhere", None),
])
def test_find_config_takes_the_nearest_section_up_the_path(path: str, expected: Any) -> None:
    app = cherrypy.Application(None, "", {
        "/": {"k": "root"}, "/a": {"k": "a"}, "/a/b": {"k": "ab"}, "/a/b/": {"k": "ab slash"},
        "/a/b/c": {"other": 1}, "rel": {"k": "relative"}})
    assert app.find_config(path, "k") == expected
