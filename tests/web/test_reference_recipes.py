"""The reference's recipes, run as written but for the import line (issue 17, item 3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web import _cptree, _cpwsgi
from services.web.lib import httputil
from sitebus.bus import Bus, states


class Recorder(logging.Handler):
    """Keeps the records a logger hands it (what a dictConfig handler would receive)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def recorders() -> Iterator[dict[str, Recorder]]:
    """A Recorder on each of the loggers the reference's logging recipe names."""
    attached = {name: Recorder() for name in ("cherrypy.error", "cherrypy.access", "sitebus")}
    for name, handler in attached.items():
        logging.getLogger(name).addHandler(handler)
    try:
        yield attached
    finally:
        for name, handler in attached.items():
            logging.getLogger(name).removeHandler(handler)


class Logging:
    @cherrypy.expose
    def index(self) -> str:
        cherrypy.log("from the handler", "APP")
        return "ok"

    @cherrypy.expose
    def fail(self) -> str:
        raise ValueError("broken on purpose")

    @cherrypy.expose
    def access_now(self) -> str:
        cherrypy.log.access()  # the reference's form: no arguments, the current request
        return "logged"


def test_the_reference_loggers_receive_the_frameworks_records(
    web: Any, recorders: dict[str, Recorder]
) -> None:
    app = web.mount(Logging(), "/logging")
    web.getPage("/logging/")
    web.getPage("/logging/fail")
    web.assertStatus(500)
    errors = recorders["cherrypy.error"]
    assert "APP from the handler" in errors.messages()
    failure = [r for r in errors.records if r.exc_info]
    assert failure and failure[0].exc_info[0] is ValueError  # type: ignore[index]
    # The records came from the app's own child logger and propagated up.
    assert {r.name for r in errors.records} == {f"cherrypy.error.{app.log.appid}"}
    # The site's handlers (on the sitebus logger) still write them, under their own names...
    forwarded = [r for r in recorders["sitebus"].records if "from the handler" in r.getMessage()]
    assert forwarded and all(r.name.startswith("cherrypy.error.") for r in forwarded)
    # ...while the bus's own messages keep the sitebus logger.
    cherrypy.engine.log("a process message")
    mine = [r for r in recorders["sitebus"].records if r.getMessage() == "a process message"]
    assert [r.name for r in mine] == ["sitebus"]
    assert "a process message" not in errors.messages()


def test_access_lines_reach_cherrypy_access_and_log_access_takes_no_arguments(
    web: Any, recorders: dict[str, Recorder]
) -> None:
    web.mount(Logging(), "/logging")
    web.getPage("/logging/access_now", headers=[("User-Agent", "recipe-agent")])
    web.assertBody("logged")
    lines = recorders["cherrypy.access"].messages()
    assert any('"GET /logging/access_now HTTP/1.1" 200' in line and "recipe-agent" in line
               for line in lines), lines


def test_cherrypy_log_in_a_request_honours_the_apps_error_file(web: Any, tmp_path: Path) -> None:
    app_log = tmp_path / "app-error.log"
    web.mount(Logging(), "/logging", {"/": {"log.error_file": str(app_log)}})
    web.getPage("/logging/")
    web.assertBody("ok")
    assert "APP from the handler" in app_log.read_text()


def test_log_screen_off_leaves_no_last_resort_output(
    site_state: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cherrypy.config.update({"log.screen": False})
    error_log = logging.getLogger("cherrypy.error")
    error_log.propagate = False  # nothing configured above it, as in a bare script
    try:
        cherrypy.log("a warning with the screen off", "APP", logging.WARNING)
    finally:
        error_log.propagate = True
    assert "a warning with the screen off" not in capsys.readouterr().err


def test_tree_entry_mounts_an_application_at_its_own_script_name(web: Any) -> None:
    class Blog:
        @cherrypy.expose
        def index(self) -> str:
            return "blog"

    import sys
    import types

    module = types.ModuleType("recipe_blog_app")
    module.app = cherrypy.Application(Blog(), "/blog")  # type: ignore[attr-defined]
    sys.modules["recipe_blog_app"] = module
    try:
        cherrypy.config.update({"tree.blog": "recipe_blog_app:app"})
        assert cherrypy.tree.apps.get("/blog") is module.app  # type: ignore[attr-defined]
        web.start()
        web.getPage("/blog/")
        web.assertBody("blog")
    finally:
        del sys.modules["recipe_blog_app"]


def test_wsgi_version_u0_serves(web: Any, site_state: Any) -> None:
    from sitebus.servers.server import Server

    class Root:
        @cherrypy.expose
        def index(self) -> str:
            return "unicode gateway"

    cherrypy.tree.mount(Root(), "/u")
    server = Server(cherrypy.engine, name="u0", socket_host="127.0.0.1", socket_port=0,
                    wsgi_version=("u", 0))
    server.wsgi_app = cherrypy.tree
    server.start()
    try:
        web.PORT = server.bound_addr[1]
        web.getPage("/u/")
        web.assertBody("unicode gateway")
    finally:
        server.stop()


def test_reference_module_names_exist() -> None:
    assert cherrypy.process.bus is cherrypy.engine
    assert _cpwsgi.CPWSGIApp is type(cherrypy.Application(None).wsgiapp)
    tree = _cptree.Tree()
    app = tree.mount(None, "/x", {"/": {}})
    assert tree.apps == {"/x": app}
    from services.web import daemon

    assert callable(daemon.start) and callable(daemon.run)


def test_header_map_output_is_bytes() -> None:
    headers = httputil.HeaderMap()
    headers["Content-Type"] = "text/plain"
    assert headers.output() == [(b"Content-Type", b"text/plain")]


def test_start_while_started_publishes_start_again() -> None:
    bus = Bus()
    starts: list[int] = []
    bus.subscribe("start", lambda: starts.append(1))
    bus.start()
    bus.start()
    try:
        assert starts == [1, 1] and bus.state is states.STARTED
    finally:
        bus.exit()


def test_an_extra_server_needs_no_bus(site_state: Any) -> None:
    from services.web._cpserver import Server

    extra = Server()
    extra.socket_port = 0
    assert extra.bus is cherrypy.engine and extra.wsgi_app is cherrypy.tree


def test_config_values_as_the_reference_reads_them(site_state: Any) -> None:
    cherrypy.config.update({"recipe.not_found": "cherrypy.lib.httputil.response_codes[404]"})
    from sitebus.site.config import unrepr

    assert unrepr("cherrypy.lib.httputil.response_codes[404]") == httputil.response_codes[404]
    assert unrepr("dict(foo='written', **{'foo': 'mapped'})") == {"foo": "written"}
