"""Servers in real processes: listeners, SIGTERM, a port in use, stale and live socket files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.httpclients import fetch, refuses
from tests.processes import Child, python

CHILD = Path(__file__).with_name("server_child.py")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def start_site(spawn: Any, tmp_path: Path) -> Any:
    """Start server_child.py with these server settings; return the Child."""
    shutil.copy(CHILD, tmp_path / "server_child.py")

    def _start(*specs: dict[str, Any], name: str | None = None) -> Child:
        return spawn(python(str(tmp_path / "server_child.py"), json.dumps(list(specs))),
                     name=name)

    return _start


def addresses(child: Child) -> list[Any]:
    message = child.notify.wait_for("READY", "1")
    return [a if isinstance(a, str) else tuple(a) for a in json.loads(message["ADDRESSES"])]


def test_tcp_ipv6_and_unix_servers_serve_until_sigterm(start_site: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    child = start_site({"socket_port": 0}, {"name": "v6", "socket_host": "::1", "socket_port": 0},
                       {"name": "unix", "socket_file": path})
    v4, v6, unix = addresses(child)
    for address in (v4, v6, unix):
        assert fetch(address, "/p")[:2] == (200, b"Hello http /p")
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    out = child.output
    for description in (f"http://127.0.0.1:{v4[1]}", f"http://[::1]:{v6[1]}",
                        f"socket file: {path}"):
        assert f"Serving on {description}" in out
        assert f"HTTP Server {description} shut down" in out
    assert not os.path.exists(path)


def test_a_port_in_use_exits_69_with_nothing_left_running(start_site: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        child = start_site({"socket_port": 0}, {"name": "taken", "socket_port": port})
        assert child.wait() == 69
    out = child.output
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in out
    assert "threads=['MainThread']" in out  # no server thread, no worker left behind
    assert "sockets=0" in out  # the first server's socket was closed too
    assert "Bus EXITED" in out


def test_the_socket_file_of_a_killed_process_is_replaced(start_site: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    first = start_site({"socket_file": path}, name="first")
    addresses(first)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert os.path.exists(path) and refuses(path)  # stale: the file is there, nobody listens
    second = start_site({"socket_file": path}, name="second")
    assert addresses(second) == [path]
    assert f"Replaced the stale socket file {path}" in second.output
    assert fetch(path)[:2] == (200, b"Hello http /")
    second.send_signal(signal.SIGTERM)
    assert second.wait() == 0
    assert not os.path.exists(path)


def test_a_live_socket_file_is_an_error_naming_the_path(start_site: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "site.sock")
    first = start_site({"socket_file": path}, name="first")
    addresses(first)
    second = start_site({"socket_file": path}, name="second")
    assert second.wait() == 69
    assert f"cannot listen on {path}: the socket file is in use" in second.output
    assert fetch(path)[:2] == (200, b"Hello http /")  # the first process still serves
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    assert not os.path.exists(path)
