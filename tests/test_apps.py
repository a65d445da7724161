"""Apps by kind: entry forms, kinds of Flask/Bottle/Falcon/Pyramid/bare/services.web/ASGI apps,
config only for services.web apps, and the app sections of config files.

Django is left to the process tests: importing it here leaves a lazy settings object that
other in-process tests (the gc pages) trip over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import services.web as web
from sitebus.errors import EX_CONFIG, ConfigError
from sitebus.site.apps import ASGI, SERVICES_WEB, WSGI, TreeEntry, app_kind, load_app, parse_entry
from sitebus.site.config import as_dict
from sitebus.site.container import Site, tree
from sitebus.site.launch import app_sections


def fresh_site() -> Site:
    """A site of the test's own, whose tree knows services.web's apps as the global one does."""
    site = Site()
    site.tree.app_factory, site.tree.app_class = tree.app_factory, tree.app_class
    return site


def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bare"]


async def asgi_function(scope: Any, receive: Any, send: Any) -> None:
    pass


class AsgiApp:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class Root:
    @web.expose
    def index(self) -> str:
        return "root"


class CallableRoot:
    @web.expose
    def __call__(self) -> str:
        return "called"


def flask_app() -> Any:
    flask = pytest.importorskip("flask")
    return flask.Flask("kinds")


def bottle_app() -> Any:
    return pytest.importorskip("bottle").Bottle()


def falcon_app() -> Any:
    return pytest.importorskip("falcon").App()


def falcon_asgi_app() -> Any:
    return pytest.importorskip("falcon.asgi").App()


def pyramid_app() -> Any:
    config = pytest.importorskip("pyramid.config")
    with config.Configurator() as configurator:
        return configurator.make_wsgi_app()


@pytest.mark.parametrize(("make", "kind"), [
    (flask_app, WSGI), (bottle_app, WSGI), (falcon_app, WSGI), (pyramid_app, WSGI),
    (lambda: bare, WSGI),
    (Root, SERVICES_WEB), (CallableRoot, SERVICES_WEB),
    (lambda: web.Application(Root()), SERVICES_WEB),
    (lambda: asgi_function, ASGI), (AsgiApp, ASGI), (falcon_asgi_app, ASGI),
    (lambda: "a string", None), (lambda: Root, None), (lambda: object(), None),
], ids=["flask", "bottle", "falcon", "pyramid", "bare", "root", "callable-root",
        "application", "asgi-function", "asgi-class", "falcon-asgi", "string", "class",
        "object"])
def test_kinds(make: Any, kind: str | None) -> None:
    assert app_kind(make(), web.Application) == kind


@pytest.mark.parametrize(("value", "entry"), [
    ("m:app", TreeEntry("tree.blog", "/blog", "m:app", own_path=True)),
    (("/b", "m:app"), TreeEntry("tree.blog", "/b", "m:app")),
    (("/b", "m:app", "example.com"), TreeEntry("tree.blog", "/b", "m:app", None, "example.com")),
    ({"app": "m:app"}, TreeEntry("tree.blog", "/blog", "m:app")),
    ({"path": "", "app": "m:app", "config": "b.conf", "host": "example.com"},
     TreeEntry("tree.blog", "", "m:app", "b.conf", "example.com")),
])
def test_entry_forms(value: Any, entry: TreeEntry) -> None:
    assert parse_entry("blog", value) == entry


@pytest.mark.parametrize(("value", "message"), [
    ({"path": "/b"}, "expected an 'app' key"),
    ({"app": "m:app", "conf": "x"}, "unknown key 'conf'; expected some of path, app"),
    (("b", "m:app"), "expected a mount point starting with '/', got 'b'"),
    (["/b", "m:app"], 'expected "module:attr", '),
])
def test_bad_entries_are_config_errors(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match="^tree.blog: " + message.replace("(", r"\(")):
        parse_entry("blog", value)


def test_a_module_that_raises_at_import_is_one_config_error(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    (tmp_path / "explodes_at_import.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_app(parse_entry("x", ("/x", "explodes_at_import:app")))
    assert str(caught.value) == ("tree.x: cannot import module 'explodes_at_import': "
                                 "RuntimeError: boom")
    assert caught.value.exit_code == EX_CONFIG


def test_wsgi_apps_are_grafted_as_they_are_and_roots_wrapped() -> None:
    site = fresh_site()
    bottle = bottle_app()
    site.mount_entry(TreeEntry("tree.b", "/b", bottle))
    site.mount_entry(TreeEntry("tree.w", "/w", Root()))
    assert site.tree.apps["/b"] is bottle
    assert isinstance(site.tree.apps["/w"], web.Application)
    assert site.framework_apps() == [site.tree.apps["/w"]]


@pytest.mark.parametrize(("target", "message"), [
    (bare, "is a WSGI app \\(function tests.test_apps.bare\\), which takes no services.web "
           "config"),
    (AsgiApp(), "is an ASGI app \\(tests.test_apps.AsgiApp: async __call__"),
    (Root, "is a class \\(class tests.test_apps.Root\\)"),
    (12, "is not callable and has no exposed handlers"),
])
def test_what_cannot_be_mounted_is_one_config_error(target: Any, message: str) -> None:
    site = fresh_site()
    with pytest.raises(ConfigError, match=f"^tree.x: .*{message}"):
        site.mount_entry(TreeEntry("tree.x", "/x", target, config={"/": {}}))


def test_an_app_config_file_goes_to_its_own_app(tmp_path: Path) -> None:
    (tmp_path / "one.conf").write_text("[/]\ndemo.name = 'one'\n")
    site = fresh_site()
    one = site.mount_entry(TreeEntry("tree.one", "/one", Root(), str(tmp_path / "one.conf")))
    two = site.mount_entry(TreeEntry("tree.two", "/two", Root(), {"/": {"demo.name": "two"}}))
    assert one.config["/"]["demo.name"] == "one" and two.config["/"]["demo.name"] == "two"
    assert str(tmp_path / "one.conf") in site.config.files  # autoreload watches it


def _files(tmp_path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    path = tmp_path / "site.conf"
    path.write_text(text)
    return [(str(path), as_dict(str(path)))]


def test_app_sections_go_to_the_one_services_web_app_beside_wsgi_apps(tmp_path: Path) -> None:
    site = fresh_site()
    site.mount_entry(TreeEntry("tree.b", "/b", bottle_app()))
    site.mount_entry(TreeEntry("tree.f", "/f", flask_app()))
    app = site.mount_entry(TreeEntry("tree.w", "/w", Root()))
    app_sections(site, _files(tmp_path, "[global]\nx = 1\n[/]\ntools.gzip.on = True\n"))
    assert app.config["/"]["tools.gzip.on"] is True


def test_an_app_section_no_app_takes_is_an_error_naming_file_and_section(tmp_path: Path) -> None:
    site = fresh_site()
    site.mount_entry(TreeEntry("tree.b", "/b", bottle_app()))
    files = _files(tmp_path, "[global]\nx = 1\n[/static]\ntools.staticdir.on = True\n")
    with pytest.raises(ConfigError, match=r"no services.web app is mounted to take it .*"
                                          rf"\({tmp_path}/site.conf, \[/static\]\)$"):
        app_sections(site, files)


def test_an_app_section_two_apps_could_take_is_an_error(tmp_path: Path) -> None:
    site = fresh_site()
    site.mount_entry(TreeEntry("tree.one", "/one", Root()))
    site.mount_entry(TreeEntry("tree.two", "/two", Root()))
    with pytest.raises(ConfigError, match=r"2 services.web apps could take it \(at '/one', "
                                          r"'/two'\): give each its own"):
        app_sections(site, _files(tmp_path, "[/]\ntools.gzip.on = True\n"))


def test_sections_skip_apps_that_have_their_own_config(tmp_path: Path) -> None:
    site = fresh_site()
    site.mount_entry(TreeEntry("tree.one", "/one", Root(), {"/": {"demo.name": "own"}}))
    two = site.mount_entry(TreeEntry("tree.two", "/two", Root()))
    app_sections(site, _files(tmp_path, "[/]\ndemo.name = 'site'\n"))
    assert two.config["/"]["demo.name"] == "site"
