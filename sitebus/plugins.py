"""The pieces plugins are built from: SimplePlugin, Monitor, BackgroundTask, ThreadManager.

Standard library only, like the bus. The concrete site services live one per module
(``signals``, ``pidfile``, ``privileges``, ``daemon``, ``autoreload``, ``servers``...) and are
re-exported by ``services.web.process.plugins`` under the reference's names.

Priorities of the built-in plugins, per channel (lower runs first; 50 when not listed)::

    plugin            start   stop   exit   graceful   other
    Daemonizer          65
    PIDFile             70            50
    Monitor (all)       70     50            50
    Autoreloader        70     50            50
    ServerAdapter       75     25                      begin_stop 24
    Site                76     10                      (keeps listeners for a restart)
    DropPrivileges      77
    Reaper              78     15
    Workers             80     20            50       draining, child_pids
    Health             100      5
    StatusFile         100      1     100    100
    Notifier (systemd)                                 starting, stopping, reloading 1
    SignalHandler        -      -      -       -       subscribed directly on the signals
    ThreadManager               50            50       acquire_thread, release_thread

Threads here never sleep their interval out: they wait on an event, so ``stop()`` ends them at
once and, idle, they wake only when their work is due.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus

__all__ = [
    "SimplePlugin",
    "Monitor",
    "BackgroundTask",
    "PerpetualTimer",
    "ThreadManager",
]


class SimplePlugin:
    """A base for plugins: `subscribe()` hooks every method named like a bus channel."""

    bus: Bus

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def subscribe(self) -> None:
        """Subscribe each method named after one of the bus's channels to that channel."""
        for channel in list(self.bus.listeners):
            method = getattr(self, channel, None)
            if method is not None and callable(method):
                self.bus.subscribe(channel, method)

    def unsubscribe(self) -> None:
        """Take back every subscription `subscribe` made."""
        for channel in list(self.bus.listeners):
            method = getattr(self, channel, None)
            if method is not None and callable(method):
                self.bus.unsubscribe(channel, method)


class BackgroundTask(threading.Thread):
    """A thread that calls ``function`` every ``interval`` seconds until cancelled.

    Unlike the reference's, it waits on an event rather than sleeping, so ``cancel()`` takes
    effect at once. Daemonic by default, so it never delays the process's exit.
    """

    def __init__(
        self,
        interval: float,
        function: Callable[..., Any],
        args: Any = (),
        kwargs: dict[str, Any] | None = None,
        bus: Bus | None = None,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.function = function
        self.args = args
        self.kwargs = kwargs or {}
        self.running = False
        self.bus = bus
        self._cancelled = threading.Event()
        self.daemon = True

    def cancel(self) -> None:
        """Stop repeating; the thread ends at once, even in the middle of its wait."""
        self.running = False
        self._cancelled.set()

    def run(self) -> None:
        self.running = True
        while self.running:
            if self._cancelled.wait(self.interval):
                break
            try:
                self.function(*self.args, **self.kwargs)
            except Exception:
                self.running = False
                if self.bus is None:
                    raise
                self.bus.log(
                    f"Error in background task thread function {self.function!r}.",
                    level=40,
                    traceback=True,
                )


class PerpetualTimer(threading.Timer):
    """A repeating ``threading.Timer``, kept for compatibility; prefer BackgroundTask."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.bus: Bus | None = kwargs.pop("bus", None)
        super().__init__(*args, **kwargs)

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            try:
                self.function(*self.args, **self.kwargs)
            except Exception:
                if self.bus is None:
                    raise
                self.bus.log(
                    f"Error in perpetual timer thread function {self.function!r}.",
                    level=40,
                    traceback=True,
                )
                return


class Monitor(SimplePlugin):
    """A bus listener that runs ``callback`` every ``frequency`` seconds in its own thread."""

    callback: Callable[[], Any] | None = None
    """What the thread runs, once per period."""

    frequency: float = 60
    """Seconds from one call to the next; 0 or less: the thread never starts."""

    thread: BackgroundTask | None = None
    """A BackgroundTask thread."""

    def __init__(
        self,
        bus: Bus,
        callback: Callable[[], Any],
        frequency: float = 60,
        name: str | None = None,
    ) -> None:
        super().__init__(bus)
        self.callback = callback
        self.frequency = frequency
        self.thread = None
        self.name = name

    def start(self) -> None:
        """Begin calling `callback` from a thread of its own (none if `frequency` is 0 or less)."""
        if self.frequency > 0:
            threadname = self.name or self.__class__.__name__
            if self.thread is None:
                assert self.callback is not None
                self.thread = BackgroundTask(self.frequency, self.callback, bus=self.bus)
                self.thread.name = threadname
                self.thread.start()
                self.bus.log(f"Started monitor thread {threadname!r}.")
            else:
                self.bus.log(f"Monitor thread {threadname!r} already started.")

    start.priority = 70  # type: ignore[attr-defined]

    def stop(self) -> None:
        """End the thread and wait for it, unless the thread is the one asking."""
        if self.thread is None:
            self.bus.log(f"No thread running for {self.name or self.__class__.__name__}.")
            return
        if self.thread is not threading.current_thread():
            name = self.thread.name
            self.thread.cancel()
            if not self.thread.daemon:
                self.bus.log(f"Joining {name!r}")
            self.thread.join()
            self.bus.log(f"Stopped thread {name!r}.")
        else:
            self.thread.cancel()
        self.thread = None

    def graceful(self) -> None:
        """Replace the thread with a fresh one, so that a changed `frequency` takes effect."""
        self.stop()
        self.start()


class ThreadManager(SimplePlugin):
    """Numbers the threads that serve requests and tells listeners when each begins and ends.

    A server whose threads it owns publishes 'acquire_thread' when one starts and
    'release_thread' when it ends. One that borrows threads may publish 'acquire_thread' on
    every request (repeats are ignored) and never release: the bus's stop ends them all.
    """

    threads: dict[int, int]
    """Each known thread's `threading.get_ident()` and the number `start_thread` gave it."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.threads = {}
        self._lock = threading.Lock()
        self._next_index = 0
        for channel in ("acquire_thread", "start_thread", "release_thread", "stop_thread"):
            bus.listeners.setdefault(channel, set())

    def acquire_thread(self) -> None:
        """Number the calling thread and publish it on 'start_thread' (the first time only)."""
        ident = threading.get_ident()
        with self._lock:
            if ident in self.threads:
                return
            self._next_index += 1
            index = self.threads[ident] = self._next_index
        self.bus.publish("start_thread", index)

    def release_thread(self) -> None:
        """Forget the calling thread and publish its number on 'stop_thread'."""
        with self._lock:
            index = self.threads.pop(threading.get_ident(), None)
        if index is not None:
            self.bus.publish("stop_thread", index)

    def stop(self) -> None:
        """At the bus's stop, publish 'stop_thread' for every thread still known."""
        with self._lock:
            released = list(self.threads.values())
            self.threads.clear()
        for index in released:
            self.bus.publish("stop_thread", index)

    graceful = stop
