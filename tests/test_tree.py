"""The tree routes requests to apps by script name and host, under wsgiref.validate."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from sitebus.site.logs import LogManager
from sitebus.site.tree import Tree, wsgi_path
from tests.httpclients import call_wsgi


def echo(name: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = f"{name} {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def call(app: Any, path: str, host: str = "localhost") -> tuple[str, bytes]:
    environ: dict[str, Any] = {"PATH_INFO": wsgi_path(path), "HTTP_HOST": host}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = wsgi_path(path)
    environ["SCRIPT_NAME"] = ""
    environ["QUERY_STRING"] = ""
    environ["REMOTE_ADDR"] = "127.0.0.1"
    status, _headers, body = call_wsgi(app, environ)
    return status, body


@pytest.fixture
def tree() -> Tree:
    t = Tree()
    t.graft(echo("root"), "")
    t.graft(echo("blog"), "/blog")
    t.graft(echo("admin"), "/blog/admin/")
    t.graft(echo("cafe"), "/café")
    return t


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/", "root '' '/'"),
        ("/blogroll", "root '' '/blogroll'"),
        ("/blog", "blog '/blog' ''"),
        ("/blog/", "blog '/blog' '/'"),
        ("/blog/post/1", "blog '/blog' '/post/1'"),
        ("/blog/admin/users", "admin '/blog/admin' '/users'"),
        ("/café/menü", "cafe '/café' '/menü'"),
    ],
)
def test_longest_whole_segment_prefix_wins(tree: Tree, path: str, expected: str) -> None:
    status, body = call(tree, path)
    assert status == "200 OK"
    assert body.decode("utf-8") == expected


def test_nothing_mounted_is_a_plain_404() -> None:
    status, body = call(Tree(), "/missing/ü")
    assert status == "404 Not Found"
    assert body == "Not Found: nothing is mounted at /missing/ü\n".encode()


def test_virtual_hosts_answer_their_host_first(tree: Tree) -> None:
    tree.graft(echo("shop"), "", host="Shop.Example.com")
    assert call(tree, "/x", host="shop.example.com:8080")[1] == b"shop '' '/x'"
    assert call(tree, "/blog/x", host="shop.example.com")[1] == b"shop '' '/blog/x'"
    assert call(tree, "/x", host="other.example.com")[1] == b"root '' '/x'"


def test_script_name_and_unmount(tree: Tree) -> None:
    assert tree.script_name("/blog/admin/x") == "/blog/admin"
    assert tree.script_name("/café/x") == "/café"
    assert tree.script_name("/elsewhere") == ""
    tree.unmount("/blog/admin")
    assert tree.script_name("/blog/admin/x") == "/blog"
    assert sorted(tree.apps) == ["", "/blog", "/café"]


@pytest.mark.parametrize("bad", ["blog", "x/"])
def test_script_names_must_start_with_a_slash(bad: str) -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        Tree().graft(echo("x"), bad)


def test_graft_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not a WSGI callable"):
        Tree().graft(object(), "/x")  # type: ignore[arg-type]


def test_access_lines_are_written_when_the_access_log_has_a_destination() -> None:
    log = LogManager(appid="treetest")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.access_log.addHandler(handler)
    log.access_log.setLevel(logging.INFO)
    try:
        tree = Tree(log=log)
        tree.graft(echo("root"), "")
        status, body = call(tree, "/a")
        line = stream.getvalue()
        assert line.startswith('127.0.0.1 - - [')
        assert re.search(rf'\] "GET /a HTTP/1.0" 200 {len(body)} "-" "-" \d+ [0-9a-f]+-[0-9a-f]+\n',
                         line)
    finally:
        log.access_log.removeHandler(handler)


def test_mount_grafts_wsgi_callables_and_uses_the_registered_factory() -> None:
    tree = Tree()
    plain = echo("plain")
    assert tree.mount(plain, "/plain") is plain
    made: list[tuple[Any, str, Any]] = []

    class Root:
        pass

    def factory(root: Any, script_name: str, config: Any) -> Any:
        made.append((root, script_name, config))
        return echo("framework")

    tree.app_factory = factory
    root = Root()
    tree.mount(root, "/fw/", {"/": {"a": 1}})
    assert made == [(root, "/fw", {"/": {"a": 1}})]
    assert call(tree, "/fw/x")[1] == b"framework '/fw' '/x'"


def test_an_app_that_fails_before_answering_raises_to_the_server() -> None:
    log = LogManager(appid="treefail")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.access_log.addHandler(handler)
    log.access_log.setLevel(logging.INFO)

    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        raise RuntimeError("broken before answering")

    try:
        tree = Tree(log=log)
        tree.graft(broken, "")
        with pytest.raises(RuntimeError, match="broken before answering"):
            tree({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *a: None)
        assert '"GET / -" 500 -' in stream.getvalue()
    finally:
        log.access_log.removeHandler(handler)
