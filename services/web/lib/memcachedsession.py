"""MemcachedSession: sessions in memcached, shared by every process that uses the servers.

The client is pymemcache's ``HashClient`` (``pip install sitebus[memcached]``), pooled so
request threads share it safely; the reference used python-memcached, which is no longer
maintained. ``servers`` lists ``'host:port'`` strings or UNIX socket paths (``'/run/mc.sock'``
or ``'unix:/run/mc.sock'``); one client is made per list and kept for the process.

A session is the key ``id`` holding ``pickle.dumps((data, expiration))``, set to expire in
memcached with the session, so memcached forgets expired sessions itself and no cleanup
monitor runs. Objects stored must be picklable.

Locks: the reference locked a session only within one process. Here threads of a process
queue on an in-process lock, then the session is locked across processes with memcached's
atomic ``add`` of the key ``id + '.lock'`` (retried with a growing pause, a few ms up to
50 ms, until ``lock_timeout``; ``LockTimeout`` then ends the request). The lock key expires
after ``lock_expire`` seconds, so a process that dies holding one cannot block its session
for ever.
"""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time
from typing import Any

from services.web.lib import locking
from services.web.lib.locking import KeyedLocks
from services.web.lib.sessions import Session
from sitebus.errors import ConfigError

__all__ = ["MemcachedSession", "parse_servers"]

_MAX_RELATIVE_EXPIRY = 30 * 24 * 3600  # memcached reads larger expiries as Unix times


def parse_servers(servers: Any) -> list[tuple[str, int] | str]:
    """Return pymemcache server addresses for 'host:port' strings and UNIX socket paths."""
    if isinstance(servers, str):
        servers = [servers]
    if not servers or not isinstance(servers, (list, tuple)):
        raise ConfigError("expected a list of 'host:port' strings or UNIX socket paths",
                          key="tools.sessions.servers", value=servers)
    parsed: list[tuple[str, int] | str] = []
    for server in servers:
        if isinstance(server, tuple) and len(server) == 2:
            parsed.append((str(server[0]), int(server[1])))
            continue
        if not isinstance(server, str) or not server:
            raise ConfigError(f"expected 'host:port' or a socket path, got {server!r}",
                              key="tools.sessions.servers", value=servers)
        if server.startswith("unix:"):
            parsed.append(server[5:])
        elif server.startswith("/"):
            parsed.append(server)
        else:
            host, sep, port = server.rpartition(":")
            if not sep or not port.isdigit():
                raise ConfigError(f"expected 'host:port' or a socket path, got {server!r}",
                                  key="tools.sessions.servers", value=servers)
            parsed.append((host.strip("[]"), int(port)))
    return parsed


def memcached_expiry(seconds: float) -> int:
    """Return the expiry memcached needs for ``seconds`` from now (a Unix time if long)."""
    whole = max(1, int(seconds))
    return whole if whole <= _MAX_RELATIVE_EXPIRY else int(time.time()) + whole


class MemcachedSession(Session):
    """Sessions stored in memcached (``tools.sessions.servers``)."""

    servers: Any = ["127.0.0.1:11211"]
    lock_timeout: float | datetime.timedelta | None = None
    """How long to wait for a session's lock (seconds or timedelta); None: for ever."""
    lock_expire = 300
    """Seconds after which a lock left by a dead process lapses."""
    locks = KeyedLocks()
    mc_lock = threading.RLock()
    clients: dict[tuple[Any, ...], Any] = {}
    cache: Any = None

    def __init__(self, id: str | None = None, **kwargs: Any) -> None:  # noqa: A002
        self.cache = self.client_for(kwargs.get("servers", self.servers))
        self._lock_token: bytes | None = None
        super().__init__(id, **kwargs)

    @classmethod
    def setup(cls, **kwargs: Any) -> None:
        """Make the client for these servers (once per process)."""
        cls.client_for(kwargs.get("servers", cls.servers))

    @classmethod
    def client_for(cls, servers: Any) -> Any:
        """Return the process's pymemcache client for ``servers``."""
        addresses = parse_servers(servers)
        key = tuple(addresses)
        client = cls.clients.get(key)
        if client is None:
            with cls.mc_lock:
                client = cls.clients.get(key)
                if client is None:
                    try:
                        from pymemcache.client.hash import HashClient
                    except ImportError:
                        raise ConfigError(
                            "MemcachedSession needs pymemcache: pip install "
                            "'sitebus[memcached]'", key="tools.sessions.storage_class",
                            value="MemcachedSession") from None
                    client = HashClient(addresses, use_pooling=True, default_noreply=False,
                                        connect_timeout=5, timeout=5, retry_attempts=1,
                                        dead_timeout=1)
                    cls.clients[key] = client
        return client

    def cleanup_key(self) -> Any:
        return (type(self), tuple(parse_servers(self.servers)))

    def _exists(self) -> bool:
        return self._load() is not None

    def _load(self) -> tuple[dict[Any, Any], datetime.datetime] | None:
        raw = self.cache.get(self.id)
        if raw is None:
            return None
        try:
            contents = pickle.loads(raw)
        except Exception:
            return None
        if not (isinstance(contents, tuple) and len(contents) == 2):
            return None
        return contents

    def _save(self, expiration_time: datetime.datetime) -> None:
        seconds = (expiration_time - self.now()).total_seconds()
        value = pickle.dumps((self._data, expiration_time), pickle.HIGHEST_PROTOCOL)
        if not self.cache.set(self.id, value, expire=memcached_expiry(seconds)):
            raise AssertionError(f"Session data for id {self.id!r} not set.")

    def _delete(self) -> None:
        self.cache.delete(self.id)

    def acquire_lock(self) -> None:
        """Hold this session's lock, so other requests for it wait until it is saved."""
        if self.locked:
            return
        session_id = self.id
        checker = locking.LockChecker(session_id, self.lock_timeout)
        if not self.locks.acquire(session_id, checker.remaining()):
            checker.expired()
            raise locking.LockTimeout(f"Timeout acquiring lock for {session_id}")
        try:
            token = os.urandom(8).hex().encode("ascii")
            key = f"{session_id}.lock"
            pause = 0.002
            while not self.cache.add(key, token, expire=max(1, int(self.lock_expire)),
                                     noreply=False):
                checker.expired()
                remaining = checker.remaining()
                time.sleep(pause if remaining is None else min(pause, remaining))
                pause = min(pause * 2, 0.05)
        except BaseException:
            self.locks.release(session_id)
            raise
        self._lock_token = token
        self._locked_id = session_id
        self.locked = True

    def release_lock(self) -> None:
        """Let the next request for this session in."""
        session_id = self._locked_id
        token, self._lock_token = self._lock_token, None
        try:
            key = f"{session_id}.lock"
            if token is not None and self.cache.get(key) == token:
                self.cache.delete(key)
        finally:
            self.locked = False
            self.locks.release(session_id)
