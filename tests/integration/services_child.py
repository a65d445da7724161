"""A site-like program on a Bus with the site services, run by the integration tests.

``python services_child.py [options]`` builds a Bus with the SignalHandler and whichever of
PIDFile, Daemonizer and DropPrivileges the options ask for, starts it and blocks. Once the bus
is STARTED (from inside ``block()``) each process image appends a line of facts about itself
(pid, session, ids, umask, standard streams...) to ``--facts`` and says READY=1 on
NOTIFY_SOCKET. Everything is imported before the bus starts: after a privilege drop, the
interpreter's own directory may no longer be readable.
"""

import argparse
import errno
import json
import logging
import os
import socket
import sys
import threading

from sitebus.bus import Bus
from sitebus.errors import ConfigError, exit_code_of, root_causes
from sitebus.process.daemon import Daemonizer
from sitebus.process.pidfile import PIDFile
from sitebus.process.privileges import DropPrivileges
from sitebus.process.signals import SignalHandler
from sitebus.site.logs import ErrorLogFormatter, log_to_screen


def notify(message: str) -> None:
    """Best effort: after a privilege drop the socket's directory may be out of reach."""
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), path)
        except OSError:
            pass


def facts(generation: int, inherited: "socket.socket | None") -> dict:
    umask = os.umask(0)
    os.umask(umask)
    streams = {}
    for fd in (0, 1, 2):
        try:
            streams[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            streams[fd] = None
    try:
        os.setuid(0)
        regain = "succeeded"
    except PermissionError:
        regain = "PermissionError"
    return {
        "generation": generation,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "cwd": os.getcwd(),
        "umask": umask,
        "uids": os.getresuid(),
        "gids": os.getresgid(),
        "groups": sorted(os.getgroups()),
        "streams": streams,
        "regain_root": regain,
        "daemon_env": os.environ.get("SITEBUS_DAEMON_PID"),
        "threads": threading.active_count(),
        "fds": open_descriptors(),
        "inherited": None if inherited is None else sock_name(inherited),
    }


def open_descriptors() -> dict:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the descriptor of the listing itself, closed meanwhile
    return found


def sock_name(sock: socket.socket) -> str:
    try:
        return str(sock.getsockname())
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", default="facts.jsonl")
    parser.add_argument("--pidfile")
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--stdout", default="/dev/null")
    parser.add_argument("--stderr", default="/dev/null")
    parser.add_argument("--uid")
    parser.add_argument("--gid")
    parser.add_argument("--umask")
    parser.add_argument("--pre-drop", help="become this user before anything else")
    parser.add_argument("--listen", type=int, help="bind 127.0.0.1:PORT at priority 75")
    parser.add_argument("--probe-port", type=int, help="after starting, try to bind this port")
    parser.add_argument("--create", help="create this file once everything has started")
    parser.add_argument("--fail-start", action="store_true")
    parser.add_argument("--no-report", action="store_true",
                        help="do not report a failed start to the waiting parent")
    parser.add_argument("--hard-exit", action="store_true", help="os._exit(3) while starting")
    parser.add_argument("--thread", action="store_true", help="run a thread before starting")
    parser.add_argument("--fork-worker", action="store_true")
    parser.add_argument("--exit-when-ready", action="store_true")
    parser.add_argument("--inherit", action="store_true",
                        help="list a bound socket in bus.inherit_fds before starting")
    parser.add_argument("--log-file", help="also log to this file, opened before starting")
    return parser.parse_args()


def serve(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(f"uid={os.getuid()}\n".encode())


def main() -> None:
    args = parse_args()
    generation = int(os.environ.get("CHILD_GENERATION", "0"))
    os.environ["CHILD_GENERATION"] = str(generation + 1)
    if args.pre_drop:
        import pwd

        entry = pwd.getpwnam(args.pre_drop)
        os.setgroups([])
        os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
        os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    log_to_screen()
    if args.log_file:
        handler = logging.FileHandler(args.log_file)
        handler.setFormatter(ErrorLogFormatter())
        logging.getLogger("sitebus").addHandler(handler)
    bus = Bus()
    inherited = None
    if args.inherit:
        inherited = socket.socket()
        inherited.bind(("127.0.0.1", 0))
        bus.inherit_fds[inherited.fileno()] = "probe"
        print(f"inherited {sock_name(inherited)}", flush=True)
    SignalHandler(bus).subscribe()
    if args.thread:
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="early-thread", daemon=True).start()

    daemonizer = None
    if args.daemon:
        daemonizer = Daemonizer(bus, stdout=args.stdout, stderr=args.stderr)
        daemonizer.subscribe()
    if args.pidfile:
        PIDFile(bus, args.pidfile).subscribe()
    if args.uid or args.gid or args.umask:
        try:
            DropPrivileges(bus, umask=args.umask, uid=args.uid, gid=args.gid).subscribe()
        except ConfigError as error:  # what the site config does with a bad setting
            print(f"config error: {error}", flush=True)
            sys.exit(error.exit_code)

    if args.listen is not None:
        listener = socket.socket()

        def bind() -> None:
            listener.bind(("127.0.0.1", args.listen))
            listener.listen()
            print(f"bound 127.0.0.1:{args.listen} as uid {os.getuid()}", flush=True)

        bus.subscribe("start", bind, priority=75)
        bus.subscribe("start", lambda: threading.Thread(
            target=serve, args=(listener,), daemon=True).start(), priority=80)

    if args.fork_worker:
        worker_read, worker_write = os.pipe()

    def late_start() -> None:
        if args.fail_start:
            raise OSError(errno.EADDRINUSE, "address already in use (on purpose)")
        if args.hard_exit:
            os._exit(3)
        if args.create:
            with open(args.create, "w") as created:
                created.write("made after the drop\n")
        if args.fork_worker:
            worker = os.fork()
            if worker == 0:  # past the at-fork hooks already
                print(f"worker {os.getpid()} running", flush=True)
                os.read(worker_read, 1)  # forever: this process holds the write end too
                os._exit(0)

    bus.subscribe("start", late_start, priority=80)
    try:
        bus.start()
    except Exception as error:
        # What the CLI does: tell the waiting parent the specific status and why.
        code = exit_code_of(error)
        if daemonizer is not None and not args.no_report:
            daemonizer.report_failure(code, "; ".join(str(e) for e in root_causes(error)))
        sys.exit(code)

    def ready() -> None:
        record = facts(generation, inherited)
        if args.probe_port is not None:
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", args.probe_port))
                record["probe"] = "bound"
            except OSError as error:
                record["probe"] = errno.errorcode.get(error.errno or 0, str(error))
            finally:
                probe.close()
        with open(args.facts, "a") as out:
            out.write(json.dumps(record) + "\n")
        print(f"READY {json.dumps(record)}", flush=True)
        notify(f"READY=1\nGENERATION={generation}\nPID={os.getpid()}")
        if args.exit_when_ready:
            bus.exit()

    bus.call_in_main_thread(ready)
    bus.block()


if __name__ == "__main__":
    main()
