"""The running site's status: a small JSON file the site keeps, read back by ``sitebus status``.

The site writes ``<pidfile>.status`` atomically (a temporary file renamed over it) when its
state changes, after each graceful reload and when a plugin reports something (workers, an
error); never on a timer, so it costs nothing while idle. The control commands read it to know
when a restart or a reload has finished, and ``sitebus status`` adds what psutil sees of the
live process: uptime, memory, threads, listening sockets, child processes.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus, states
from sitebus.plugins import SimplePlugin

__all__ = ["StatusFile", "status_path", "read_status", "process_info"]


def status_path(pidfile: str) -> str:
    """Return the status file that goes with ``pidfile``."""
    return pidfile + ".status"


def read_status(path: str) -> dict[str, Any] | None:
    """Return the status a site last wrote, or None if there is none (or it is unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomically(path: str, data: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".status-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


class StatusFile(SimplePlugin):
    """Keep ``path`` up to date with the site's state; remove it when the site exits."""

    def __init__(self, bus: Bus, path: str,
                 describe: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__(bus)
        self.path = path
        self.describe = describe
        self._lock = threading.Lock()
        previous = read_status(path) or {}
        same_process = previous.get("pid") == os.getpid()
        self.fields: dict[str, Any] = {
            "pid": os.getpid(),
            "state": "STOPPED",
            # A restart re-executes the same process: keep counting from the last image.
            "restarts": previous.get("restarts", 0) + 1 if same_process else 0,
            "reloads": previous.get("reloads", 0) if same_process else 0,
            "first_started_at": previous.get("first_started_at") if same_process else None,
        }

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into the status and write it."""
        with self._lock:
            self.fields.update(fields)
            data = dict(self.fields)
            if self.describe is not None:
                data.update(self.describe())
            try:
                _write_atomically(self.path, data)
            except OSError as error:
                self.bus.log(f"Cannot write the status file {self.path!r}: {error}", 30)

    def start(self) -> None:
        self.update(state="STARTING")
        self.bus.call_in_main_thread(self._started)

    start.priority = 100  # type: ignore[attr-defined]

    def _started(self) -> None:
        if self.bus.state is states.STARTED:
            now = time.time()
            self.update(state="STARTED", started_at=now,
                        first_started_at=self.fields.get("first_started_at") or now,
                        last_error=None)

    def graceful(self) -> None:
        self.update(reloads=self.fields["reloads"] + 1, reloaded_at=time.time())

    graceful.priority = 100  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.update(state="STOPPING")

    stop.priority = 1  # type: ignore[attr-defined]

    def exit(self) -> None:
        if self.bus.execv:
            self.update(state="RESTARTING")
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    exit.priority = 100  # type: ignore[attr-defined]


def process_info(pid: int) -> dict[str, Any]:
    """Return what psutil sees of a live process: uptime, memory, threads, listeners, children."""
    import psutil

    process = psutil.Process(pid)
    with process.oneshot():
        created = process.create_time()
        info: dict[str, Any] = {
            "pid": pid,
            "uptime": max(0.0, time.time() - created),
            "rss": process.memory_info().rss,
            "threads": process.num_threads(),
            "cmdline": process.cmdline(),
        }
    listeners = []
    for conn in process.net_connections(kind="all"):
        if conn.family == socket.AF_UNIX:
            # psutil cannot tell a listening UNIX socket from a connected one; a bound stream
            # socket with no peer is the best sign it can give.
            if conn.laddr and not conn.raddr and conn.type == socket.SOCK_STREAM:
                listeners.append(f"unix:{conn.laddr}")
        elif conn.status == psutil.CONN_LISTEN:
            host = f"[{conn.laddr.ip}]" if ":" in conn.laddr.ip else conn.laddr.ip
            listeners.append(f"{host}:{conn.laddr.port}")
    info["listeners"] = sorted(set(listeners))
    info["children"] = [
        {"pid": child.pid, "rss": child.memory_info().rss,
         "uptime": time.time() - child.create_time()}
        for child in process.children()
    ]
    return info
