"""SystemdNotifier: the bus plugin that tells systemd what the site is doing.

- READY=1 (with a STATUS= naming the listening addresses) once the bus is STARTED and the main
  loop runs: a late ``start`` listener (after the servers, 75, and DropPrivileges, 77) queues
  it with ``bus.call_in_main_thread``, so it goes out from inside ``block()``, where signals are
  handled. The reload signal's handler is therefore in place before the first READY=1, as
  ``Type=notify-reload`` requires.
- RELOADING=1 with MONOTONIC_USEC first on ``graceful``, READY=1 last. On ``stop``, RELOADING=1
  when the stop is a restart's (``bus.execv``: the re-executed image says READY=1 again),
  STOPPING=1 otherwise.
- The sockets the site bound itself go to the file-descriptor store once bound (FDSTORE=1)
  when the unit has one, so they outlive the process.
- WATCHDOG=1 at half of WATCHDOG_USEC, and only while the *main* loop is alive: a timer thread
  asks the main thread to ping and waits for the answer before asking again, so a stuck main
  thread means no ping and systemd steps in. Without a watchdog there is no thread and no
  wake-up at all.

A failure to reach systemd is logged, never raised: the site serves on regardless.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sitebus.bus import Bus, states
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin
from sitebus.systemd import protocol
from sitebus.systemd.activation import passed_by_systemd
from sitebus.systemd.protocol import (
    fdstore_enabled,
    monotonic_usec,
    notify,
    notify_message,
    store_fds,
    watchdog_interval,
)

__all__ = ["SystemdNotifier"]

class SystemdNotifier(SimplePlugin):
    """Tell systemd what the site is doing, and ping its watchdog while the main loop runs.

    Config: ``engine.systemd.on`` (on by default when NOTIFY_SOCKET is set),
    ``engine.systemd.watchdog`` (ping when systemd asks for it), ``engine.systemd.fdstore``
    (push the listeners to the file-descriptor store; None: when systemd says it has one).
    """

    watchdog: bool = True
    fdstore: bool | None = None

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.watchdog = True
        self.fdstore = None
        self.interval: float | None = None
        self._thread: threading.Thread | None = None
        self._stop_pinging = threading.Event()
        self._answered = threading.Event()

    def _listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        return [("start", self.starting), ("start", self.started),
                ("graceful", self.reloading), ("graceful", self.reloaded),
                ("stop", self.stopping)]

    def subscribe(self) -> None:
        """Listen on start, graceful and stop."""
        for channel, method in self._listeners():
            self.bus.subscribe(channel, method)

    def unsubscribe(self) -> None:
        """Stop listening, and stop the watchdog pings."""
        for channel, method in self._listeners():
            self.bus.unsubscribe(channel, method)
        self._stop_watchdog()

    def send(self, **fields: object) -> None:
        """Send one notify message; trouble reaching systemd is logged, never raised."""
        try:
            notify(notify_message(**fields))
        except OSError as error:
            self.bus.log(f"Could not notify systemd ({fields}): {error}", 40)

    def status(self, text: str) -> None:
        """Tell systemd what the site is doing (STATUS=, shown by ``systemctl status``)."""
        self.send(STATUS=" ".join(text.split()))

    def _check_settings(self) -> None:
        if not isinstance(self.watchdog, bool):
            raise ConfigError(f"expected True or False, got {self.watchdog!r}",
                              key="engine.systemd.watchdog", value=self.watchdog)
        if self.fdstore is not None and not isinstance(self.fdstore, bool):
            raise ConfigError(f"expected True, False or None, got {self.fdstore!r}",
                              key="engine.systemd.fdstore", value=self.fdstore)

    def starting(self) -> None:
        """Check the settings (and WATCHDOG_USEC), and say the site is starting."""
        self._check_settings()
        self.interval = watchdog_interval(os.environ, os.getpid()) if self.watchdog else None
        how = "systemd-python" if protocol.systemd_daemon() else "the standard library"
        self.bus.log(f"Notifying systemd through {how}.")
        self.status("Starting")

    starting.priority = 1  # type: ignore[attr-defined]

    def started(self) -> None:
        """Store the bound listeners, and say READY=1 once the main loop runs."""
        if self.fdstore or (self.fdstore is None and fdstore_enabled(os.environ)):
            self.store_listeners()
        self.bus.call_in_main_thread(self._ready)

    started.priority = 90  # type: ignore[attr-defined]

    def _ready(self) -> None:
        if self.bus.state is not states.STARTED:
            return
        self.send(READY=1, STATUS=self.running_status())
        self._start_watchdog()

    def running_status(self) -> str:
        """Return the STATUS= text of a running site: its listening addresses."""
        addresses = []
        for fd in sorted(self.bus.inherit_fds):
            try:
                sock = socket.socket(fileno=fd)
            except OSError:
                continue
            try:
                address = sock.getsockname()
            except OSError:
                continue
            finally:
                sock.detach()
            if isinstance(address, tuple):
                host = f"[{address[0]}]" if ":" in address[0] else address[0]
                addresses.append(f"{host}:{address[1]}")
            else:
                addresses.append(str(address or "unnamed socket"))
        return "Running" + (f"; listening on {', '.join(addresses)}" if addresses else "")

    def store_listeners(self, listeners: Mapping[int, str] | None = None) -> int:
        """Push the listening sockets the site bound itself to the file-descriptor store.

        ``listeners`` maps fds to names (the bus's ``inherit_fds`` by default). Sockets that
        systemd passed us are skipped: systemd holds them already.
        """
        chosen = self.bus.inherit_fds if listeners is None else listeners
        own = {name: fd for fd, name in chosen.items() if not passed_by_systemd(fd)}
        try:
            stored = store_fds(own)
        except OSError as error:
            self.bus.log(f"Could not store the listening sockets with systemd: {error}", 40)
            return 0
        if stored:
            self.bus.log(f"Stored {stored} listening socket(s) in systemd's file-descriptor "
                         f"store: {', '.join(own)}")
        return stored

    def reloading(self) -> None:
        """Say RELOADING=1 as a graceful reload begins."""
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="Reloading (graceful)")

    reloading.priority = 1  # type: ignore[attr-defined]

    def reloaded(self) -> None:
        """Say READY=1 again once every graceful listener has run."""
        self.send(READY=1, STATUS=self.running_status())

    reloaded.priority = 99  # type: ignore[attr-defined]

    def stopping(self) -> None:
        """Say STOPPING=1, or RELOADING=1 when the stop is a restart's (a re-exec follows)."""
        self._stop_watchdog()
        if self.bus.execv:
            self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(),
                      STATUS="Restarting (re-executing)")
        else:
            self.send(STOPPING=1, STATUS="Stopping")

    stopping.priority = 1  # type: ignore[attr-defined]

    # -- the watchdog ------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self.interval is None or self._thread is not None:
            return
        self._stop_pinging.clear()
        self._thread = threading.Thread(target=self._watch, args=(self.interval,),
                                        name="systemd watchdog", daemon=True)
        self._thread.start()
        self.bus.log(f"Pinging systemd's watchdog every {self.interval:g} s.")

    def _watch(self, interval: float) -> None:
        while not self._stop_pinging.wait(interval):
            self._answered.clear()
            if self._stop_pinging.is_set():
                return
            self.bus.call_in_main_thread(self._ping)
            # Wait for the main thread's answer: a stuck main loop must mean no ping.
            while not self._answered.wait(interval):
                if self._stop_pinging.is_set():
                    return

    def _ping(self) -> None:
        try:
            if not self._stop_pinging.is_set():
                self.send(WATCHDOG=1)
        finally:
            self._answered.set()

    def _stop_watchdog(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop_pinging.set()
        self._answered.set()
        if thread is not threading.current_thread():
            thread.join()
