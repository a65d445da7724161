"""Health: the endpoint a load balancer polls, and the drain order on stop (``engine.health``).

Off by default. ``engine.health.on = True`` makes the site answer ``GET`` and ``HEAD`` at
``engine.health.path`` ('/health') itself, in the tree before every app and on every host (so a
root app or a virtual host never shadows it, and it works the same for a site of Flask or
Django apps): ``200 OK`` while the site is ready, ``503 Service Unavailable`` otherwise, with a
small JSON body::

    {"pid": 1234, "ready": true, "state": "STARTED", "uptime": 3600.5, "version": "0.1.0"}

``uptime`` counts seconds since the process started (a restart keeps the process, as
``sitebus status`` counts). Other methods get ``405`` with ``Allow: GET, HEAD``. Probes are
not written to the access log unless ``engine.health.access_log = True``: a balancer probes
every second or so, which would drown the lines that matter.

Ready is one predicate, ``Health.ready()``: the bus is STARTED and the site is not draining. So
the endpoint answers 503 while the site is STARTING (servers listen before every start
listener has run), STOPPING (draining) or restarting.

With workers the workers answer the probes (the master serves nothing), so a probe is answered
only while at least one worker serves. This plugin's listeners run in the master (it is one
of ``workers.MASTER_PLUGINS``): the master waits the drain delay, and as it begins it publishes
``draining``, which the Workers plugin passes to every worker as SIGUSR2; a worker then sets
``draining`` on its copy of this plugin and answers 503 while it goes on serving. A worker
retired by a rolling reload neither waits nor says 503 ahead of time: it stops accepting at once
and the other workers answer.

Drain order on stop, so a balancer with health checks or retries loses nothing:

1. the bus goes STOPPING, so the endpoint answers 503 at once;
2. ``stop`` (priority 5: before the servers, 24 and 25, and the workers, 20) waits
   ``drain_delay`` seconds while the servers still accept and serve: a balancer polling every
   second sees a 503 and stops sending new requests here;
3. the servers stop accepting (``begin_stop``, 24: new connections are refused, which a
   balancer without health checks, like nginx, retries on another instance);
4. requests in flight finish within ``server.shutdown_timeout`` (``stop``, 25).

``drain_delay`` is 2 s by default: a balancer polling every second (HAProxy's ``inter 1s``)
probes at least once within 1 s of the stop, the second second covers a probe that was slow or
in flight. 0 skips the wait (nginx without health checks needs none: it retries a refused
connection on another instance). Rejected: a longer default, because every stop pays it, and
only the balancer's own settings can say how long is enough (``inter`` x ``fall``).

A restart (``bus.execv``: SIGUSR2, SIGHUP under a supervisor, autoreload) does not wait: its
listening sockets stay open across the re-exec, so no connection is refused; new ones wait in
the backlog and the new image serves them, and a probe that arrives meanwhile is answered by
the new image once it is STARTED. Stopping would lose nothing by waiting, but it would make
every restart slower for no gain. The delay is also skipped when the site never became
STARTED (a failed start): no balancer ever sent it traffic.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sitebus import __version__
from sitebus.bus import Bus, states
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin
from sitebus.site.tree import endpoint_path

__all__ = ["Health", "health_answer"]

DEFAULT_PATH = "/health"
DEFAULT_DRAIN_DELAY = 2.0

Headers = list[tuple[str, str]]


def health_answer(method: str, ready: bool, fields: dict[str, Any]) -> tuple[str, Headers, bytes]:
    """Return the status line, headers and body that answer a probe.

    ``fields`` is the JSON body's content; ``HEAD`` gets the headers of ``GET`` and no body.
    """
    if method not in ("GET", "HEAD"):
        body = b'{"error": "method not allowed"}\n'
        return "405 Method Not Allowed", _headers(body, [("Allow", "GET, HEAD")]), body
    body = (json.dumps({**fields, "ready": ready}, sort_keys=True) + "\n").encode("ascii")
    status = "200 OK" if ready else "503 Service Unavailable"
    headers = _headers(body)
    return status, headers, (b"" if method == "HEAD" else body)


def _headers(body: bytes, extra: Headers | None = None) -> Headers:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"), *(extra or [])]


def _process_start(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return time.time()


class Health(SimplePlugin):
    """The health endpoint on the site's tree, and the wait between not-ready and not-accepting.

    ``Health(bus, tree)``; the site makes one (``bus.health``), configured by ``engine.health.*``.
    """

    def __init__(self, bus: Bus, tree: Any = None) -> None:
        super().__init__(bus)
        self.tree = tree
        self._path = DEFAULT_PATH
        self._drain_delay = DEFAULT_DRAIN_DELAY
        self._access_log = False
        self._on = False
        self._served = False  # the site became STARTED since the last stop
        self.draining = False
        """True from the moment a stop begins: answer 503 while still serving."""
        self._started_at: tuple[int, float] | None = None  # (pid, process start time)

    # -- settings ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path the endpoint answers, exactly (no prefix match; the query is ignored)."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        endpoint_path(value, "engine.health.path", "/health")
        self._place(value, self._access_log)
        self._path = value

    @property
    def drain_delay(self) -> float:
        """Seconds between answering 503 and the servers' refusing connections, on stop."""
        return self._drain_delay

    @drain_delay.setter
    def drain_delay(self, value: float) -> None:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            raise ConfigError(f"expected a number of seconds, 0 or more, got {value!r}",
                              key="engine.health.drain_delay", value=value)
        self._drain_delay = float(value)

    @property
    def access_log(self) -> bool:
        """Write probes to the access log (off: balancers probe every second or so)."""
        return self._access_log

    @access_log.setter
    def access_log(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"expected True or False, got {value!r}",
                              key="engine.health.access_log", value=value)
        self._place(self._path, value)
        self._access_log = value

    def _place(self, path: str, access_log: bool) -> None:
        """Move the endpoint on the tree to ``path`` (while on)."""
        if self._on and self.tree is not None:
            self.tree.remove_endpoint(self._path)
            self.tree.add_endpoint(path, self.app, access_log)

    # -- on and off ----------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Answer at ``path`` on the tree, and wait ``drain_delay`` on stop."""
        if self.tree is None:
            raise ConfigError("the health endpoint needs the site's tree (Health(bus, tree))",
                              key="engine.health.on", value=True)
        super().subscribe()
        self.tree.add_endpoint(self._path, self.app, self._access_log)
        self._on = True

    def unsubscribe(self) -> None:
        """Stop answering; the apps answer the path again."""
        super().unsubscribe()
        if self._on and self.tree is not None:
            self.tree.remove_endpoint(self._path)
        self._on = False

    # -- readiness -----------------------------------------------------------------------------

    def ready(self) -> bool:
        """Return True while the site should get traffic: STARTED, and not draining."""
        return self.bus.state is states.STARTED and not self.draining

    def fields(self) -> dict[str, Any]:
        """Return what the JSON body says besides ``ready``: state, pid, uptime, version."""
        pid = os.getpid()
        if self._started_at is None or self._started_at[0] != pid:  # first probe, or a fork
            self._started_at = (pid, _process_start(pid))
        return {"state": self.bus.state.name, "pid": pid,
                "uptime": round(max(0.0, time.time() - self._started_at[1]), 3),
                "version": __version__}

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]
            ) -> Iterable[bytes]:
        """Answer a probe (the WSGI app the tree calls at ``path``)."""
        status, headers, body = health_answer(environ.get("REQUEST_METHOD", "GET"),
                                              self.ready(), self.fields())
        start_response(status, headers)
        return [body]

    # -- the bus -------------------------------------------------------------------------------

    def start(self) -> None:
        self.bus.call_in_main_thread(self._started)

    start.priority = 100  # type: ignore[attr-defined]

    def _started(self) -> None:
        # In the main loop, after start() returned: every start listener succeeded.
        self._served = self.bus.state is states.STARTED
        self.draining = False

    def stop(self) -> None:
        """Keep serving ``drain_delay`` seconds while the endpoint says 503 (not on a restart)."""
        served, self._served = self._served, False
        if self.bus.execv or not served or self._drain_delay <= 0:
            return
        self.draining = True
        self.bus.publish("draining")
        self.bus.log(f"Not ready: {self._path} answers 503; the servers stop accepting in "
                     f"{self._drain_delay:g} s")
        threading.Event().wait(self._drain_delay)

    stop.priority = 5  # type: ignore[attr-defined]
