"""Worker-safe defaults: session stores with workers, digest nonces per process, tracebacks
off by default, and typos in tool and request keys caught where config enters."""

from __future__ import annotations

import os
from typing import Any

import pytest

import services.web as cherrypy
from services.web._workersafe import check_session_storage
from services.web.lib import auth_digest
from services.web.lib.filesession import FileSession
from services.web.lib.sessions import RamSession
from sitebus.errors import ConfigError
from sitebus.site.config import Config
from tests.web.test_auth import KEY, REALM, digest_app, digest_header  # noqa: F401


class Root:
    @cherrypy.expose
    def index(self) -> str:
        return "index"


# -- typos ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "message"), [
    ("tools.sesions.on", True, "tools.sesions.on: unknown tool 'sesions' (did you mean "
                               "'sessions'?)"),
    ("tools.sessions.timout", 5, "tools.sessions.timout: unknown setting (did you mean "
                                 "'timeout'?)"),
    ("request.show_tracebaks", False, "request.show_tracebaks: unknown Request attribute (did "
                                      "you mean 'show_tracebacks'?)"),
    ("response.strem", True, "response.strem: unknown Response attribute (did you mean "
                             "'stream'?)"),
    ("request.body.maxbyte", 5, "request.body.maxbyte: unknown RequestBody attribute (did you "
                                "mean 'maxbytes'?)"),
    ("tools.staticdir.dri", "x", "tools.staticdir.dri: unknown setting (did you mean 'dir'?)"),
])
def test_near_misses_are_config_errors(site_state: Any, key: str, value: object,
                                       message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        cherrypy.config.update({key: value})
    assert str(raised.value).startswith(message)
    assert raised.value.exit_code == 78
    with pytest.raises(ConfigError, match=r"did you mean"):
        cherrypy.tree.mount(Root(), "/typo", {"/": {key: value}})


@pytest.mark.parametrize(("key", "value"), [
    ("tools.my_own_tool.on", True),          # a custom tool, registered later
    ("tools.sessions.storage_path", "/tmp"),  # a built-in store's setting
    ("tools.sessions.my_store_option", 1),   # a custom store's setting
    ("request.my_flag", 1),                  # an app's own request attribute
    ("response.headers.X-Thing", "x"),
    ("request.body.maxbytes", 100),
])
def test_names_far_from_known_ones_may_be_the_apps_own(site_state: Any, key: str,
                                                       value: object) -> None:
    cherrypy.config.update({key: value})
    assert cherrypy.config[key] == value


def test_keys_read_before_the_framework_are_checked_when_it_registers() -> None:
    from services.web._cpconfig import register_site_namespaces

    config = Config()
    dict.update(config, {"tools.sesions.on": True})  # as a master that imported no app
    with pytest.raises(ConfigError, match="did you mean 'sessions'"):
        register_site_namespaces(config)


# -- sessions with workers --------------------------------------------------------------------


class App:
    def __init__(self, config: dict[str, Any], root_conf: dict[str, Any] | None = None) -> None:
        self.config = config
        self.root = type("R", (), {"_cp_config": root_conf or {}})()


class MyRam(RamSession):
    pass


@pytest.mark.parametrize(("site", "apps", "workers", "where"), [
    ({"tools.sessions.on": True}, {}, 0, None),
    ({"tools.sessions.on": True}, {}, 2, "the site config [global]"),
    ({"tools.sessions.on": True}, {"": App({})}, 2, "the app at '/'"),
    ({}, {"/shop": App({"/": {"tools.sessions.on": True}})}, 1, "the app at '/shop'"),
    ({}, {"": App({}, {"tools.sessions.on": True})}, 2, "the app at '/'"),
    ({}, {"": App({"/cart": {"tools.sessions.on": True}})}, 2,
     "the app at '/', section [/cart]"),
    ({}, {"": App({"/": {"tools.sessions.on": True,
                         "tools.sessions.storage_class": MyRam}})}, 2, "the app at '/'"),
    ({"tools.sessions.on": True, "tools.sessions.storage_class": FileSession}, {"": App({})},
     2, None),
    ({"tools.sessions.on": True, "tools.sessions.storage_class":
      "services.web.lib.sessions.MemcachedSession"}, {"": App({})}, 2, None),
    ({"tools.sessions.on": True}, {"": App({"/": {
        "tools.sessions.storage_class": FileSession}})}, 2, None),
    ({"tools.sessions.on": True}, {"": App({"/": {"tools.sessions.on": False}})}, 2, None),
])
def test_ram_sessions_are_refused_with_workers(site: dict[str, Any], apps: dict[str, Any],
                                               workers: int, where: str | None) -> None:
    if where is None:
        check_session_storage(site, apps, workers)
        return
    with pytest.raises(ConfigError) as raised:
        check_session_storage(site, apps, workers)
    message = str(raised.value)
    assert message.startswith(f"tools.sessions.storage_class: sessions are on in {where} with "
                              "the default RamSession")
    assert f"server.workers = {workers}" in message
    assert "services.web.lib.sessions.FileSession" in message
    assert "services.web.lib.sessions.MemcachedSession" in message


# -- digest nonces ----------------------------------------------------------------------------


def test_a_nonce_of_another_process_is_stale_here(digest_app: Any) -> None:  # noqa: F811
    ours = auth_digest.synthesize_nonce(REALM, KEY)
    assert auth_digest.issued_here(ours)
    theirs = auth_digest.synthesize_nonce(REALM, KEY, salt="f" * 12 + os.urandom(8).hex())
    assert not auth_digest.issued_here(theirs)
    digest_app.getPage("/protected", headers=[digest_header("GET", "/protected", "jon",
                                                            "secret", theirs)])
    digest_app.assertStatus(401)
    assert "stale=true" in digest_app.assertHeader("WWW-Authenticate")
    digest_app.getPage("/protected", headers=[digest_header("GET", "/protected", "jon",
                                                            "secret", ours)])
    digest_app.assertStatus(200)


def test_a_forked_child_issues_nonces_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, auth_digest.issuer_token.encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child_token = os.read(read, 100).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child_token) == 12 and child_token != auth_digest.issuer_token


# -- tracebacks ---------------------------------------------------------------------------------


def test_tracebacks_are_off_unless_asked_for() -> None:
    assert cherrypy.config.defaults["request.show_tracebacks"] is False
    config = Config()
    config.update({"environment": "development"})
    assert config["request.show_tracebacks"] is True
