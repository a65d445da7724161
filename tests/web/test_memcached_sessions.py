"""MemcachedSession against a real memcached that the tests start (127.0.0.1, an ephemeral
port reported through MEMCACHED_PORT_FILENAME, and a UNIX socket in a temporary directory)."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.web.lib import locking, sessioncleanup, sessions
from services.web.lib.memcachedsession import MemcachedSession, memcached_expiry, parse_servers
from sitebus.errors import ConfigError
from tests.processes import wait_until
from tests.web.sessions_helpers import Counter, hammer, session_cookie

MEMCACHED = shutil.which("memcached")
pytest.importorskip("pymemcache", reason="MemcachedSession needs pymemcache "
                                         "(pip install 'sitebus[memcached]')")
pytestmark = pytest.mark.skipif(MEMCACHED is None, reason="the memcached binary is not "
                                "installed (apt-get install memcached)")


class Memcached:
    """A memcached process of our own, reaped at teardown."""

    def __init__(self, workdir: Path, socket_path: Path | None = None) -> None:
        self.port_file = workdir / "ports"
        argv = [str(MEMCACHED), "-U", "0", "-m", "16", "-t", "2"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        if socket_path is None:
            argv += ["-l", "127.0.0.1", "-p", "-1"]
        else:
            argv += ["-s", str(socket_path), "-a", "0700"]
        self.log = open(workdir / "memcached.log", "wb")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                      env={**os.environ,
                                           "MEMCACHED_PORT_FILENAME": str(self.port_file)})
        if socket_path is None:
            self.address = f"127.0.0.1:{self._port()}"
        else:
            wait_until(lambda: self._alive() and socket_path.exists(), 30,
                       "memcached's socket")
            self.address = str(socket_path)

    def _alive(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"memcached exited with {self.popen.returncode}")
        return True

    def _port(self) -> int:
        def reported() -> str | None:
            self._alive()
            if not self.port_file.exists():
                return None
            text = self.port_file.read_text()
            return text if "TCP INET:" in text else None

        text = wait_until(reported, 30, "memcached's port file")
        return int(str(text).split("TCP INET:")[1].split()[0])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def memcached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memcached]:
    server = Memcached(tmp_path_factory.mktemp("memcached"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    yield
    sessions.stop_cleanup()


def mount(web: Any, memcached: Memcached, **extra: Any) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": MemcachedSession,
                                    "tools.sessions.servers": [memcached.address], **extra}})


def test_sessions_live_in_memcached(web: Any, memcached: Memcached) -> None:
    mount(web, memcached)
    web.getPage("/")
    web.assertBody("1")
    sid = session_cookie(web)
    web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
    web.assertBody("2")
    client = MemcachedSession.client_for([memcached.address])
    assert client.get(sid) is not None
    assert client.get(f"{sid}.lock") is None  # released
    assert not any(key[0] is MemcachedSession for key in sessioncleanup._cleaners
                   if isinstance(key, tuple))  # memcached expires sessions itself


def test_forged_and_unknown_ids_are_replaced(web: Any, memcached: Memcached) -> None:
    mount(web, memcached)
    for forged in ("0" * 40, "has space", "x" * 300, "ctl\x01"):
        web.getPage("/", headers=[("Cookie", f'session_id="{forged}"')])
        web.assertStatus(200)
        web.assertBody("1")
        assert session_cookie(web) not in (forged, "")


def test_regenerate_and_delete(web: Any, memcached: Memcached) -> None:
    mount(web, memcached)
    web.getPage("/")
    old = session_cookie(web)
    web.getPage("/regen", headers=[("Cookie", f"session_id={old}")])
    new = session_cookie(web)
    assert new != old
    client = MemcachedSession.client_for([memcached.address])
    assert client.get(old) is None and client.get(new) is not None


def test_concurrent_requests_are_serialised(web: Any, memcached: Memcached) -> None:
    mount(web, memcached)
    web.getPage("/")
    cookie = f"session_id={session_cookie(web)}"
    results = hammer(web.PORT, [(web.PORT, "/slow")] * 30, cookie)
    assert sorted(int(r) for r in results) == list(range(2, 32))


def test_the_lock_holds_across_clients_and_times_out(memcached: Memcached) -> None:
    first = MemcachedSession(None, servers=[memcached.address], lock_timeout=0.2)
    first["x"] = 1
    first.save()
    first.acquire_lock()
    try:
        # Another process would have other in-process locks: bypass ours to test memcached's.
        second = MemcachedSession(first.id, servers=[memcached.address], lock_timeout=0.2)
        second.locks = sessions.KeyedLocks()
        with pytest.raises(locking.LockTimeout):
            second.acquire_lock()
        assert not second.locked
    finally:
        first.release_lock()
    second.acquire_lock()
    assert second.locked
    second.release_lock()


def test_a_released_lock_wakes_a_waiter(memcached: Memcached) -> None:
    first = MemcachedSession(None, servers=[memcached.address])
    first["x"] = 1
    first.save()
    first.acquire_lock()
    waiter = MemcachedSession(first.id, servers=[memcached.address], lock_timeout=30)
    waiter.locks = sessions.KeyedLocks()
    got: list[bool] = []
    def wait() -> None:
        waiter.acquire_lock()
        got.append(waiter.locked)
        waiter.release_lock()

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.3)
    assert waiter.id == first.id and got == []
    first.release_lock()
    thread.join(30)
    assert got == [True]


def test_a_unix_socket_server(web: Any, tmp_path: Path) -> None:
    server = Memcached(tmp_path, tmp_path / "mc.sock")
    try:
        mount(web, server)
        web.getPage("/")
        sid = session_cookie(web)
        web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
        web.assertBody("2")
    finally:
        server.stop()


def test_an_unreachable_server_is_a_500_not_a_hang(web: Any, tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": MemcachedSession,
                                    "tools.sessions.servers": [str(tmp_path / "none.sock")]}})
    web.getPage("/")
    web.assertStatus(500)


def test_parse_servers_and_expiry() -> None:
    assert parse_servers(["127.0.0.1:11211", "/run/mc.sock", "unix:/tmp/x", "[::1]:5"]) == [
        ("127.0.0.1", 11211), "/run/mc.sock", "/tmp/x", ("::1", 5)]
    assert parse_servers("h:1") == [("h", 1)]
    for bad in ([], ["nohost"], ["h:port"], [3]):
        with pytest.raises(ConfigError, match="tools.sessions.servers"):
            parse_servers(bad)
    assert memcached_expiry(60) == 60
    assert memcached_expiry(0.2) == 1
    long = 40 * 24 * 3600
    now = datetime.datetime.now().timestamp()
    assert abs(memcached_expiry(long) - (now + long)) < 5
