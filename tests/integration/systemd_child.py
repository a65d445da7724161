"""A small program that uses sitebus.systemd, run by the integration tests.

``python systemd_child.py activate``: takes the sockets systemd passed (``listen_fds``), says
``SOCKETS=name/family,...`` on NOTIFY_SOCKET, then accepts one connection on each socket and
answers ``name family`` on it.

``python systemd_child.py notifier``: a Bus with SignalHandler and SystemdNotifier; it binds a
TCP listener named ``web`` on 127.0.0.1 (or takes it back from LISTEN_FDS after a re-exec) and,
with CHILD_FDSTORE=1, stores it. SIGUSR2 makes the main thread wait until a line arrives on
the FIFO named by CHILD_FIFO (a stuck main loop, for the watchdog test).

``python systemd_child.py handover``: generation 0 binds a TCP and a UNIX listener, says
READY=1, waits for a line on stdin, then hands its listeners over and re-executes itself;
generation 1 takes them back by name and answers one connection on each.

``python systemd_child.py journal [force]``: attaches the journal handler (when stderr is the
journal, or forced), prints whether it did, and logs two records.
"""

import logging
import os
import socket
import sys

from sitebus import systemd
from sitebus.bus import Bus
from sitebus.process.signals import SignalHandler
from sitebus.site.logs import log_to_screen


def activate() -> None:
    sockets = systemd.listen_fds()
    leftover = sorted(k for k in os.environ if k.startswith("LISTEN_"))
    families = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}
    described = ",".join(f"{name}/{families[sock.family]}" for sock, name in sockets)
    systemd.notify(systemd.notify_message(SOCKETS=described, LEFTOVER=":".join(leftover)))
    for sock, name in sockets:
        connection, _ = sock.accept()
        with connection:
            connection.sendall(f"{name} {families[sock.family]}\n".encode())


def notifier() -> None:
    log_to_screen()
    bus = Bus()
    passed = systemd.listen_fds()
    if passed:
        listener = passed[0][0]
    else:
        listener = socket.create_server(("127.0.0.1", 0))
    bus.inherit_fds[listener.fileno()] = "web"
    signals = SignalHandler(bus)
    signals.subscribe()
    plugin = systemd.SystemdNotifier(bus)
    if os.environ.get("CHILD_FDSTORE") == "1":
        plugin.fdstore = True
    plugin.subscribe()

    def stuck() -> None:
        print("stuck", flush=True)
        with open(os.environ["CHILD_FIFO"]) as fifo:
            print(f"unstuck: {fifo.readline().strip()}", flush=True)

    signals.set_handler("SIGUSR2", stuck)
    print(f"port={listener.getsockname()[1]}", flush=True)
    bus.start()
    bus.block()


def handover() -> None:
    generation = int(os.environ.get("CHILD_GENERATION", "0"))
    os.environ["CHILD_GENERATION"] = str(generation + 1)
    passed = systemd.listen_fds()
    if passed:
        fds = systemd.assign_listeners([(s.fileno(), n) for s, n in passed],
                                       [systemd.Claim("local"), systemd.Claim("web")])
        by_fd = {s.fileno(): s for s, _ in passed}
        listeners = {name: by_fd[fd] for name, fd in fds.items()}
    else:
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(os.environ["CHILD_UNIX_PATH"])
        unix.listen()
        listeners = {"web": socket.create_server(("127.0.0.1", 0)), "local": unix}
    fd_list = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    systemd.notify(systemd.notify_message(
        READY=1, GENERATION=generation, PID=os.getpid(),
        PORT=listeners["web"].getsockname()[1],
        FDS=",".join(f"{n}:{s.fileno()}" for n, s in sorted(listeners.items())),
        LEFTOVER=":".join(sorted(k for k in os.environ if k.startswith("LISTEN_"))),
        OPEN=len(fd_list)))
    if generation == 0:
        sys.stdin.readline()
        moved = systemd.hand_over_listeners({s.fileno(): n for n, s in listeners.items()})
        assert sorted(moved) == [3, 4], moved
        os.execv(sys.executable, [sys.executable, *sys.argv])
    for name in ("web", "local"):
        connection, _ = listeners[name].accept()
        with connection:
            connection.sendall(f"generation {generation} {name}\n".encode())


def journal() -> None:
    bus = Bus()
    handler = systemd.log_to_journal(bus, identifier="sitebus-test",
                                     force=sys.argv[2:] == ["force"])
    print(f"journal handler: {type(handler).__name__}", flush=True)
    bus.log("a warning from the engine", 30)
    logging.getLogger("sitebus").error("an HTTP error", extra={"context": "HTTP"})


if __name__ == "__main__":
    scenarios = {"activate": activate, "notifier": notifier, "handover": handover,
                 "journal": journal}
    scenarios[sys.argv[1]]()
