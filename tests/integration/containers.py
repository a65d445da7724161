"""Helpers for tests that run a site as PID 1 of a new PID namespace, as a container does.

``unshare --pid --fork --mount-proc --kill-child`` (util-linux; root) forks the site as PID 1 of
a namespace of its own, with a /proc of that namespace, and kills it with SIGKILL if unshare
itself dies. unshare passes no signal on, so tests signal PID 1 by its host pid (from outside,
as ``docker stop`` does: PID 1 gets only the signals it has handlers for, from inside or
out). Pids the site reports (status file, answers) are the namespace's; ``host_pid`` maps them.
Never run ``sitebus stop``/``reload`` with the site's PID file from outside: it holds ``1``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Child, python, wait_until

UNSHARE = shutil.which("unshare")
UNSHARE_ARGV = [UNSHARE or "unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]

ORPHAN_APP = '''\
"""Answers with its pid. /orphan shells out and leaves a short-lived background child behind;
/linger leaves a child that sleeps 30 s and answers its pid;
/exit?N answers the exit status of ``sh -c 'exit N'``; /late answers that of a child it waits
for half a second after it exited; /slow?S sleeps S seconds."""
import os
import subprocess
import time


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/orphan":
        subprocess.run(["sh", "-c", "sleep 0.01 &"], check=True)
    elif path == "/linger":
        body = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                              capture_output=True, text=True, check=True).stdout.strip()
    elif path == "/exit":
        body = str(subprocess.run(["sh", "-c", f"exit {int(query)}"]).returncode)
    elif path == "/late":
        child = subprocess.Popen(["sh", "-c", "exit 3"])
        time.sleep(0.5)
        body = str(child.wait())
    elif path == "/slow":
        print(f"in handler {os.getpid()}", flush=True)
        time.sleep(float(query or 0))
    if path not in ("/exit", "/late", "/linger"):
        body = f"{os.getpid()} 1"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
'''


def can_unshare() -> bool:
    """Return True when this machine can run a process as PID 1 of a new PID namespace."""
    if UNSHARE is None or os.geteuid() != 0:
        return False
    try:
        return subprocess.run([*UNSHARE_ARGV, "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_pid_namespace = pytest.mark.skipif(not can_unshare(),
                                         reason="needs root and unshare --pid (util-linux)")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def children_of(pid: int) -> list[int]:
    """The host pids of ``pid``'s children (live or zombie)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(_stat_fields(int(name))[1]) == pid:
                    found.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def state_of(pid: int) -> str:
    try:
        return _stat_fields(pid)[0]
    except (OSError, IndexError):
        return "gone"


def ns_pid(pid: int) -> int:
    """The pid that host pid ``pid`` has in its own (innermost) namespace."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


class Container:
    """``sitebus run`` as PID 1 of a PID namespace: the unshare child and PID 1's host pid."""

    def __init__(self, child: Child) -> None:
        self.child = child
        found = wait_until(lambda: children_of(child.pid), 30, "unshare to fork PID 1")
        self.init: int = found[0]  # type: ignore[index]
        assert ns_pid(self.init) == 1

    def zombies(self) -> list[int]:
        """The zombies waiting under PID 1 (its reaped orphans are gone from /proc)."""
        return [pid for pid in children_of(self.init) if state_of(pid) == "Z"]

    def host_pid(self, pid_in_namespace: int) -> int:
        for pid in children_of(self.init):
            try:
                if ns_pid(pid) == pid_in_namespace:
                    return pid
            except (OSError, AssertionError):
                pass
        raise AssertionError(f"no process {pid_in_namespace} under PID 1")

    def signal(self, signum: int) -> None:
        os.kill(self.init, signum)

    def wait(self, timeout: float = 60) -> int:
        return self.child.wait(timeout)

    def kill(self) -> None:
        """SIGKILL unshare: the kernel kills PID 1 (--kill-child), then the whole namespace."""
        if self.child.popen.poll() is None:
            self.child.popen.kill()
            self.child.popen.wait(30)


def write_orphan_app(workdir: Path) -> None:
    (workdir / "orphan_app.py").write_text(ORPHAN_APP)


def run_as_pid1(spawn: Any, workdir: Path, config: str, *args: str) -> Container:
    """Write ``orphan_app.py`` and ``site.conf``; run ``sitebus run`` as PID 1 on them."""
    write_orphan_app(workdir)
    (workdir / "site.conf").write_text(config)
    argv = [*UNSHARE_ARGV, *python("-m", "sitebus", "run", "-c", "site.conf", *args)]
    return Container(spawn(argv, name="pid1"))


def site_config(*lines: str, workers: int = 2) -> str:
    """A site of ``workers`` workers serving the orphan app on an ephemeral port."""
    return "\n".join(["[global]", "server.socket_port = 0", f"server.workers = {workers}",
                      "engine.autoreload.on = False", "tree.app = '', 'orphan_app:app'",
                      *lines]) + "\n"


class KeepAlive:
    """A ``fetch`` for SteadyClient that sends every request on one keep-alive connection.

    As browsers and proxies do (RFC 9110, 9.2.2), a GET that finds its kept-alive connection
    closed before any byte of a response came is sent again, once, on a new connection:
    a server may close an idle connection at any moment (a retiring worker does), and a
    request sent at that instant is lost in flight. Those retries are counted in ``retried``;
    any other error is the client's failure (SteadyClient counts it).
    """

    def __init__(self, timeout: float = 30) -> None:
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None
        self.connections = 0
        self.retried = 0
        self._reused = False
        self._served = 0  # answers on the current connection

    def __call__(self, port: int, path: str) -> tuple[int, bytes, Any]:
        try:
            return self._once(port, path)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not self._reused:
                raise
            self.retried += 1
            return self._once(port, path)

    def _once(self, port: int, path: str) -> tuple[int, bytes, Any]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            self.connections += 1
            self._served = 0
        self._reused = self._served > 0
        try:
            self.connection.request("GET", path)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self._served += 1
        if response.will_close:
            self.close()
        return response.status, body, response

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def fetch_many(port: int, path: str, count: int, connections: int,
               fetch: Callable[[int, str], tuple[int, bytes, Any]] | None = None) -> list[int]:
    """GET ``path`` ``count`` times over ``connections`` keep-alive connections; the statuses."""
    import threading

    statuses: list[int] = []
    lock = threading.Lock()

    def one_connection(share: int) -> None:
        client = KeepAlive()
        try:
            for _ in range(share):
                try:
                    status = (fetch or client)(port, path)[0]
                except OSError:
                    status = 0
                with lock:
                    statuses.append(status)
        finally:
            client.close()

    shares = [count // connections + (1 if n < count % connections else 0)
              for n in range(connections)]
    threads = [threading.Thread(target=one_connection, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return statuses
