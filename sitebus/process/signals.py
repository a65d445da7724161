"""SignalHandler: OS signals become bus channels.

Each handled signal is published on a channel named after it (``'SIGTERM'``, ``'SIGHUP'``...),
and the entries of ``handlers`` are subscribed there: SIGTERM exits, SIGUSR1 is graceful, and
SIGHUP restarts when the process has no terminal (systemd, supervisord, a daemon) and exits
when it has one (a window manager closing the terminal sends SIGHUP). SIGUSR2, which the
reference leaves alone, always restarts: it is what ``sitebus restart`` sends, so a restart
works the same for a site on a terminal and for a daemon.

The reference restarts on SIGHUP only after its own daemonizing fork, so under systemd or
supervisord a reload request stops the site; sitebus looks at the terminal instead.

Where the work happens. The OS-level handler (Python runs it in the main thread, between two
bytecodes of whatever that thread was doing) only records the signal and wakes a thread that
publishes it at a point where it holds no lock:

- the main thread, when it waits in ``block()`` or ``wait()`` (``bus.main_thread_waits``):
  the handler queues the work with ``bus.call_in_main_thread``. The kernel may deliver a
  signal to any thread, and Python runs handlers only in the main thread, which sleeps in
  ``block()`` meanwhile; so the bus's wake-up pipe is also the process's
  ``signal.set_wakeup_fd``, and any signal wakes the main thread at once.
- otherwise (the engine started beside another main loop, which never calls ``block()``),
  a short-lived thread that the handler starts for it (``_thread.start_new_thread``, which
  takes none of Python's locks, so it is safe wherever the handler interrupted the main
  thread); such threads publish one at a time. So SIGTERM stops such a process too. A
  restart asked for there stops the bus but cannot re-execute: only ``block()`` does.

Rejected: publishing from the handler itself when the main thread is not in ``block()``
(it interrupts a foreign main loop anywhere, perhaps holding the logging lock or inside a
publish, and the listeners would deadlock or re-enter it); the dispatcher thread doing all
the work (while the main thread is in ``block()`` it serialises signals, so a SIGTERM waits
for a graceful reload under way, and a restart's "exit wins" check before ``execv`` sees a
SIGTERM that came during the restart); a thread kept for it from start to exit (one thread
and a pipe for the life of every site, to serve an uncommon case).

A second listener for one signal adds to the first (``set_handler``, and the
``engine.SIGHUP``/``engine.SIGTERM`` config keys, as the reference's ``engine.subscribe``);
``None`` in config turns the signal's handling off.

SIGTTIN and SIGTTOU (one more worker, one fewer) are published once per byte the kernel's
deliveries left in the wake-up pipe (``bus.wakeup_signals``) rather than once per call of
Python's handler, which merges deliveries that come before it runs (``COUNTED``).

Across a restart's re-exec the handled signals stay blocked (on the ``execv`` channel), so
one sent at that instant waits, pending in the kernel, for the new image: installing a
handler unblocks its signal, and the new image's main loop handles it. Without that, a
SIGTERM in the new image's first moments killed it unhandled (exit 143, PID file left), and
one in the old image's last moments was dropped with its queue.
"""

from __future__ import annotations

import _thread
import os
import signal as _signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

from sitebus.bus import Bus

__all__ = ["SignalHandler"]

Handler = Callable[..., Any]

COUNTED = frozenset(("SIGTTIN", "SIGTTOU"))
"""Signals whose every delivery counts (one more worker each). Python runs a handler once
for deliveries that arrive before it gets to run; the wake-up pipe gets a byte per delivery,
so these are published from the bytes the bus reads instead."""


def _signal_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for name in dir(_signal):
        if name.startswith("SIG") and not name.startswith("SIG_"):
            number = getattr(_signal, name)
            if isinstance(number, int):
                names.setdefault(number, name)  # the first spelling wins: SIGABRT over SIGIOT
    return names


def has_terminal() -> bool:
    """Return True when standard input is a terminal."""
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False


class SignalHandler:
    """Turns the process's signals into bus calls: SIGTERM exits, SIGHUP restarts, and so on."""

    handlers: dict[str, Handler | None]
    """What each signal does, by name: ``{'SIGTERM': bus.exit, ...}``; edit before subscribing."""

    signals: dict[int, str] = _signal_names()
    """The name of each signal number, for log lines."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.handlers = {
            "SIGHUP": self.handle_SIGHUP,
            "SIGTERM": self.bus.exit,
            "SIGUSR1": self.bus.graceful,
            "SIGUSR2": self.bus.restart,
        }
        self._previous_handlers: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        self._subscribed: dict[str, list[Handler]] = {}
        self._added: dict[str, list[Handler]] = {}  # from configure(), before subscribe()
        self._pending: deque[str] = deque()
        self._delivering = threading.Lock()

    def _resolve(self, signal: int | str) -> tuple[int, str]:
        if isinstance(signal, int):
            if signal not in self.signals:
                raise ValueError(f"unknown signal number {signal}")
            return signal, self.signals[signal]
        number = getattr(_signal, str(signal), None)
        if not isinstance(number, int) or not str(signal).startswith("SIG"):
            raise ValueError(f"unknown signal name {signal!r}")
        return number, str(signal)

    def set_handler(self, signal: int | str, listener: Handler | None = None) -> None:
        """Handle ``signal`` (a number or a name), and subscribe ``listener`` to its channel.

        A second listener adds to the first. Raises ValueError if the signal does not exist
        on this platform, or (as ``signal.signal`` does) when called from another thread than
        the main one.
        """
        number, name = self._resolve(signal)
        if threading.current_thread() is not threading.main_thread():
            raise ValueError(f"signal handlers can only be set from the main thread ({name})")
        previous = _signal.signal(number, self._handle_signal)
        self._previous_handlers.setdefault(number, previous)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {number})  # held across a re-exec
        self.bus.log(f"Listening for {name}.")
        if listener is not None:
            self._add_listener(name, listener)

    def _add_listener(self, name: str, listener: Handler) -> None:
        listeners = self._subscribed.setdefault(name, [])
        if listener not in listeners:
            listeners.append(listener)
        self.bus.subscribe(name, listener)

    def _handle_signal(self, signum: int, frame: FrameType | None = None) -> None:
        """Record the signal and wake the thread that publishes it (see the module's text)."""
        name = self.signals.get(signum, str(signum))
        if (name in COUNTED and self.bus.main_thread_waits
                and self.bus.wakeup_signals == self._publish_counted):
            return  # published once per delivery, from the wake-up pipe's bytes
        self._pending.append(name)
        if self.bus.main_thread_waits:
            self.bus.call_in_main_thread(self._deliver)
        else:
            # threading.Thread.start takes locks the interrupted main thread may hold; the
            # low-level call takes none of Python's.
            _thread.start_new_thread(self._deliver_elsewhere, ())

    def _deliver(self) -> None:
        """Publish every recorded signal, in the order they came."""
        while True:
            try:
                name = self._pending.popleft()
            except IndexError:
                return
            self._publish_signal(name)

    def _publish_counted(self, received: bytes) -> None:
        """Publish each delivery of a counted signal (in the main thread, from the pipe)."""
        for number in received:
            name = self.signals.get(number)
            if name in COUNTED and number in self._previous_handlers:
                self._publish_signal(name)

    def _publish_signal(self, name: str) -> None:
        self.bus.log(f"Caught signal {name}.")
        self.bus.publish(name)

    def _deliver_elsewhere(self) -> None:
        """Publish the recorded signals in this short-lived thread, one thread at a time."""
        with self._delivering:
            try:
                self._deliver()
            except Exception:
                self.bus.log("Error while publishing a signal", 40, traceback=True)

    # -- the plugin -------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Install a handler for every entry of ``handlers``; skip signals this OS lacks.

        Calling it again installs only what was added since (``handlers`` entries, config).
        """
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread and self._previous_wakeup_fd is None:
            # A signal the kernel delivers to another thread must still wake block().
            self._previous_wakeup_fd = _signal.set_wakeup_fd(self.bus.wakeup_fd,
                                                             warn_on_full_buffer=False)
            self.bus.wakeup_signals = self._publish_counted
        wanted = [(name, listener) for name, listener in self.handlers.items()
                  if listener is not None]
        wanted += [(name, listener) for name, added in self._added.items() for listener in added]
        for name, listener in wanted:
            try:
                number, name = self._resolve(name)
                if number in self._previous_handlers:
                    self._add_listener(name, listener)
                else:
                    self.set_handler(name, listener)
            except ValueError:
                pass
        self._added.clear()
        self.bus.subscribe("execv", self._hold_signals_across_exec)
        self.bus.subscribe("exit", self._release_signals)

    def _hold_signals_across_exec(self) -> None:
        """Block the handled signals: one that comes now waits for the new image's handler."""
        if threading.current_thread() is threading.main_thread():
            _signal.pthread_sigmask(_signal.SIG_BLOCK, set(self._previous_handlers))

    def _release_signals(self) -> None:
        """Unblock them again when there is no exec after all (an exit won over a restart)."""
        if not self.bus.execv and threading.current_thread() is threading.main_thread():
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, set(self._previous_handlers))

    def unsubscribe(self) -> None:
        """Restore the handlers that were installed before, and drop our listeners."""
        for number, previous in self._previous_handlers.items():
            name = self.signals.get(number, str(number))
            if previous is None:
                previous = _signal.SIG_DFL
            self.bus.log(f"Restoring {name} handler {previous!r}.", level=10)
            try:
                _signal.signal(number, previous)
            except (ValueError, OSError) as error:
                self.bus.log(f"Unable to restore {name} handler {previous!r}: {error}", level=40)
        self._previous_handlers.clear()
        if self._previous_wakeup_fd is not None:
            _signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
            if self.bus.wakeup_signals == self._publish_counted:
                self.bus.wakeup_signals = None
        for name, listeners in self._subscribed.items():
            for listener in listeners:
                self.bus.unsubscribe(name, listener)
        self._subscribed.clear()
        self.bus.unsubscribe("execv", self._hold_signals_across_exec)
        self.bus.unsubscribe("exit", self._release_signals)

    def configure(self, name: str, listener: Handler | None) -> None:
        """Add a listener for one signal; None turns its handling off.

        This is what the ``engine.SIGHUP`` and ``engine.SIGTERM`` config keys call: as in the
        reference, ``engine.SIGTERM = cleanup`` runs ``cleanup`` besides the exit.
        """
        number, name = self._resolve(name)
        if listener is not None:
            if number in self._previous_handlers:
                self._add_listener(name, listener)
            else:
                self._added.setdefault(name, []).append(listener)  # subscribe() adds it
            return
        self.handlers[name] = None
        self._added.pop(name, None)
        for old in self._subscribed.pop(name, []):
            self.bus.unsubscribe(name, old)
        if number in self._previous_handlers:
            previous = self._previous_handlers.pop(number)
            _signal.signal(number, _signal.SIG_DFL if previous is None else previous)
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {number})

    def handle_SIGHUP(self) -> None:
        """Restart if no terminal is attached, else exit."""
        if has_terminal():
            self.bus.log("SIGHUP caught on a terminal. Exiting.")
            self.bus.exit()
        else:
            self.bus.log("SIGHUP caught with no terminal attached. Restarting.")
            self.bus.restart()
