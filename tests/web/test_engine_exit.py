"""A site stopped from inside a request, in a real process, as the reference's test_states
does it: ``engine.exit()`` in a handler answers that request and ends the process; a
KeyboardInterrupt in a handler ends it too; and the test helper's daemonized CPProcess is
joined after its PID file is gone."""

from __future__ import annotations

import http.client
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, python, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

APP = '''
import os
import services.web as cherrypy

class Root:
    @cherrypy.expose
    def index(self):
        return "hello"

    @cherrypy.expose
    def pid(self):
        return str(os.getpid())

    @cherrypy.expose
    def exit(self):
        cherrypy.engine.wait(state=cherrypy.engine.states.STARTED)
        cherrypy.engine.exit()
        return "bye"

    @cherrypy.expose
    def ctrlc(self):
        raise KeyboardInterrupt()

cherrypy.tree.mount(Root(), "/")
'''

SCRIPT = '''
import services.web as cherrypy
import exitapp
cherrypy.config.update({"server.socket_port": 0, "checker.on": False,
                        "server.shutdown_timeout": 30})
cherrypy.engine.start()
cherrypy.engine.block()
'''


def get(port: int, path: str) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Connection")
    finally:
        conn.close()


def start_site(spawn: Any, write_script: Any) -> tuple[Any, int]:
    write_script("exitapp.py", APP)
    child = spawn(python(str(write_script("site.py", SCRIPT))))
    port = int(child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", 30).group(1))
    child.wait_for_output(r"Bus STARTED", 30)
    return child, port


def test_engine_exit_in_a_handler_answers_that_request_and_ends_the_process(
        spawn: Any, write_script: Any) -> None:
    child, port = start_site(spawn, write_script)
    assert get(port, "/")[:2] == (200, b"hello")
    # shutdown_timeout is 30 s: an answer in time means the stop did not wait for it.
    assert get(port, "/exit") == (200, b"bye", "close")
    assert child.wait(10) == 0
    assert "Bus EXITED" in child.output
    assert "Cut a request" not in child.output


def test_a_keyboard_interrupt_in_a_handler_ends_the_process_without_an_answer(
        spawn: Any, write_script: Any) -> None:
    child, port = start_site(spawn, write_script)
    with pytest.raises(http.client.RemoteDisconnected):
        get(port, "/ctrlc")
    assert child.wait(10) == 0
    assert "Bus EXITED" in child.output


def test_a_daemonized_cpprocess_is_joined_after_its_pid_file_is_gone(
        write_script: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.web.test import helper

    write_script("exitapp.py", APP)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    process = helper.CPProcess(wait=True, daemonize=True, socket_host="127.0.0.1",
                               socket_port=_free_port())
    process.write_conf()
    process.start(imports="exitapp")
    daemon = process.get_pid()
    try:
        assert process.exit_code == 0
        status, body, _ = get(process.port, "/pid")
        assert (status, int(body)) == (200, daemon)
        assert get(process.port, "/exit")[:2] == (200, b"bye")
        wait_until(lambda: not os.path.exists(process.pid_file), 15, "the PID file to go")
        process.join()  # the daemon's pid was kept from the start: no PID file needed
        assert process.get_pid() == daemon
    finally:
        try:
            os.kill(daemon, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    """An ephemeral port nobody listens on now (CPProcess takes a port, not a socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
