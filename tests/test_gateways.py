"""FastCGI, SCGI and CGI servers on the bus, each answering a real client."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from sitebus.bus import Bus
from sitebus.servers.gateways import path_info_from_request_uri
from sitebus.servers.server import Server
from tests.httpclients import hello_app, refuses
from tests.processes import python

pytestmark = [
    pytest.mark.timeout(60),
    # flup 1.0.3 calls Thread.setDaemon and Condition.notifyAll (deprecated since 3.10).
    pytest.mark.filterwarnings("ignore:setDaemon\\(\\) is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning"),
]

CGI_ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/x",
    "QUERY_STRING": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "GATEWAY_INTERFACE": "CGI/1.1",
}


def server_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.daemon}


@pytest.mark.skipif(shutil.which("cgi-fcgi") is None, reason="needs cgi-fcgi (libfcgi-bin)")
def test_fastcgi_answers_cgi_fcgi(bus: Bus, spawn: Any) -> None:
    pytest.importorskip("flup")
    before = server_threads()
    server = Server(bus, "fcgi", type="fastcgi", socket_port=0, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    assert server.description.startswith("fcgi://127.0.0.1:")
    host, port = server.bound_addr
    client = spawn(["cgi-fcgi", "-bind", "-connect", f"{host}:{port}"], env=CGI_ENVIRON,
                   notify=False)
    assert client.wait() == 0
    assert "Status: 200 OK" in client.output
    assert client.output.endswith("Hello http /x")
    bus.exit()
    assert refuses(server.bound_addr)
    assert server_threads() == before


@pytest.mark.parametrize(("environ", "path_info"), [
    ({"REQUEST_URI": "/caf%C3%A9/a%20b?x=%41"}, "/caf\u00c3\u00a9/a b"),
    ({"REQUEST_URI": "/app/page", "SCRIPT_NAME": "/app"}, "/page"),
    ({"REQUEST_URI": "/other/page", "SCRIPT_NAME": "/app"}, "/other/page"),
    ({"REQUEST_URI": "/a%2Fb/c%2fd"}, "/a%2Fb/c%2Fd"),  # as cheroot: one segment stays one
    ({"REQUEST_URI": "/x", "PATH_INFO": "/given"}, None),  # the front's own is kept
    ({"SCRIPT_NAME": ""}, None),  # nothing to take it from
])
def test_path_info_from_request_uri_decodes_what_the_front_left_encoded(
        environ: dict[str, str], path_info: str | None) -> None:
    assert path_info_from_request_uri(environ) == path_info


def scgi_request(address: str, path: str) -> bytes:
    headers = {"CONTENT_LENGTH": "0", "SCGI": "1", "REQUEST_METHOD": "GET", "PATH_INFO": path,
               "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    block = b"".join(f"{k}\0{v}\0".encode() for k, v in headers.items())
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(15)
        sock.connect(address)
        sock.sendall(str(len(block)).encode() + b":" + block + b",")
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def test_scgi_on_a_unix_socket_answers(bus: Bus, tmp_path: Path) -> None:
    pytest.importorskip("flup")
    path = str(tmp_path / "scgi.sock")
    server = Server(bus, "scgi", type="scgi", socket_file=path, wsgi_app=hello_app)
    server.subscribe()
    bus.start()
    response = scgi_request(path, "/y")
    assert response.startswith(b"Status: 200 OK\r\n")
    assert response.endswith(b"\r\n\r\nHello http /y")
    bus.exit()
    assert not Path(path).exists()


CGI_CHILD = """
import sys
from sitebus.bus import Bus
from sitebus.servers.gateways import path_info_from_request_uri
from sitebus.errors import exit_code_of
from sitebus.site.logs import log_to_screen
from sitebus.servers.server import Server
from tests.httpclients import hello_app

log_to_screen(stream=open("bus.log", "w"))  # stdout carries the CGI response alone
bus = Bus()
Server(bus, type="cgi", wsgi_app=hello_app).subscribe()
try:
    bus.start()
except Exception as error:
    sys.exit(exit_code_of(error))
bus.block()
"""


def test_cgi_answers_one_request_then_the_process_exits(
    spawn: Any, write_script: Any, tmp_path: Path
) -> None:
    script = write_script("cgi_child.py", CGI_CHILD)
    child = spawn(python(str(script)), env=CGI_ENVIRON, notify=False)
    assert child.wait() == 0
    assert child.log_path.read_bytes() == (
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
        b"Hello http /x"
    )
    log = (tmp_path / "bus.log").read_text()
    assert "HTTP Server standard input and output ended: shutting down" in log
    assert "Bus EXITED" in log
