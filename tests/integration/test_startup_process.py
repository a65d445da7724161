"""One start-up path: quickstart() and engine.start() get what `sitebus run` gets.

A quickstart app reloads, restarts (SIGUSR2, SIGHUP without a terminal) and serves the socket
systemd-socket-activate passes; the engine started beside another main loop stops on
SIGTERM; ``engine.SIGTERM = cleanup`` runs cleanup and exits.
"""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration import sites
from tests.integration.frontends import free_port
from tests.integration.sites import ClientCrowd
from tests.processes import Child, python, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

# The children run without a NOTIFY_SOCKET (notify=False): the test would not read one, and
# a full datagram queue blocks the site's notifications.

QUICKSTART_APP = '''\
import services.web as cherrypy

VERSION = "v{version}"


class Root:
    @cherrypy.expose
    def index(self):
        return VERSION


cherrypy.config.update({{"server.socket_port": {port}, "checker.on": False}})
cherrypy.quickstart(Root())
'''

BESIDE_ANOTHER_LOOP = '''\
import threading

import services.web as cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return "beside"


cherrypy.config.update({"server.socket_port": 0, "engine.autoreload.on": False,
                        "checker.on": False})
cherrypy.tree.mount(Root())
done = threading.Event()
cherrypy.engine.subscribe("exit", done.set)
cherrypy.engine.start()
print("main loop of its own", flush=True)
done.wait()
print("main loop ended", flush=True)
'''

SIGTERM_CLEANUP = '''\
import services.web as cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return "hello"


def cleanup():
    print("cleanup ran", flush=True)


cherrypy.config.update({"server.socket_port": 0, "engine.autoreload.on": False,
                        "checker.on": False, "engine.SIGTERM": cleanup})
cherrypy.quickstart(Root())
'''


def serving_port(child: Child, after: int = 0) -> int:
    """Wait for the n-th "Bus STARTED" (n = after + 1) and return the port it serves on."""
    wait_until(lambda: child.output.count("Bus STARTED") > after or child.popen.poll(), 30,
               f"start number {after + 1}")
    assert child.popen.poll() is None, child.output
    return int(re.findall(r"Serving on http://127\.0\.0\.1:(\d+)", child.output)[-1])


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    status, body, _headers = sites.get(port, path)
    return status, body


@pytest.mark.timeout(180)
def test_quickstart_reloads_three_times_under_keep_alive_clients(
    spawn: Any, tmp_path: Path,
) -> None:
    script = tmp_path / "app.py"
    script.write_text(QUICKSTART_APP.format(version=0, port=0))
    child = spawn(python(str(script)), notify=False)
    port = serving_port(child)
    crowd = ClientCrowd(port, "/", clients=8)
    crowd.start()
    try:
        for version in (1, 2, 3):
            starts = child.output.count("Bus STARTED")
            script.write_text(QUICKSTART_APP.format(version=version, port=0))
            assert serving_port(child, after=starts) == port  # the same socket, re-executed
            wanted = f"v{version}".encode()
            wait_until(lambda w=wanted: all(c.answers and c.answers[-1] == w
                                            for c in crowd.clients),
                       30, f"every client to get {wanted!r}")
            assert child.popen.poll() is None
    finally:
        crowd.finish()
    assert child.output.count("Re-spawning") == 3
    assert "already in use" not in child.output
    answered, failures = crowd.answered, crowd.failures
    print(f"keep-alive: {answered} answered, {len(failures)} failed: {sorted(set(failures))}")
    assert answered > 100
    assert failures == []  # the restart hands kept-alive connections over (sitebus.servers.drain)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGHUP], ids=["SIGUSR2", "SIGHUP"])
def test_quickstart_restarts_in_place_on_a_signal(spawn: Any, tmp_path: Path,
                                                  signum: int) -> None:
    script = tmp_path / "app.py"
    script.write_text(QUICKSTART_APP.format(version=1, port=0))
    child = spawn(python(str(script)), notify=False)  # stdin /dev/null: no terminal
    port = serving_port(child)
    for restart in (1, 2):
        child.send_signal(signum)
        assert serving_port(child, after=restart) == port
        assert get(port) == (200, b"v1")
    assert child.output.count("Re-spawning") == 2
    assert child.popen.poll() is None  # the same process all along
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
def test_quickstart_serves_the_socket_systemd_passes(spawn: Any, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    configured = free_port()
    script.write_text(QUICKSTART_APP.format(version=1, port=configured))
    passed = free_port()
    child = spawn(["systemd-socket-activate", "-E", "PYTHONPATH", "-E", "PYTHONUNBUFFERED",
                   "-l", f"127.0.0.1:{passed}", *python(str(script))], notify=False)
    child.wait_for_output(rf"Listening on 127\.0\.0\.1:{passed}")
    assert get(passed) == (200, b"v1")  # the first connection makes it start the app
    assert "on the socket passed as 'unknown' (fd 3)" in child.output
    assert f"Serving on http://127.0.0.1:{passed}" in child.output
    with pytest.raises(ConnectionRefusedError):  # its configured port was never bound
        get(configured)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0


def test_the_engine_beside_another_main_loop_stops_on_sigterm(spawn: Any,
                                                              tmp_path: Path) -> None:
    script = tmp_path / "beside.py"
    script.write_text(BESIDE_ANOTHER_LOOP)
    child = spawn(python(str(script)), notify=False)
    port = serving_port(child)
    child.wait_for_output("main loop of its own")
    assert get(port) == (200, b"beside")
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert "Caught signal SIGTERM." in child.output
    assert "main loop ended" in child.output and "Bus EXITED" in child.output


def test_engine_sigterm_in_config_adds_a_listener(spawn: Any, tmp_path: Path) -> None:
    script = tmp_path / "cleanup.py"
    script.write_text(SIGTERM_CLEANUP)
    child = spawn(python(str(script)), notify=False)
    serving_port(child)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert "cleanup ran" in child.output and "Bus EXITED" in child.output
