"""The Web Site Process Bus: a process's state machine and its publish/subscribe channels.

A Bus holds site-wide behaviour (servers, signals, PID file, daemonizing, reloads) as
listeners on channels. Bus methods move the process between five states and publish on the
channel of each change; everything else is a plugin. Standard library only, so the bus can be
embedded anywhere (a test keeps it so). There should be one Bus per process.

States and the transitions the methods make::

          start()                        stop()               exit()
    STOPPED ──────▶ STARTING ──▶ STARTED ──────▶ STOPPING ──▶ STOPPED ──────▶ EXITING
       ▲               │ ▲           │                                         │   │
       │               │ └───────────┘ start() again publishes 'start' again   │   │
       │               └─ a start listener failed: stop(), then exit() ────────┘   │
       ├── (stop() from STOPPED publishes 'stop' again, as exit() always stops first)
       └── start() after exit() starts afresh (EXITING ─▶ STARTING) ───────────────┘

Rules:

- Listeners run in ascending priority (default 50, or the callback's ``priority``); equal
  priorities run in subscription order. Subscribing rebuilds the channel's ordered tuple, so
  ``publish`` never sorts and never takes a lock: it reads one tuple.
- Every listener runs even when an earlier one failed. Failures are logged and raised together
  as ``ChannelFailures`` at the end. ``KeyboardInterrupt`` and ``SystemExit`` pass straight
  through; a ``SystemExit(0)`` after earlier failures becomes ``SystemExit(1)``.
- A failing ``start`` listener makes the bus log it, exit, and re-raise. If that error is never
  caught, the process ends with 70 (EX_SOFTWARE) rather than Python's 1.
- ``block()`` does not poll. The main thread sleeps on a wake-up pipe until a state change, a
  request from a signal handler (``call_in_main_thread``), or, only while something listens
  to ``main``, the next ``interval``. Idle, the bus makes no wake-ups at all. A pipe rather than
  the condition variable that other threads wait on, because a signal handler that runs in the
  middle of the main thread's own condition bookkeeping could corrupt it; writing a byte to a
  pipe is safe at any moment.
- ``restart()`` sets ``execv`` and exits; the main thread, in ``block()``, joins the other
  non-daemon threads and re-executes the same command line (``sys.orig_argv``) from the start-up
  directory. Just before, it publishes ``execv``, the last moment for plugins to arrange what
  the new image inherits. Only descriptors listed in ``inherit_fds`` survive the exec; the
  others are already close-on-exec (PEP 446) or are made so by walking ``/proc/self/fd``,
  which costs the number of open descriptors, not the descriptor limit.
- An exit wins over a restart. ``exit()`` while a restart is under way (SIGTERM just after
  SIGUSR2, ``systemctl stop`` during a reload) makes the process exit instead of re-executing:
  before the exit listeners ran, they run for an exit; after, they run once more with
  ``execv`` cleared, so the PID file goes. Signals handled while ``block()`` joins threads
  and prepares the exec are run first, so only a signal in the last instant before ``execv``
  is missed. ``restart()`` and ``graceful()`` while exiting do nothing.
- A stop is bounded. Python cannot end a thread, so a request handler that never returns would
  keep ``block()`` joining it forever. A server that cuts such a request at its shutdown
  timeout names the thread to ``abandon()``; ``block()`` does not wait for it, re-executes
  anyway on a restart (the exec ends it), and otherwise ends the process with
  ``flush_and_exit`` once everything else has ended.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback as _traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

__all__ = ["Bus", "ChannelFailures", "flush_and_exit", "reexec_argv", "states"]

EX_OK = 0
EX_SOFTWARE = 70
DEFAULT_PRIORITY = 50
BUILTIN_CHANNELS = ("start", "stop", "exit", "graceful", "log", "main")

Listener = TypeVar("Listener", bound=Callable[..., Any])

_log = logging.getLogger("sitebus")

# The directory the process started in: restart() goes back there before re-executing, so a
# relative script path or module search path in the command line means the same thing again.
_startup_cwd = os.path.abspath(os.getcwd())


class State(enum.Enum):
    """The states of a Bus (``Bus.states``, ``sitebus.bus.states``)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    STOPPING = "STOPPING"
    EXITING = "EXITING"

    def __repr__(self) -> str:
        return f"states.{self.name}"

    __str__ = __repr__


states = State  # the reference's name


# The transitions the Bus methods make; _set_state refuses any other.
TRANSITIONS: dict[State, frozenset[State]] = {
    states.STOPPED: frozenset({states.STARTING, states.STOPPING, states.EXITING}),
    states.STARTING: frozenset({states.STARTED, states.STOPPING}),
    states.STARTED: frozenset({states.STOPPING, states.STARTING}),  # start() publishes again
    states.STOPPING: frozenset({states.STOPPED}),
    states.EXITING: frozenset({states.STARTING}),  # start() again, as the reference allows
}


class ChannelFailures(Exception):
    """Raised by ``Bus.publish`` when one or more listeners failed; holds their errors."""

    delimiter = "\n"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._exceptions: list[BaseException] = []

    def handle_exception(self) -> None:
        """Append the exception being handled to this one."""
        error = sys.exc_info()[1]
        if error is not None:
            self._exceptions.append(error)

    def get_instances(self) -> list[BaseException]:
        """Return a list of the exceptions gathered."""
        return self._exceptions[:]

    def __str__(self) -> str:
        return self.delimiter.join(repr(e) for e in self._exceptions)

    def __bool__(self) -> bool:
        return bool(self._exceptions)


def reexec_argv(orig_argv: list[str], executable: str) -> list[str]:
    """Return the argv that starts this program again.

    ``sys.orig_argv`` keeps the interpreter options and the way the program was named
    (``script.py``, ``-m pkg``, ``-c code``, or a console script's path), which
    ``sys.argv`` loses; only the interpreter's own name is replaced by its full path.
    """
    if not orig_argv:
        raise ValueError("cannot re-execute: the original command line is unknown")
    return [executable or orig_argv[0], *orig_argv[1:]]


class Bus:
    """The process's state and the channels its parts talk over.

    Publishing calls every listener of the channel, in priority order: one that raises is
    logged and the rest still run, so a broken plugin cannot keep the others from stopping.
    A listener that must end everything raises SystemExit.
    """

    states = states
    execv = False
    max_cloexec_files = 524288  # kept for compatibility; /proc/self/fd is walked instead

    def __init__(self) -> None:
        self.execv = False
        self.listeners: dict[str, set[Callable[..., Any]]] = {c: set() for c in BUILTIN_CHANNELS}
        self._priorities: dict[tuple[str, Callable[..., Any]], tuple[int, int]] = {}
        self._ordered: dict[str, tuple[Callable[..., Any], ...]] = {}
        self._sequence = 0
        self._listeners_lock = threading.Lock()
        # Serialises start/stop/exit; re-entrant so a listener may call stop() or exit().
        self._lifecycle_lock = threading.RLock()
        # Guards the requests that another thread's exit() leaves for start() or stop().
        self._requests_lock = threading.Lock()
        self._starting_thread: int | None = None
        self._exit_after_start = False
        self._exit_after_stop = False
        self._exit_in_progress = False
        self._exit_wins = False  # exit() was called during a restart: do not re-execute
        # Set once the exit listeners have all run: block() re-executes only after that, even
        # when another thread is the one exiting.
        self._exit_done = threading.Event()
        self._state = states.STOPPED
        self._state_changed = threading.Condition(threading.Lock())
        self._main_calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._main_thread_waits = 0  # > 0 while the main thread is in block() or wait()
        self._wakeup_r, self._wakeup_w = _wakeup_pipe()
        self.wakeup_signals: Callable[[bytes], None] | None = None
        """Called in the main thread with the signal numbers found in the wake-up pipe, one
        byte per delivery (``signal.set_wakeup_fd`` writes them): the signal handler counts
        signals with it that Python's handlers would merge."""
        self._atexit_registered = False
        self.inherit_fds: dict[int, str] = {}
        self._abandoned: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        _live_buses.add(self)

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The bus's current state."""
        return self._state

    @state.setter
    def state(self, new: State) -> None:
        self._set_state(new)

    def _set_state(self, new: State) -> None:
        """Move to ``new``, log ``Bus NEW`` and wake everything that waits on the state."""
        with self._state_changed:
            if new not in TRANSITIONS[self._state]:
                raise RuntimeError(f"the bus cannot go from {self._state!r} to {new!r}")
            self._state = new
            self._state_changed.notify_all()
        self._wake_main_thread()
        self.log(f"Bus {new.name}")

    # -- channels ---------------------------------------------------------------------------

    def subscribe(
        self, channel: str, callback: Listener | None = None, priority: int | None = None
    ) -> Any:
        """Add ``callback`` to ``channel`` (if not present); usable as a decorator."""
        if callback is None:
            return lambda func: self.subscribe(channel, func, priority)
        if priority is None:
            priority = getattr(callback, "priority", DEFAULT_PRIORITY)
        with self._listeners_lock:
            key = (channel, callback)
            members = self.listeners.setdefault(channel, set())
            if key in self._priorities:
                order = self._priorities[key][1]
            else:
                self._sequence += 1
                order = self._sequence
            members.add(callback)
            self._priorities[key] = (priority, order)
            self._reorder(channel)
        if channel == "main":
            self._wake_main_thread()
        return callback

    def unsubscribe(self, channel: str, callback: Callable[..., Any]) -> None:
        """Discard ``callback`` from ``channel`` (if present)."""
        with self._listeners_lock:
            members = self.listeners.get(channel)
            if members is None or callback not in members:
                return
            members.discard(callback)
            self._priorities.pop((channel, callback), None)
            self._reorder(channel)

    def _reorder(self, channel: str) -> None:
        members = self.listeners[channel]
        ranked = sorted(members, key=lambda cb: self._priorities[(channel, cb)])
        self._ordered[channel] = tuple(ranked)

    def publish(self, channel: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call every listener of ``channel`` and return their outputs, in order."""
        listeners = self._ordered.get(channel)
        if not listeners:
            return []
        output = []
        failures: ChannelFailures | None = None
        for listener in listeners:
            try:
                output.append(listener(*args, **kwargs))
            except KeyboardInterrupt:
                raise
            except SystemExit as error:
                if failures and error.code == 0:
                    error.code = 1
                raise
            except Exception as error:
                if failures is None:
                    failures = ChannelFailures()
                failures.handle_exception()
                if channel != "log":  # a failing log listener must not recurse
                    expected = _is_expected(error)
                    detail = f": {error}" if expected else ""
                    self.log(f"Error in {channel!r} listener {listener!r}{detail}", 40,
                             traceback=not expected)
        if failures:
            raise failures
        return output

    def log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """Publish ``msg`` on the log channel, with the current traceback if asked.

        A failing log listener (a full disk, a closed stream) is reported on stderr but never
        raised: logging trouble must not stop a site from starting, serving or exiting.
        """
        if traceback and sys.exc_info()[0] is not None:
            msg = f"{msg}\n{_traceback.format_exc().rstrip()}"
        try:
            self.log_sink(msg, level)
            self.publish("log", msg, level)
        except ChannelFailures as failures:
            try:
                sys.stderr.write(f"sitebus: a log listener failed ({failures}): {msg}\n")
            except (AttributeError, ValueError, OSError):
                pass

    def log_sink(self, msg: str, level: int) -> None:
        """Write a ``log()`` message to the ``sitebus`` logger, before the log channel's
        listeners. Not a listener itself, so a fresh bus's ``log`` channel is empty, as the
        reference's is; replace it on an instance to log elsewhere."""
        self._log_to_logging(msg, level)

    @staticmethod
    def _log_to_logging(msg: str, level: int) -> None:
        _log.log(level, msg, extra={"context": "ENGINE"})

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start all services."""
        with self._lifecycle_lock:
            self._register_atexit()
            self._exit_done.clear()
            with self._requests_lock:
                if self._starting_thread != threading.get_ident():  # else a subclass's
                    self._exit_after_start = False  # preparation began the start already
                self._starting_thread = threading.get_ident()
            try:
                self._set_state(states.STARTING)
                self.publish("start")
                self._set_state(states.STARTED)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as error:
                if _is_expected(error):
                    causes = (error.get_instances() if isinstance(error, ChannelFailures)
                              else [error])
                    text = "; ".join(str(cause) for cause in causes)
                    self.log(f"Shutting down due to error in start listener: {text}", 40)
                else:
                    self.log("Shutting down due to error in start listener:", 40, traceback=True)
                try:
                    self._exit_services()
                except Exception:
                    pass
                _failed_starts.append(error)
                _install_start_failure_exit_code()
                raise
            finally:
                with self._requests_lock:
                    self._starting_thread = None
                    exit_requested = self._exit_after_start
            if exit_requested:
                self.exit()

    def stop(self) -> None:
        """Stop all services."""
        with self._lifecycle_lock:
            if self._state in (states.STOPPING, states.EXITING):
                return  # a stop listener asked again, or the bus is gone
            self._set_state(states.STOPPING)
            try:
                self.publish("stop")
            finally:
                self._set_state(states.STOPPED)
            if self._exit_after_stop:
                self._exit_after_stop = False
                self.exit()

    def exit(self) -> None:
        """Stop, then run the exit listeners: the process may end once this returns.

        Called from another thread while one thread runs start(), the exit happens as soon
        as start() returns; called from a stop listener, as soon as stop() has finished.
        """
        with self._requests_lock:
            starter = self._starting_thread
            if starter is not None and starter != threading.get_ident():
                self._exit_after_start = True
                return
        with self._lifecycle_lock:
            if self._state is states.EXITING or self._exit_in_progress:
                if self.execv and not self._exit_wins:
                    self._exit_wins = True
                    self.log("Exit requested during the restart: exiting instead.")
                return
            if self._state is states.STOPPING:
                self._exit_after_stop = True
                return
            called_by_start = starter is not None
            try:
                self._exit_services()
            except Exception:
                # Exiting must not fail half-way: nothing else could clean up after us.
                self.log("Error while exiting; ending the process now.", 40, traceback=True)
                flush_and_exit(EX_SOFTWARE)
            if called_by_start:
                # A start listener asked to exit: start() cannot be unwound sensibly.
                flush_and_exit(EX_SOFTWARE)

    def _exit_services(self) -> None:
        self._exit_after_stop = False
        self._exit_in_progress = True
        try:
            if self._state is states.STARTING:
                self._set_state(states.STOPPING)
                try:
                    self.publish("stop")
                finally:
                    self._set_state(states.STOPPED)
            else:
                self.stop()
            self._set_state(states.EXITING)
        finally:
            self._exit_in_progress = False
        if self._exit_wins:
            self.execv = False  # asked for while the restart stopped: exit listeners see an exit
        try:
            atexit.unregister(self._exit_at_interpreter_exit)
            self.publish("exit")
            self.log("Bus EXITED")
        finally:
            self._exit_done.set()

    def graceful(self) -> None:
        """Advise all services to reload (not once the bus exits: nothing is left to reload)."""
        if self._state is states.EXITING:
            return
        self.log("Bus graceful")
        self.publish("graceful")

    def restart(self) -> None:
        """Restart the process: stop the bus and have the main thread re-execute."""
        if self._exit_in_progress or self._state is states.EXITING:
            # Already exiting, or restarting: a restart would add nothing, or undo an exit.
            self.log("Restart not done: the bus is already exiting.")
            return
        self.execv = True
        self.exit()

    def start_with_callback(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> threading.Thread:
        """Start ``func`` in a new thread T once the bus is STARTED, start the bus, return T."""
        call_args = tuple(args or ())
        call_kwargs = dict(kwargs or {})

        def _callback() -> None:
            self.wait(states.STARTED)
            func(*call_args, **call_kwargs)

        thread = threading.Thread(target=_callback, daemon=True)
        thread.name = f"Bus Callback {thread.name}"
        thread.start()
        self.start()
        return thread

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self,
        state: State | Iterable[State],
        interval: float = 0.1,
        channel: str | None = None,
    ) -> None:
        """Wait for the given state(s), publishing to ``channel`` every ``interval`` meanwhile.

        Without listeners on ``channel`` nothing wakes up until the state changes.
        """
        wanted = frozenset([state] if isinstance(state, State) else state)
        if threading.current_thread() is threading.main_thread():
            self._main_thread_waits += 1
            try:
                self._wait_in_main_thread(wanted, interval, channel)
            finally:
                self._main_thread_waits -= 1
            if not self._main_thread_waits:
                self._run_main_calls()  # what a signal handler queued as the wait ended
            return
        with self._state_changed:
            while self._state not in wanted:
                publishing = channel is not None and bool(self._ordered.get(channel))
                woken = self._state_changed.wait(interval if publishing else None)
                if not woken and channel is not None and self._state not in wanted:
                    self._state_changed.release()
                    try:
                        self.publish(channel)
                    finally:
                        self._state_changed.acquire()

    def _wait_in_main_thread(
        self, wanted: frozenset[State], interval: float, channel: str | None
    ) -> None:
        poller = select.poll()
        poller.register(self._wakeup_r, select.POLLIN)
        # Ticks keep their pace: a wake-up between two ticks (a signal, a subscription, a
        # state on the way) does not push the next one back.
        next_tick = time.monotonic() + interval
        while True:
            self._run_main_calls()
            if self._state in wanted:
                return
            publishing = channel is not None and bool(self._ordered.get(channel))
            timeout_ms = None
            if publishing:
                timeout_ms = max(0, int((next_tick - time.monotonic()) * 1000))
            if poller.poll(timeout_ms):
                received = _drain(self._wakeup_r)
                if self.wakeup_signals is not None and received.strip(b"\0"):
                    self.wakeup_signals(received.replace(b"\0", b""))
            if publishing and time.monotonic() >= next_tick and self._state not in wanted:
                assert channel is not None
                self.publish(channel)
                next_tick = max(next_tick + interval, time.monotonic())

    @property
    def main_thread_waits(self) -> bool:
        """True while the main thread is in ``block()`` or ``wait()``, where it runs the
        calls of ``call_in_main_thread``; False when it runs a main loop of its own."""
        return self._main_thread_waits > 0

    def call_in_main_thread(self, func: Callable[..., Any], *args: Any) -> None:
        """Have the main thread run ``func(*args)`` from ``block()`` or ``wait()``.

        Signal handlers use this: they only record and wake, and the work happens at a
        point where the main thread holds no lock.
        """
        self._main_calls.append((func, args))
        self._wake_main_thread()

    def _run_main_calls(self) -> None:
        while self._main_calls:
            func, args = self._main_calls.popleft()
            try:
                func(*args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:
                # Already logged by publish; the main loop must go on waiting.
                self.log(f"Error in main-thread call {func!r}", 40, traceback=True)

    def _wake_main_thread(self) -> None:
        try:
            os.write(self._wakeup_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def block(self, interval: float = 0.1) -> None:
        """Park the main thread until the bus exits (or Ctrl-C, or SystemExit); re-exec if asked.

        For the main thread only. After EXITING it waits for the other non-daemon threads to
        end, then calls ``os.execv`` if ``self.execv`` is set (by ``restart()``).
        """
        in_main_thread = threading.current_thread() is threading.main_thread()
        self._main_thread_waits += in_main_thread
        try:
            self._block(interval)
        finally:
            self._main_thread_waits -= in_main_thread

    def _block(self, interval: float) -> None:
        try:
            self.wait(states.EXITING, interval=interval, channel="main")
        except (KeyboardInterrupt, OSError, SystemExit) as stop:
            # OSError: an interrupted wait on old Pythons. A SystemExit goes on up.
            leaving = isinstance(stop, SystemExit)
            self.log(f"{'SystemExit raised' if leaving else 'Keyboard Interrupt'}: "
                     "shutting down bus")
            self.exit()
            if leaving:
                raise

        self._exit_done.wait()
        self.log("Waiting for child threads to terminate...")
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is current or thread is threading.main_thread() or thread.daemon:
                continue
            if thread.is_alive() and thread not in self._abandoned:
                self.log(f"Waiting for thread {thread.name}.")
                thread.join()

        self._run_main_calls()  # a signal handled meanwhile: SIGTERM must still stop a restart
        if self.execv and not self._exit_instead_of_restart():
            self._do_execv()
        stuck = [thread.name for thread in list(self._abandoned) if thread.is_alive()]
        if stuck:
            self.log(f"Exiting without the abandoned threads {', '.join(stuck)}.", 30)
            flush_and_exit(EX_OK)

    def abandon(self, thread: threading.Thread) -> None:
        """Exit without waiting for ``thread`` (a request cut at its server's shutdown timeout)."""
        self._abandoned.add(thread)

    def _exit_instead_of_restart(self) -> bool:
        """If exit() was called during the restart, finish as an exit and return True."""
        if not self._exit_wins:
            return False
        if self.execv:
            # The exit listeners ran for a restart (the PID file was kept): now for an exit.
            self.execv = False
            self.publish("exit")
        return True

    def _do_execv(self) -> None:
        """Re-execute this program in place: same pid, same command line, same directory."""
        argv = reexec_argv(list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv],
                           sys.executable)
        self.log(f"Re-spawning {' '.join(argv)}")
        os.chdir(_startup_cwd)
        # Last call for plugins: the site moves its listening sockets into place here and
        # describes them to the new image (LISTEN_FDS...), updating inherit_fds.
        self.publish("execv")
        _close_on_exec_except(set(self.inherit_fds))
        for fd in self.inherit_fds:
            os.set_inheritable(fd, True)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        self._run_main_calls()
        if self._exit_instead_of_restart():  # a signal handled meanwhile asked to exit
            return
        os.execv(argv[0], argv)

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._exit_at_interpreter_exit)
            self._atexit_registered = True

    def _exit_at_interpreter_exit(self) -> None:
        """Exit a bus the program forgot to exit, so its exit listeners still clean up.

        One left started (or starting, or stopping) is a mistake worth a warning: the program
        ended without ``block()``. One that was stopped is only missing its ``exit()``.
        """
        if self._state is not states.EXITING:
            if self._state is not states.STOPPED:
                message = (
                    f"the program's main thread ended with the bus {self._state.name}: exiting "
                    "the bus now; call bus.block() after bus.start() to serve until a signal "
                    "or bus.exit(), or call bus.exit() before the program ends"
                )
                self.log(message, 30)
                with warnings.catch_warnings():
                    warnings.simplefilter("default")
                    warnings.warn(message, RuntimeWarning, stacklevel=1)
            self.exit()

    @property
    def wakeup_fd(self) -> int:
        """The write end of the main thread's wake-up pipe.

        The signal handler makes it the process's ``signal.set_wakeup_fd``: a signal that the
        kernel delivers to another thread then still wakes the main thread in ``block()``,
        where Python runs signal handlers.
        """
        return self._wakeup_w

    def _reopen_wakeup_pipe(self) -> None:
        """Give a forked child its own wake-up pipe, so it and its parent don't wake each other."""
        old_write_end = self._wakeup_w
        for fd in (self._wakeup_r, self._wakeup_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wakeup_r, self._wakeup_w = _wakeup_pipe()
        try:
            if signal.set_wakeup_fd(-1) == old_write_end:
                signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        except ValueError:
            pass  # forked from a thread other than the main one: no signals here


def _is_expected(error: BaseException) -> bool:
    """Return True for errors that explain themselves (bad settings, an address in use).

    Such errors carry a sysexits ``exit_code`` (see sitebus.errors); their message says all
    a person needs, so they are logged without a traceback. ChannelFailures is expected when
    everything it gathered is.
    """
    if isinstance(error, ChannelFailures):
        return all(_is_expected(e) for e in error.get_instances())
    return isinstance(getattr(error, "exit_code", None), int)


def _wakeup_pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


def _drain(fd: int) -> bytes:
    """Read a non-blocking pipe empty; return what was in it."""
    received = b""
    try:
        while chunk := os.read(fd, 4096):
            received += chunk
    except BlockingIOError:
        pass
    return received


def _close_on_exec_except(keep: set[int]) -> None:
    """Mark every open descriptor above 2 close-on-exec, except those in ``keep``."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(fd) for fd in range(3, Bus.max_cloexec_files)]
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # closed meanwhile, or the directory's own descriptor


def flush_and_exit(code: int) -> NoReturn:
    """End the process now with ``code``, once the logs and standard streams are flushed."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    os._exit(code)


# -- the exit status after a failed start -----------------------------------------------------
#
# start() re-raises the error of a failed start listener so callers can handle it; when nobody
# does, the process should end with EX_SOFTWARE (70), not the interpreter's 1. The excepthook
# notes that the uncaught error was a failed start, and a hook registered when this module is
# imported (so it runs after the atexit hooks registered later) sets the exit status.

_failed_starts: list[BaseException] = []
_uncaught_failed_start = False
_hook_installed = False


def _install_start_failure_exit_code() -> None:
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        global _uncaught_failed_start
        if error in _failed_starts:
            _uncaught_failed_start = True
        previous(kind, error, tb)

    sys.excepthook = excepthook


def _exit_status_at_interpreter_exit() -> None:
    if _uncaught_failed_start:
        flush_and_exit(EX_SOFTWARE)


atexit.register(_exit_status_at_interpreter_exit)

_live_buses: weakref.WeakSet[Bus] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for live in list(_live_buses):
        live._reopen_wakeup_pipe()


os.register_at_fork(after_in_child=_after_fork_in_child)
