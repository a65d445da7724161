"""The process features of WSGI sites, for ASGI apps, in real processes: the access log, the
metrics and proxy headers from the site's settings; TLS; a worker's max_requests and its
hung-request check; autoreload.
"""

from __future__ import annotations

import http.client
import re
import signal
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.asgi_sites import write_apps
from tests.integration.sites import get, ready_addresses, tcp_port
from tests.integration.worker_sites import WorkerRecorder, wait_for_workers
from tests.processes import python, wait_until

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
websockets_client = pytest.importorskip("websockets.sync.client")

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

LINE = re.compile(r'(?P<h>\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                  r'"(?P<r>[^"]*)" (?P<s>\d{3}) (?P<b>\d+|-) "(?P<f>[^"]*)" "(?P<a>[^"]*)" '
                  r'(?P<D>\d+) (?P<L>\S+)')
"""An access line in the default format: Combined, then the duration (us) and request id."""

OBSERVED = '''\
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def client(request):
    return PlainTextResponse(f"{request.client.host} {request.url.scheme} "
                             f"{request.headers.get('x-request-id')}")


star = Starlette(routes=[Route("/client", client)])


def wsgi(environ, start_response):
    body = f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.fixture(autouse=True)
def recorder() -> Iterator[WorkerRecorder]:
    recorder = WorkerRecorder()
    yield recorder
    left = recorder.close()
    assert left == [], f"workers outlived the test: {left}"


def stop(child: Any) -> None:
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0


def site(spawn: Any, workdir: Path, *lines: str, args: tuple[str, ...] = ()) -> Any:
    write_apps(workdir)
    (workdir / "observed.py").write_text(OBSERVED)
    (workdir / "site.conf").write_text("\n".join(
        ["[global]", "server.socket_port = 0", "engine.autoreload.on = False", *lines, ""]))
    return spawn(python("-m", "sitebus", "run", "-c", "site.conf", *args))


def test_asgi_and_wsgi_requests_share_access_log_metrics_and_proxy_settings(
        spawn: Any, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    access = tmp_path / "access.log"
    child = site(spawn, tmp_path, f"log.access_file = {str(access)!r}",
                 "engine.metrics.on = True", "engine.proxy.on = True",
                 "tree.star = '/star', 'observed:star'", "tree.web = '/web', 'observed:wsgi'",
                 "tree.raw = '/raw', 'rawapp:app'")
    port = tcp_port(ready_addresses(child))
    with websockets_client.connect(f"ws://127.0.0.1:{port}/raw/chat", open_timeout=10,
                                   user_agent_header="sock/1") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "echo hi"
        socket_id = ws.response.headers["X-Request-ID"]  # the handshake response has it
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                 "User-Agent": "probe/1"}
    star = get(port, "/star/client?x=1", headers=forwarded)
    web = get(port, "/web/client", headers=forwarded)
    plain = get(port, "/star/client")
    request_id = star[2]["x-request-id"]
    assert star[:2] == (200, f"203.0.113.9 https {request_id}".encode())
    assert web[:2] == (200, b"203.0.113.9 https") and web[2]["x-request-id"] != request_id
    assert plain[1].startswith(b"127.0.0.1 http ")
    stop(child)  # which writes out the access lines
    lines = access.read_text().splitlines()
    found = [LINE.fullmatch(line) for line in lines]
    assert len(lines) == 4 and None not in found, lines
    # By request id: a WSGI app's line is written from its pool thread as its body closes,
    # which may come after the next request's.
    by_id = {match.group("L"): match for match in found if match is not None}
    star_line, web_line = by_id[request_id], by_id[web[2]["x-request-id"]]
    plain_line = by_id[plain[2]["x-request-id"]]
    assert star_line.group("h", "r", "s", "b", "a", "L") == (
        "203.0.113.9", "GET /star/client?x=1 HTTP/1.1", "200", str(len(star[1])), "probe/1",
        request_id)
    assert web_line.group("h", "r", "s", "a", "L") == (
        "203.0.113.9", "GET /web/client HTTP/1.1", "200", "probe/1", web[2]["x-request-id"])
    assert plain_line.group("h") == "127.0.0.1"
    # The websocket session's line, written when it ended: 101, the bytes it sent ("echo hi").
    assert by_id[socket_id].group("h", "r", "s", "b", "a") == (
        "127.0.0.1", "GET /raw/chat HTTP/1.1", "101", "7", "sock/1")


def test_metrics_count_the_requests_of_asgi_apps(spawn: Any, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    child = site(spawn, tmp_path, "engine.metrics.on = True",
                 "tree.star = '/star', 'observed:star'", "tree.raw = '', 'rawapp:app'")
    port = tcp_port(ready_addresses(child))
    for path in ("/star/client", "/star/client", "/star/missing", "/x"):
        get(port, path)
    metrics = get(port, "/metrics")[1].decode()
    found = {(app, status): float(value) for app, status, value in re.findall(
        r'^sitebus_requests_total\{app="([^"]*)",method="GET",status="(\d+)"\} (\S+)$',
        metrics, re.M)}
    assert found == {("/star", "200"): 2.0, ("/star", "404"): 1.0,
                                ("/", "200"): 1.0}
    stop(child)


def test_the_uvicorn_server_type_serves_tls_from_the_site_s_certificate(
        spawn: Any, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    child = site(spawn, tmp_path, "server.ssl_certificate = 'cert.pem'",
                 "server.ssl_private_key = 'key.pem'", "tree.raw = '', 'rawapp:app'",
                 "tree.web = '/web', 'wsgiapp:app'")
    port = tcp_port(ready_addresses(child))
    assert f"Serving on https://127.0.0.1:{port}" in child.output
    for path, body in (("/x", f"{child.pid} raw  /x hi from raw"), ("/web/y", "wsgi /web /y")):
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=client)
        connection.request("GET", path)
        response = connection.getresponse()
        assert (response.status, response.read().decode()) == (200, body)
        connection.close()
    with websockets_client.connect(f"wss://127.0.0.1:{port}/ws", ssl=client,
                                   open_timeout=10) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=10) == "echo over tls"
    with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
        get_tls(port, ssl.create_default_context())
    stop(child)


def get_tls(port: int, context: ssl.SSLContext) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    finally:
        connection.close()


def test_max_requests_recycles_a_worker_serving_an_asgi_app(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child = recorder.watch(site(spawn, tmp_path, "server.workers = 1", "server.max_requests = 5",
                                "tree.raw = '', 'rawapp:app'", args=("-p", "site.pid")))
    port = tcp_port(ready_addresses(child))
    (first,) = wait_for_workers(tmp_path, 1)
    pids: list[int] = []

    def replaced() -> bool:
        status, body, _headers = get(port, "/", timeout=30)
        assert status == 200, (status, body)  # no request fails across the recycle
        pids.append(int(body.split()[0]))
        return pids[-1] != first

    wait_until(replaced, 60, "a new worker to answer")
    served = child.wait_for_output(rf"Replacing worker {first}: it served (\d+) requests")
    assert int(served.group(1)) >= 5  # one may come in while the master is told
    assert pids.count(first) >= 5
    wait_for_workers(tmp_path, 1, not_among={first})
    stop(child)


HANGING = '''\
import asyncio
import os
import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":  # a blocking call: every request of the worker waits
        print(f"blocking in {os.getpid()}", flush=True)
        time.sleep(3600)
    if scope["path"] == "/await":  # holds nothing up
        await asyncio.sleep(3600)
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''


def test_a_blocked_event_loop_gets_its_worker_replaced(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    (tmp_path / "hanging.py").write_text(HANGING)
    child = recorder.watch(site(spawn, tmp_path, "server.workers = 2",
                                "server.worker_timeout = 4", "server.shutdown_timeout = 1",
                                "tree.app = '', 'hanging:app'", args=("-p", "site.pid")))
    port = tcp_port(ready_addresses(child))
    before = wait_for_workers(tmp_path, 2)
    outcome: list[Any] = []

    def request(path: str) -> None:
        try:
            outcome.append(get(port, path, timeout=60))
        except OSError as error:
            outcome.append(error)

    waiting = [threading.Thread(target=request, args=("/await",), daemon=True)
               for _ in range(2)]
    for thread in waiting:
        thread.start()  # requests that await: no worker is retired for them
    blocked = threading.Thread(target=request, args=("/block",), daemon=True)
    blocked.start()
    hung = int(child.wait_for_output(r"blocking in (\d+)").group(1))
    assert hung in before
    child.wait_for_output(rf"Replacing worker {hung}: a request has been running for \d+ s "
                          r"\(server.worker_timeout = 4\)", timeout=30)
    assert get(port, "/")[0] == 200  # the site answers meanwhile
    wait_for_workers(tmp_path, 2, not_among={hung})
    # Its stop is bounded: it exits by itself within its grace, or the master kills it.
    child.wait_for_output(rf"Worker {hung} exited \((exit status \d+|killed by SIGKILL)\)",
                          timeout=30)
    blocked.join(60)
    assert len(outcome) >= 1 and isinstance(outcome[0], OSError)  # the blocked one was cut
    replaced = re.findall(r"Replacing worker (\d+): a request", child.output)
    assert replaced == [str(hung)]  # the other worker, with a request awaiting, stayed
    stop(child)


EDITABLE = '''\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{text}"}})
'''


def serves(port: int, text: bytes) -> bool:
    try:
        return get(port, "/")[1] == text
    except OSError:
        return False


def test_autoreload_serves_an_edited_asgi_app_and_survives_a_syntax_error(
        spawn: Any, tmp_path: Path) -> None:
    module = tmp_path / "editable.py"
    module.write_text(EDITABLE.format(text="first"))
    (tmp_path / "site.conf").write_text("[global]\nserver.socket_port = 0\n"
                                        "tree.app = '', 'editable:app'\n")
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf", "-P", str(tmp_path)))
    port = tcp_port(ready_addresses(child))
    assert get(port, "/")[1] == b"first"
    module.write_text(EDITABLE.format(text="edited"))
    wait_until(lambda: serves(port, b"edited"), 30, "the edit to be served")
    module.write_text("async def app(scope, receive, send:\n")  # a syntax error
    child.wait_for_output(r"syntax error in .*editable\.py, line 1")
    assert get(port, "/")[1] == b"edited"  # the running code keeps serving
    module.write_text(EDITABLE.format(text="fixed"))
    wait_until(lambda: serves(port, b"fixed"), 30, "the fix to be served")
    restarts = re.findall(r"Restarting because .*editable\.py changed", child.output)
    assert len(restarts) == 2
    stop(child)
