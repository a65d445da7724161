"""The ``sitebus`` command (also ``python -m sitebus``): run a site, check it, control it.

``sitebus run`` takes every option of the reference's ``cherryd`` and builds the process-wide
site from them in the reference's order: paths, imports (which may mount apps), config files
(site-wide ``[global]``; their ``[/path]`` sections go to the one app when exactly one is
mounted), the environment, then the daemonizer, PID file and signal handler; then it starts the
bus and blocks. With nothing mounted it serves a small default site.

With workers (``-w N`` or ``server.workers``) and without ``server.preload``, ``run`` imports
no app in the master: the ``-i`` modules and ``tree.*`` entries are recorded and each worker
loads them after the fork (see ``sitebus.workers``). Whether that is so must be known before
the imports, which come first, so the config files are read once beforehand for those two
keys alone (``planned_workers``).

``sitebus check`` does all of that except starting, and always imports the apps. ``stop``,
``restart``, ``reload`` and ``status`` find a running site through its PID file (``-p``, or
the one its config names) and signal it: SIGTERM, SIGUSR2, SIGUSR1; they wait, with a
deadline, until the site says (in its status file) that the change is done.

Exit codes follow sysexits: 64 usage, 66 no input (a missing PID file), 69 unavailable,
70 software, 73 cannot create, 75 temporary failure, 77 permission, 78 config.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from sitebus import __version__
from sitebus.errors import (
    EX_CONFIG,
    EX_OK,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    EX_USAGE,
    ConfigError,
    SitebusError,
    UsageError,
    exit_code_of,
    root_causes,
)

PROG = "sitebus"


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors exit 64 (EX_USAGE), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Run and control a web site.")
    parser.add_argument("--version", action="version", version=f"sitebus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=ArgumentParser)

    def site_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                             help="a config file (repeatable)")
        command.add_argument("-e", "--environment", metavar="ENV",
                             help="apply a config environment: production, staging, embedded, "
                                  "test_suite")
        command.add_argument("-i", "--import", dest="imports", action="append", default=[],
                             metavar="MODULE", help="a module to import (repeatable)")
        command.add_argument("-P", "--Path", dest="paths", action="append", default=[],
                             metavar="PATH", help="a directory to add to sys.path (repeatable)")

    run = commands.add_parser("run", help="run the site in the foreground (or as a daemon)",
                              description="Run the site: start every service and serve until "
                                          "stopped.")
    site_options(run)
    run.add_argument("-d", "--daemonize", action="store_true", help="run as a daemon")
    run.add_argument("-p", "--pidfile", metavar="FILE", help="write the process id to FILE")
    run.add_argument("-w", "--workers", type=_worker_count, metavar="N",
                     help="serve from N pre-fork worker processes (server.workers)")
    gateway = run.add_mutually_exclusive_group()
    gateway.add_argument("-f", dest="gateway", action="store_const", const="fastcgi",
                         help="serve FastCGI (through flup) instead of HTTP")
    gateway.add_argument("-s", dest="gateway", action="store_const", const="scgi",
                         help="serve SCGI (through flup) instead of HTTP")
    gateway.add_argument("-x", dest="gateway", action="store_const", const="cgi",
                         help="serve CGI (through flup) instead of HTTP")

    check = commands.add_parser("check", help="validate the config and imports, then exit",
                                description="Build the site as `run` would, without starting "
                                            "it. Exit 0 if it is valid, 78 if not.")
    site_options(check)

    for name, text in (("stop", "stop a running site"),
                       ("restart", "restart a running site in place (same pid, same sockets)"),
                       ("reload", "reload a running site gracefully (reopen logs, reload "
                                  "services)"),
                       ("status", "show what a running site is doing")):
        control = commands.add_parser(name, help=text, description=text[0].upper() + text[1:]
                                      + ". The site is found through its PID file.")
        control.add_argument("-p", "--pidfile", metavar="FILE", help="the site's PID file")
        control.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                             help="the site's config file (to find its PID file)")
        control.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                             help="how long to wait for the site (default 60)")
        if name == "status":
            control.add_argument("--json", action="store_true", help="print JSON")
    from sitebus.unitfile import add_parser as add_unit_parser

    add_unit_parser(commands)
    return parser


# -- building the site -----------------------------------------------------------------------------


def _import_modules(names: Sequence[str]) -> None:
    for name in names:
        module = name[:-3].replace(os.sep, ".") if name.endswith(".py") else name
        try:
            importlib.import_module(module)
        except Exception as error:
            raise ConfigError(f"cannot import {module!r}: {type(error).__name__}: {error}",
                              key="-i") from None


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a number of workers, 0 or more, got {text!r}")
    return count


def planned_workers(config_files: Sequence[str], workers: int | None) -> tuple[int, bool]:
    """Return (server.workers, server.preload) as the config files will set them.

    ``workers`` (the -w option) wins. Only those two keys of ``[global]`` are read; a file or
    value that cannot be read counts as unset here, and the real reading reports it.
    """
    from sitebus.config import Parser, unrepr

    found: dict[str, Any] = {}
    for filename in config_files:
        parser = Parser()
        try:
            parser.read(filename)
            for key in ("server.workers", "server.preload"):
                if parser.has_option("global", key):
                    found[key] = unrepr(parser.get("global", key))
        except Exception:
            continue
    count = workers if workers is not None else found.get("server.workers", 0)
    return (count if isinstance(count, int) else 0), found.get("server.preload") is True


def _load_apps(site: Any, args: argparse.Namespace) -> None:
    """Import the -i modules, mount the tree.* entries, merge app config; the default site
    when nothing is mounted."""
    _import_modules(args.imports)
    site.mount_deferred()
    framework_apps = [app for app in site.tree.apps.values() if hasattr(app, "merge")]
    if len(framework_apps) == 1:
        for filename in args.config:
            framework_apps[0].merge(filename)
    if not site.tree.apps and not site.tree.vhosts:
        from sitebus.welcome import welcome_app

        site.tree.graft(welcome_app(site), "")


def build_site(args: argparse.Namespace, defer_apps: bool = False) -> Any:
    """Configure the process-wide site from the command line; start nothing.

    With ``defer_apps`` (``sitebus run``), apps are left to the workers when there will be
    workers and no preload: ``site.workers.load_apps`` loads them.
    """
    from sitebus.site import site

    for path in reversed(args.paths):
        sys.path.insert(0, os.path.abspath(path))
    if "" not in sys.path:
        sys.path.insert(0, "")
    workers_option = getattr(args, "workers", None)
    count, preload = planned_workers(args.config, workers_option)
    deferred = defer_apps and count > 0 and not preload
    if deferred:
        site.defer_apps()
    else:
        _import_modules(args.imports)
    for filename in args.config:
        site.config.update(filename)
    if workers_option is not None:
        site.workers.workers = workers_option
    if args.environment:
        site.config.update({"environment": args.environment})
    if deferred and site.has_workers and not site.workers.preload:
        site.workers.load_apps = lambda: _load_apps(site, args)
    else:
        if deferred:
            _import_modules(args.imports)
        _load_apps(site, argparse.Namespace(imports=[], config=args.config))
    site.check()
    return site


def _report(error: BaseException) -> int:
    for cause in root_causes(error):
        if isinstance(cause, SitebusError):
            text = str(cause)
        else:
            text = f"{type(cause).__name__}: {cause}"
        print(f"{PROG}: error: {text}", file=sys.stderr)
    return exit_code_of(error)


def command_run(args: argparse.Namespace) -> int:
    try:
        site = build_site(args, defer_apps=True)
        if args.pidfile:
            site.use_pidfile(os.path.abspath(args.pidfile))
        if args.gateway:
            site.use_gateway(args.gateway)
        if args.daemonize:
            site.log.screen = False
            site.plugin("daemonizer").subscribe()
        site.prepare()  # first: under systemd, it sends the log to journald from here on
        site.bus.signal_handler.subscribe()
    except (SitebusError, ValueError) as error:
        return _report(error)
    try:
        site.bus.start()
    except Exception as error:
        code = _report(error)
        daemonizer = getattr(site.bus, "daemonizer", None)
        if daemonizer is not None:
            daemonizer.report_failure(code, "; ".join(str(e) for e in root_causes(error)))
        return code
    site.bus.block()
    failure = site.workers.failure if site.has_workers else None
    if failure is not None:
        print(f"{PROG}: error: {failure.message}", file=sys.stderr)
        return failure.code
    return EX_OK


def command_check(args: argparse.Namespace) -> int:
    try:
        site = build_site(args)
    except (SitebusError, ValueError) as error:
        code = _report(error)
        return code if code != EX_SOFTWARE else EX_CONFIG
    mounted = ", ".join(repr(name or "/") for name in sorted(site.tree.apps)) or "nothing"
    workers = f" from {site.workers.workers} workers" if site.has_workers else ""
    print(f"{PROG}: config is valid; apps mounted at {mounted}; "
          f"serving on {', '.join(site.descriptions())}{workers}")
    return EX_OK


def command_unit(args: argparse.Namespace) -> int:
    from sitebus.unitfile import command_unit as write_units

    try:
        return write_units(args)
    except (SitebusError, ValueError) as error:
        return _report(error)


# -- controlling a running site --------------------------------------------------------------------


def _find_pidfile(args: argparse.Namespace) -> str:
    if args.pidfile:
        return os.path.abspath(args.pidfile)
    from sitebus.config import Config

    for filename in args.config:
        found = Config(filename).get("engine.pidfile.pidfile")
        if found:
            return os.path.abspath(found)
    raise UsageError("which site? give its PID file with -p FILE (or its config with -c FILE "
                     "naming engine.pidfile.pidfile)")


def _read_pid(pidfile: str) -> int:
    try:
        with open(pidfile, encoding="ascii") as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        from sitebus.errors import NoInputError

        raise NoInputError(f"no site is running: {pidfile} does not exist") from None
    except (OSError, ValueError) as error:
        raise SitebusError(f"cannot read the pid from {pidfile}: {error}") from None


def _alive(pid: int) -> bool:
    """Return True while ``pid`` runs; a zombie (exited, not yet reaped) has stopped."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise SitebusError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def command_control(args: argparse.Namespace) -> int:
    from sitebus.status import process_info, read_status, status_path

    try:
        pidfile = _find_pidfile(args)
        pid = _read_pid(pidfile)
    except SitebusError as error:
        if args.command == "status":
            print(f"{PROG}: not running ({error})", file=sys.stderr)
            return 3  # as LSB init scripts' status: program is not running
        return _report(error)
    if not _alive(pid):
        print(f"{PROG}: error: the site is not running (pid {pid} from {pidfile} is gone)",
              file=sys.stderr)
        return 3 if args.command == "status" else EX_UNAVAILABLE
    status_file = status_path(pidfile)
    before = read_status(status_file) or {}
    try:
        if args.command == "stop":
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not _alive(pid), args.timeout, f"pid {pid} to exit")
            print(f"{PROG}: stopped pid {pid}")
        elif args.command == "reload":
            os.kill(pid, signal.SIGUSR1)
            _wait(lambda: (read_status(status_file) or {}).get("reloads", 0)
                  > before.get("reloads", 0), args.timeout, "the reload to finish")
            called_off = (read_status(status_file) or {}).get("reload_error")
            if called_off:
                print(f"{PROG}: error: the reload of pid {pid} was called off; the workers "
                      f"that served keep serving: {called_off}", file=sys.stderr)
                return EX_SOFTWARE
            print(f"{PROG}: reloaded pid {pid}")
        elif args.command == "restart":
            os.kill(pid, signal.SIGUSR2)

            def restarted() -> bool:
                now = read_status(status_file) or {}
                return (now.get("state") == "STARTED"
                        and now.get("started_at") != before.get("started_at"))

            _wait(restarted, args.timeout, "the restart to finish")
            print(f"{PROG}: restarted pid {pid}")
        else:
            info = with_live_workers({**(read_status(status_file) or {}), **process_info(pid)})
            print(json.dumps(info, indent=1, sort_keys=True) if args.json else _format(info))
    except SitebusError as error:
        return _report(error)
    return EX_OK


def _format(info: dict[str, Any]) -> str:
    uptime = info["uptime"]
    lines = [
        f"state:     {info.get('state', 'unknown')}",
        f"pid:       {info['pid']}",
        f"uptime:    {_duration(uptime)}",
        f"memory:    {info['rss'] / 1048576:.1f} MiB",
        f"threads:   {info['threads']}",
        f"restarts:  {info.get('restarts', 0)}   reloads: {info.get('reloads', 0)}",
        "listeners: " + (", ".join(info.get("serving") or info["listeners"]) or "none"),
    ]
    if info.get("last_error"):
        lines.append(f"error:     {info['last_error']}")
    if info.get("reload_error"):
        lines.append(f"reload:    called off: {info['reload_error']}")
    workers = info.get("workers") or []
    if workers or info.get("workers_target"):
        lines.append(f"workers:   {len(workers)} (target {info.get('workers_target', '?')})")
    for worker in workers:
        lines.append(f"  pid {worker.get('pid')}  age {_duration(worker.get('age', 0))}  "
                     f"memory {worker.get('rss', 0) / 1048576:.1f} MiB  "
                     f"requests {worker.get('requests', 0)}  {worker.get('state', '?')}"
                     + (f" ({worker['reason']})" if worker.get("reason") else ""))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (f"{seconds // 86400}d {seconds % 86400 // 3600:02d}:{seconds % 3600 // 60:02d}:"
            f"{seconds % 60:02d}")


def with_live_workers(info: dict[str, Any]) -> dict[str, Any]:
    """Give each worker of the status file its age and memory as psutil sees them now."""
    live = {child["pid"]: child for child in info.get("children") or []}
    workers = []
    for worker in info.get("workers") or []:
        child = live.get(worker.get("pid"))
        if child is not None:
            worker = {**worker, "age": child["uptime"], "rss": child["rss"]}
        workers.append(worker)
    return {**info, "workers": workers} if workers else info


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run"])
    handlers = {"run": command_run, "check": command_check, "unit": command_unit}
    sys.exit(handlers.get(args.command, command_control)(args))
