"""ASGI apps on the bus, in real processes: FastAPI, Starlette, Django's asgi.py and a raw
ASGI callable beside a WSGI app in one site; lifespans in order, in each worker; a failed
startup; rolling reloads under a keep-alive client with a websocket open; an in-place restart.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.asgi_sites import lifespan_events, write_apps
from tests.integration.frontends import free_port
from tests.integration.sites import (
    PersistentClient,
    get,
    ready_addresses,
    reloaded,
    sitebus,
    tcp_port,
)
from tests.integration.worker_sites import (
    WorkerRecorder,
    recorder_fixture,  # noqa: F401 (the fixture recorder, autouse)
    wait_for_workers,
)
from tests.processes import child_env, python, wait_until

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
websockets_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosed  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

MIXED = """\
[global]
server.socket_port = 0
engine.autoreload.on = False
engine.health.on = True
engine.health.drain_delay = 0
tree.api = "/api", "fastapp:app"
tree.star = "/star", "starletteapp:app"
tree.web = "/web", "wsgiapp:app"
tree.dj = "/dj", "djsite.asgi:application"
tree.raw = "", "rawapp:app"
"""


def echo(port: int, path: str) -> str:
    with websockets_client.connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10) as ws:
        ws.send("hello")
        return str(ws.recv(timeout=10))


def stop(child: Any) -> None:
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0


def test_one_site_serves_asgi_and_wsgi_apps_by_prefix(spawn: Any, tmp_path: Path) -> None:
    write_apps(tmp_path)
    (tmp_path / "site.conf").write_text(MIXED)
    checked = sitebus("check", "-c", "site.conf", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert ("apps mounted at '/' (asgi), '/api' (asgi), '/dj' (asgi), '/star' (asgi), "
            "'/web' (wsgi)") in checked.stdout
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf"))
    port = tcp_port(ready_addresses(child))

    status, body, headers = get(port, "/api/hello")
    assert status == 200 and json.loads(body) == {"app": "fastapi", "root_path": "/api",
                                                  "path": "/api/hello"}
    assert headers["server"].startswith("sitebus/")
    assert get(port, "/star/hello")[:2] == (200, b"starlette /star /star/hello")
    assert get(port, "/web/x/y?q=1")[:2] == (200, b"wsgi /web /x/y")
    assert get(port, "/dj/who")[:2] == (200, b"django /dj /who /dj/who")
    pid = child.pid
    assert get(port, "/other")[:2] == (200, f"{pid} raw  /other hi from raw".encode())
    for path in ("/api/stream", "/star/stream", "/stream"):
        status, body, headers = get(port, path)
        assert (status, body) == (200, b"chunk0\nchunk1\nchunk2\n")
        assert headers.get("transfer-encoding") == "chunked"
    health = get(port, "/health")
    assert health[0] == 200 and json.loads(health[1])["ready"] is True
    for path in ("/api/ws", "/star/ws", "/ws"):
        assert echo(port, path) == "echo hello"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for path in ("/api/hello", "/web/a", "/dj/who", "/api/hello"):  # keep-alive, both kinds
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200 and response.read()
    connection.close()
    stop(child)
    events = [(event[0], event[1]) for event in lifespan_events(tmp_path)
              if event[0] in ("startup", "shutdown")]
    assert events == [("startup", "fastapi"), ("startup", "starlette"), ("startup", "raw"),
                      ("shutdown", "raw"), ("shutdown", "starlette"), ("shutdown", "fastapi")]
    assert {event[-1] for event in lifespan_events(tmp_path)} == {str(pid)}
    assert re.search(r'"GET /api/hello HTTP/1\.1" 200 56 ', child.output)
    assert re.search(r'"GET /web/x/y\?q=1 HTTP/1\.1" 200 14 ', child.output)


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "workers"])
def test_a_failed_lifespan_startup_is_one_line_and_exit_70(tmp_path: Path, workers: int) -> None:
    write_apps(tmp_path)
    port = free_port()
    done = subprocess.run(python("-m", "sitebus", "run", "failapp:app", "-w", str(workers),
                                 "-b", f"127.0.0.1:{port}", "--no-reload"),
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    errors = [line for line in done.stderr.splitlines() if line.startswith("sitebus: error:")]
    assert done.returncode == 70, done.stderr
    assert errors == ["sitebus: error: APP 'failapp:app': the ASGI app's lifespan startup "
                      "failed: RuntimeError: no database"], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert [event[:2] for event in lifespan_events(tmp_path)][0] == ["startup", "failing"]


def test_workers_run_lifespans_and_reload_without_failing_a_keep_alive_request(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    write_apps(tmp_path)
    port = free_port()
    child = recorder.watch(spawn(python("-m", "sitebus", "run", "rawapp:app", "-w", "2", "-b",
                                        f"127.0.0.1:{port}", "-p", "site.pid", "--no-reload")))
    ready_addresses(child)
    current = wait_for_workers(tmp_path, 2)
    startups = {int(e[-1]) for e in lifespan_events(tmp_path) if e[0] == "startup"}
    assert startups == current and child.pid not in startups
    # One keep-alive connection, reopened only after a Connection: close; every error fails.
    client = PersistentClient(port, pause=0.002, timeout=30)
    client.start()
    try:
        with websockets_client.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            ws.send("before")
            assert ws.recv(timeout=10) == "echo before"
            for _reload in range(4):
                reloaded(child, signal.SIGUSR1)
                current = wait_for_workers(tmp_path, 2, not_among=current)
                wait_until(lambda now=current: set(client.pids[-10:]) <= now, 30,  # type: ignore[misc]
                           "answers from the new workers")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        client.finish()
    assert client.failures == []
    assert len(client.pids) > 20 and client.connections < len(client.pids)
    stop(child)
    events = lifespan_events(tmp_path)
    started = [int(e[-1]) for e in events if e[0] == "startup"]
    ended = [int(e[-1]) for e in events if e[0] == "shutdown"]
    assert len(started) == 10 and sorted(started) == sorted(ended)
    assert ["disconnect", "raw", "1001"] in [e[:3] for e in events]


def test_an_in_place_restart_keeps_the_socket_and_reruns_the_lifespan(
        spawn: Any, tmp_path: Path) -> None:
    write_apps(tmp_path)
    port = free_port()
    child = spawn(python("-m", "sitebus", "run", "rawapp:app", "-b", f"127.0.0.1:{port}",
                         "--no-reload"))
    ready_addresses(child)
    assert get(port, "/a")[:2] == (200, f"{child.pid} raw  /a hi from raw".encode())
    seen = len(child.notify.messages)
    child.send_signal(signal.SIGUSR2)
    slow: list[Any] = []
    thread = threading.Thread(target=lambda: slow.append(get(port, "/b", timeout=30)[:2]))
    thread.start()  # sent while the image is replaced: waits in the backlog, never refused
    ready_addresses(child, after=seen)
    thread.join(30)
    assert slow == [(200, f"{child.pid} raw  /b hi from raw".encode())]
    stop(child)
    events = [e[:2] for e in lifespan_events(tmp_path)]
    assert events == [["startup", "raw"], ["shutdown", "raw"], ["startup", "raw"],
                      ["shutdown", "raw"]]


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_an_asgi_site_serves_the_socket_systemd_passes(spawn: Any, tmp_path: Path) -> None:
    write_apps(tmp_path)
    passed = free_port()
    child = spawn(["systemd-socket-activate", "-E", "PYTHONPATH", "-E", "PYTHONUNBUFFERED",
                   "-l", f"127.0.0.1:{passed}",
                   *python("-m", "sitebus", "run", "rawapp:app", "--no-reload")], notify=False)
    child.wait_for_output(rf"Listening on 127\.0\.0\.1:{passed}")
    status, body, _headers = get(passed, "/x")  # the first connection starts the site
    assert status == 200 and body.endswith(b" raw  /x hi from raw")
    assert echo(passed, "/ws") == "echo hello"
    assert f"Serving on http://127.0.0.1:{passed}" in child.output
    stop(child)


VHOSTS = """\
[global]
server.socket_port = 0
engine.autoreload.on = False
tree.raw = "", "rawapp:app"
tree.api = "", "starletteapp:app", "api.example.com"
tree.web = "/web", "wsgiapp:app", "api.example.com"
"""


def test_asgi_apps_answer_their_virtual_host_first(spawn: Any, tmp_path: Path) -> None:
    write_apps(tmp_path)
    (tmp_path / "site.conf").write_text(VHOSTS)
    checked = sitebus("check", "-c", "site.conf", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf"))
    port = tcp_port(ready_addresses(child))
    api = {"Host": "API.example.com:443"}
    assert get(port, "/hello", headers=api)[:2] == (200, b"starlette  /hello")
    assert get(port, "/web/x/y", headers=api)[:2] == (200, b"wsgi /web /x/y")
    assert get(port, "/other")[:2] == (200, f"{child.pid} raw  /other hi from raw".encode())
    assert get(port, "/web/x/y")[1].startswith(f"{child.pid} raw".encode())  # not this host's
    assert echo(port, "/ws") == "echo hello"  # websockets route by host too (none given: raw)
    stop(child)
