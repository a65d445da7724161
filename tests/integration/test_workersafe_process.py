"""Worker-safe defaults in real sites: RamSession refused with workers, a digest header not
replayable on another worker, no tracebacks on error pages unless in development."""

from __future__ import annotations

import hashlib
import http.client
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sites import get, ready_addresses, run_site, tcp_port
from tests.integration.worker_sites import wait_for_workers

pytestmark = pytest.mark.timeout(90)

APP = '''\
import os
import services.web as cherrypy
from services.web.lib.auth_digest import get_ha1_dict_plain


class Root:
    @cherrypy.expose
    def index(self):
        return str(os.getpid())

    @cherrypy.expose
    def fail(self):
        raise ValueError("a secret detail")

    @cherrypy.expose
    def protected(self):
        return "hello " + cherrypy.request.login + " from " + str(os.getpid())


cherrypy.tree.mount(Root(), "", {"/protected": {
    "tools.auth_digest.on": True, "tools.auth_digest.realm": "site",
    "tools.auth_digest.get_ha1": get_ha1_dict_plain({"jon": "secret"}),
    "tools.auth_digest.key": "a565c27146791cfb"},
    "/": {"tools.sessions.on": SESSIONS}})
'''

CONFIG = "[global]\nserver.socket_port = 0\nengine.autoreload.on = False\n"


def write_app(workdir: Path, sessions: bool = False) -> None:
    (workdir / "webapp.py").write_text(APP.replace("SESSIONS", repr(sessions)))


def test_ram_sessions_with_workers_stop_the_start_with_78(spawn: Any, tmp_path: Path) -> None:
    write_app(tmp_path, sessions=True)
    child = run_site(spawn, tmp_path, CONFIG, "-w", "2", "-i", "webapp")
    assert child.wait(60) == 78
    out = child.output
    assert ("sitebus: error: tools.sessions.storage_class: sessions are on in the app at '/' "
            "with the default RamSession") in out
    assert "services.web.lib.sessions.FileSession (with tools.sessions.storage_path)" in out
    assert "services.web.lib.sessions.MemcachedSession (with tools.sessions.servers)" in out


def digest_request(port: int, header: str | None = None) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/protected", headers={"Authorization": header} if header
                           else {})
        response = connection.getresponse()
        return (response.status, response.read().decode(),
                response.getheader("WWW-Authenticate") or "")
    finally:
        connection.close()


def answer(challenge: str) -> str:
    nonce = re.search(r'nonce="([^"]+)", algorithm=MD5', challenge).group(1)  # type: ignore[union-attr]
    ha1 = hashlib.md5(b"jon:site:secret").hexdigest()
    ha2 = hashlib.md5(b"GET:/protected").hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}".encode()).hexdigest()
    return (f'Digest username="jon", realm="site", nonce="{nonce}", uri="/protected", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b", response="{response}"')


def test_a_digest_header_is_not_replayable_on_another_worker(spawn: Any, tmp_path: Path) -> None:
    write_app(tmp_path)
    child = run_site(spawn, tmp_path, CONFIG, "-w", "2", "-i", "webapp", "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    workers = wait_for_workers(tmp_path, 2)
    status, _, challenge = digest_request(port)
    assert status == 401
    header = answer(challenge)
    accepted = []
    pids = set()
    for _ in range(200):  # new connections, spread over both workers by the kernel
        status, body, challenge = digest_request(port, header)
        if status == 200:
            accepted.append(body)
        else:
            assert status == 401
        pids.add(int(get(port, "/")[1]))
        if len(pids) == 2 and len(accepted) + 1 >= 20:
            break
    assert pids == workers, "both workers must have served"
    assert len(accepted) == 1, accepted  # its first use, by the worker that issued the nonce


def served_error(spawn: Any, workdir: Path, name: str, *args: str) -> str:
    write_app(workdir)
    child = run_site(spawn, workdir, CONFIG, "-i", "webapp", *args, name=name)
    status, body, _ = get(tcp_port(ready_addresses(child)), "/fail")
    assert status == 500
    child.reap()
    return body.decode()


def test_error_pages_show_no_traceback_without_an_environment(spawn: Any, tmp_path: Path) -> None:
    page = served_error(spawn, tmp_path, "plain")
    assert "Traceback" not in page and "a secret detail" not in page
    page = served_error(spawn, tmp_path, "development", "-e", "development")
    assert "Traceback (most recent call last)" in page and "a secret detail" in page


