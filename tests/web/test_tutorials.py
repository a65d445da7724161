"""The tutorials: each one's application over HTTP, and the modules run as programs."""

from __future__ import annotations

import http.client
import importlib
import re
import signal
import string
from typing import Any

import pytest

import services.web as cherrypy
from tests.processes import python

HEX = set(string.hexdigits)


def load(name: str) -> Any:
    return importlib.import_module(f"services.web.tutorial.{name}")


def test_tut01_hello_world(web: Any) -> None:
    web.mount(load("tut01").HelloWorld())
    web.getPage("/")
    web.assertStatus("200 OK")
    web.assertHeader("Content-Type", "text/html;charset=utf-8")
    web.assertBody("Hello world!")


def test_tut02_different_urls(web: Any) -> None:
    web.mount(load("tut02").StringGenerator())
    web.getPage("/")
    web.assertBody("Hello world!")
    web.getPage("/generate")
    web.assertStatus(200)
    assert len(web.body) == 8 and set(web.body.decode()) <= HEX


def test_tut03_parameters(web: Any) -> None:
    web.mount(load("tut03").StringGenerator())
    web.getPage("/generate?length=16")
    assert len(web.body) == 16 and set(web.body.decode()) <= HEX
    web.getPage("/generate")
    assert len(web.body) == 8


def test_tut04_form(web: Any) -> None:
    web.mount(load("tut04").StringGenerator())
    web.getPage("/")
    web.assertInBody('<form method="get" action="generate">')
    web.getPage("/generate?length=4")
    assert len(web.body) == 4
    web.getPage("/generate", method="POST", body="length=5")
    assert len(web.body) == 5


def test_tut07_rest(web: Any) -> None:
    tut07 = load("tut07")
    web.mount(tut07.StringGeneratorWebService(), "", tut07.conf)
    web.set_persistent(True)
    cookies: list[tuple[str, str]] = []

    def request(method: str, url: str = "/", headers: list[tuple[str, str]] | None = None,
                body: str | None = None) -> None:
        web.getPage(url, method=method, headers=(headers or []) + cookies, body=body)
        for name, value in web.headers:
            if name.lower() == "set-cookie":
                cookies[:] = [("Cookie", value.split(";", 1)[0])]

    request("GET")
    web.assertStatus(500)  # no string in the session yet
    request("POST", body="")
    web.assertStatus(200)
    generated = web.body
    assert len(generated) == 8
    web.assertHeader("Content-Type", "text/plain;charset=utf-8")
    request("GET")
    web.assertStatus(200)
    web.assertBody(generated)
    request("GET", headers=[("Accept", "application/json")])
    web.assertStatus(406)
    request("PUT", "/?another_string=hello", body="")
    web.assertStatus(200)
    request("GET")
    web.assertBody("hello")
    request("DELETE")
    request("GET")
    web.assertStatus(500)


def test_tut11_dispatcher_tool_and_plugin(web: Any) -> None:
    tut11 = load("tut11")
    store = tut11.StringStore(cherrypy.engine)
    store.subscribe()
    try:
        web.mount(tut11.StringGenerator(), "", tut11.conf)
        web.getPage("/GENerAte?length=6")  # the dispatcher lower-cases the path
        web.assertStatus(200)
        first = web.body.decode()
        assert len(first) == 6
        float(web.assertHeader("X-Handler-Time"))  # the tool timed the handler
        web.getPage("/generate?length=3")
        second = web.body.decode()
        web.getPage("/history")  # the plugin kept both
        web.assertBody(f"{first} {second}")
        store.stop()
        web.getPage("/history")
        web.assertBody("")
    finally:
        store.unsubscribe()


RUN = ("import sitebus.site.container as s; s.config.update({{'server.socket_port': 0}}); "
       "import runpy; runpy.run_module('services.web.tutorial.{name}', run_name='__main__')")


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, path, expected", [
    ("tut01", "/", b"Hello world!"),
    ("tut03", "/generate?length=3", None),
    ("tut07", "/", None),
    ("tut11", "/GENERATE?length=2", None),
])
def test_tutorials_run_as_programs(spawn: Any, name: str, path: str,
                                   expected: bytes | None) -> None:
    child = spawn(python("-c", RUN.format(name=name)))
    match = child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", timeout=30)
    child.wait_for_output(r"Bus STARTED", timeout=30)
    port = int(match.group(1))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if name == "tut07":
        assert response.status == 500  # an empty session: the reference's first answer
    else:
        assert response.status == 200
    if expected is not None:
        assert body == expected
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    output = child.output
    assert "Listening for SIGTERM." in output
    assert re.search(r"ENGINE Bus EXITED", output)
