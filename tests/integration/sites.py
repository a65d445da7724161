"""Helpers for tests that run `sitebus` itself: write a site, start it, talk to it."""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.processes import DEFAULT_TIMEOUT, Child, child_env, python

APPS = '''\
"""Apps of three frameworks and a bare WSGI callable, for one site."""


def hello(environ, start_response):
    body = ("bare wsgi " + environ["SCRIPT_NAME"] + " " + environ["PATH_INFO"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def run_site(spawn: Any, workdir: Path, config: str, *args: str, name: str = "site",
             env: dict[str, str] | None = None) -> Child:
    """Write ``site.conf`` (and apps.py) in ``workdir`` and start ``sitebus run`` on it."""
    (workdir / "apps.py").write_text(APPS)
    (workdir / "site.conf").write_text(config)
    return spawn(python("-m", "sitebus", "run", "-c", "site.conf", *args), name=name, env=env)


def ready_addresses(child: Child, after: int = 0) -> list[str]:
    """Wait for READY=1 and return the addresses its STATUS says the site listens on."""
    message = child.notify.wait_for("READY", "1", after=after)  # type: ignore[union-attr]
    status = message.get("STATUS", "")
    found = re.search(r"listening on (.*)$", status)
    return found.group(1).split(", ") if found else []


def sitebus(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``sitebus ARGS`` in ``cwd`` to its end; return its exit code and output."""
    return subprocess.run(python("-m", "sitebus", *args), cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def reloaded(child: Child, signum: int, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Send ``signum``; wait for RELOADING=1 (up to ``timeout`` s), then for the READY=1 after
    it; return the addresses served then."""
    assert child.notify is not None
    seen = len(child.notify.messages)
    child.send_signal(signum)
    reloading = child.notify.wait_for("RELOADING", "1", after=seen, timeout=timeout)
    after = next(i for i, m in enumerate(child.notify.messages) if m is reloading) + 1
    return ready_addresses(child, after=after)


def tcp_port(addresses: list[str]) -> int:
    """Return the port of the first IPv4 loopback address in ``addresses``."""
    for address in addresses:
        if address.startswith("127.0.0.1:"):
            return int(address.rsplit(":", 1)[1])
    raise AssertionError(f"no 127.0.0.1 listener in {addresses}")


def get(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 10,
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """GET ``path`` over a new connection; return status, body and headers."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection over a UNIX socket file."""

    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path_to_socket = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path_to_socket)


def get_unix(path_to_socket: str, path: str = "/") -> tuple[int, bytes]:
    connection = UnixHTTPConnection(path_to_socket)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class SteadyClient(threading.Thread):
    """Sends GET ``path`` on a new connection every few milliseconds until finished.

    A 200's body is kept in ``answers``; any other status, and every connection error, goes to
    ``failures``. Sites whose answers start with the serving process's pid (the workers' and
    the cluster's test apps) can be asked which process served how many (``served``).
    """

    def __init__(self, port: int, path: str = "/",
                 fetch: Callable[[int, str], tuple[int, bytes, Any]] = get) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.fetch = fetch
        self.stop = threading.Event()
        self.answers: list[bytes] = []
        self.failures: list[str] = []
        self._changed = threading.Condition()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body, _headers = self.fetch(self.port, self.path)
                outcome = None if status == 200 else f"{status} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as error:
                # A worker killed while answering cuts its response short (IncompleteRead).
                body, outcome = b"", repr(error)
            self._record(body, outcome)
            self.stop.wait(0.003)

    def _record(self, body: bytes, failure: str | None) -> None:
        """Keep an answer's body, or the failure; wake those waiting for either."""
        with self._changed:
            if failure is None:
                self.answers.append(body)
            else:
                self.failures.append(failure)
            self._changed.notify_all()

    @property
    def pids(self) -> list[int]:
        """The pid that served each answer, in order."""
        return [int(body.split()[0]) for body in list(self.answers)]

    @property
    def served(self) -> Counter[int]:
        """How many answers each pid served."""
        return Counter(self.pids)

    def wait_for(self, predicate: Callable[[SteadyClient], bool], what: str,
                 timeout: float = 60) -> None:
        """Wait until ``predicate(self)`` holds, as answers come in."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self) or not self.is_alive(),
                                          timeout) or not predicate(self):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; served "
                                     f"{len(self.answers)}, failures {self.failures[-5:]}")

    def more_answers(self, n: int, what: str = "more answers") -> None:
        """Wait until ``n`` more answers have come."""
        target = len(self.answers) + n
        self.wait_for(lambda client: len(client.answers) >= target, what)

    def more_from(self, pid: int, n: int, what: str) -> None:
        """Wait until ``pid`` has served ``n`` more answers."""
        target = self.served[pid] + n
        self.wait_for(lambda client: client.served[pid] >= target, what)

    def finish(self) -> None:
        """Stop sending and wait for the request in flight."""
        self.stop.set()
        self.join(60)


class PersistentClient(SteadyClient):
    """A SteadyClient that keeps one connection open, as browsers, wrk and proxies do.

    It reuses its ``http.client`` connection for request after request until the server
    closes it (a response with ``Connection: close``), then opens a new one. A reset, a
    ``RemoteDisconnected`` (the server closed a kept-alive connection under a request), a
    timeout or a 5xx is a failure. ``connections`` counts the connections opened. Sends back
    to back unless ``pause`` is set.
    """

    def __init__(self, port: int, path: str = "/", host: str = "127.0.0.1",
                 pause: float = 0.0, timeout: float = 10, method: str = "GET",
                 body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(port, path)
        self.host = host
        self.method = method
        self.body = body
        self.headers = dict(headers or {})
        if body is not None:
            self.headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        self.pause = pause
        self.timeout = timeout
        self.connections = 0
        self.closes_announced = 0
        self._connection: http.client.HTTPConnection | None = None

    def _fetch(self, port: int, path: str) -> tuple[int, bytes, dict[str, str]]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, port, timeout=self.timeout)
            self.connections += 1
        try:
            self._connection.request(self.method, path, self.body, self.headers)
            response = self._connection.getresponse()
            body = response.read()
        except BaseException:
            self._connection.close()
            self._connection = None
            raise
        if response.will_close:
            self.closes_announced += 1
            self._connection.close()
            self._connection = None
        return response.status, body, dict(response.getheaders())

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    status, body, _headers = self._fetch(self.port, self.path)
                    outcome = None if status == 200 else f"{status} {body[:200]!r}"
                except (OSError, http.client.HTTPException) as error:
                    body, outcome = b"", repr(error)
                self._record(body, outcome)
                if self.pause:
                    self.stop.wait(self.pause)
        finally:
            if self._connection is not None:
                self._connection.close()


class ClientCrowd:
    """Several PersistentClients at once, reported together."""

    def __init__(self, port: int, path: str = "/", clients: int = 8) -> None:
        self.clients = [PersistentClient(port, path) for _ in range(clients)]

    def start(self) -> None:
        for client in self.clients:
            client.start()

    def more_answers(self, n: int, what: str = "more answers") -> None:
        """Wait until every client has ``n`` more answers."""
        targets = [len(client.answers) + n for client in self.clients]
        for client, target in zip(self.clients, targets, strict=True):
            client.wait_for(lambda c, target=target: len(c.answers) >= target, what)

    def finish(self) -> None:
        for client in self.clients:
            client.stop.set()
        for client in self.clients:
            client.join(60)

    @property
    def failures(self) -> list[str]:
        return [failure for client in self.clients for failure in client.failures]

    @property
    def answered(self) -> int:
        return sum(len(client.answers) for client in self.clients)

    @property
    def connections(self) -> int:
        return sum(client.connections for client in self.clients)
