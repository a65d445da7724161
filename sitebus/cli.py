"""The ``sitebus`` command (also ``python -m sitebus``): run a site, check it, control it.

``sitebus run [APP ...]`` takes every option of the reference's ``cherryd`` (``-c -e -d -p -i
-P -f -s -x``) and the one-liner's (``APP`` as ``module:attr`` or ``PREFIX=module:attr``,
``-b/--bind``, ``-w/--workers``, ``--access-log``, ``--error-log``, ``--chdir``,
``--reload/--no-reload``). This module only parses them into ``sitebus.site.launch.Options``;
``launch.build`` makes the site (and reads ``SITEBUS_*`` variables), and the bus's first
start prepares it as it would for any entry point. With nothing mounted it serves a small
default site.

``sitebus check`` builds the site the same way without starting it, and always imports the
apps. ``stop``, ``restart``, ``reload`` and ``status`` find a running site through its PID
file (``-p``, or the one its config names) and signal it: SIGTERM, SIGUSR2, SIGUSR1; they
wait, with a deadline, until the site says (in its status file) that the change is done. They
signal only a process that holds the PID file's lock and is a sitebus site
(``sitebus.process.pidowner``), and otherwise exit non-zero saying what they found.

Exit codes follow sysexits: 64 usage, 66 no input (a missing PID file), 69 unavailable,
70 software, 73 cannot create, 75 temporary failure, 77 permission, 78 config.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

from sitebus import __version__
from sitebus.errors import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_OK,
    EX_SOFTWARE,
    EX_USAGE,
    SitebusError,
    UsageError,
    exit_code_of,
    root_causes,
)
from sitebus.site.launch import Options, build

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
        command.add_argument("apps", nargs="*", default=[], metavar="APP",
                             help="a WSGI app or services.web root to mount: module:attr (at "
                                  "the root) or PREFIX=module:attr")
        command.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                             help="a config file (repeatable)")
        command.add_argument("-e", "--environment", metavar="ENV",
                             help="apply a config environment: production, staging, embedded, "
                                  "test_suite")
        command.add_argument("-i", "--import", dest="imports", action="append", default=[],
                             metavar="MODULE", help="a module to import (repeatable)")
        command.add_argument("-P", "--Path", dest="paths", action="append", default=[],
                             metavar="PATH", help="a directory to add to sys.path (repeatable)")
        command.add_argument("-b", "--bind", dest="binds", action="append", default=[],
                             metavar="ADDRESS", help="listen on HOST:PORT, :PORT (every "
                             "interface), [IPv6]:PORT or unix:PATH (repeatable)")
        command.add_argument("-w", "--workers", type=_worker_count, metavar="N",
                             help="serve from N pre-fork worker processes (server.workers)")
        command.add_argument("--access-log", metavar="FILE",
                             help="append access lines to FILE ('-': stdout)")
        command.add_argument("--error-log", metavar="FILE",
                             help="append the error log to FILE ('-': stderr)")
        command.add_argument("--chdir", metavar="DIR",
                             help="change to DIR before loading the apps")
        command.add_argument("--reload", action=argparse.BooleanOptionalAction, default=None,
                             help="restart when a source or config file changes "
                                  "(engine.autoreload.on)")

    run = commands.add_parser("run", help="run the site in the foreground (or as a daemon)",
                              description="Run the site: start every service and serve until "
                                          "stopped. Settings also come from SITEBUS_* "
                                          "environment variables; options win over them.")
    site_options(run)
    run.add_argument("-d", "--daemonize", action="store_true", help="run as a daemon")
    run.add_argument("-p", "--pidfile", metavar="FILE", help="write the process id to FILE")
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
    from sitebus.site.unitfile import add_parser as add_unit_parser

    add_unit_parser(commands)
    return parser


# -- running and checking --------------------------------------------------------------------------


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a number of workers, 0 or more, got {text!r}")
    return count


def options_of(args: argparse.Namespace) -> Options:
    """Return the launch Options the parsed command line gives."""
    return Options(
        config_files=args.config, environment=args.environment, imports=args.imports,
        paths=args.paths, apps=args.apps, binds=args.binds, workers=args.workers,
        access_log=args.access_log, error_log=args.error_log, chdir=args.chdir,
        reload=args.reload, pidfile=getattr(args, "pidfile", None),
        daemonize=getattr(args, "daemonize", False), gateway=getattr(args, "gateway", None))


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
        site = build(options_of(args), defer_apps=True)
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
        site = build(options_of(args))
    except (SitebusError, ValueError) as error:
        code = _report(error)
        return code if code != EX_SOFTWARE else EX_CONFIG
    mounted = ", ".join(f"{name!r} ({kind})" for name, kind in site.app_kinds()) or "nothing"
    workers = f" from {site.workers.workers} workers" if site.has_workers else ""
    print(f"{PROG}: config is valid; apps mounted at {mounted}; "
          f"serving on {', '.join(site.descriptions())}{workers}")
    return EX_OK


def command_unit(args: argparse.Namespace) -> int:
    from sitebus.site.unitfile import command_unit as write_units

    try:
        return write_units(args)
    except (SitebusError, ValueError) as error:
        return _report(error)


# -- controlling a running site --------------------------------------------------------------------


def _find_pidfile(args: argparse.Namespace) -> str:
    if args.pidfile:
        return os.path.abspath(args.pidfile)
    from sitebus.site.config import Config

    for filename in args.config:
        found = Config(filename).get("engine.pidfile.pidfile")
        if found:
            return os.path.abspath(found)
    raise UsageError("which site? give its PID file with -p FILE (or its config with -c FILE "
                     "naming engine.pidfile.pidfile)")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise SitebusError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def command_control(args: argparse.Namespace) -> int:
    """Signal the site a PID file names, once ``sitebus.process.pidowner`` has checked it is one."""
    from sitebus.process.pidowner import find_site, remove_if_left
    from sitebus.process.status import process_info, read_status, status_path

    try:
        pidfile = _find_pidfile(args)
    except SitebusError as error:
        return _report(error)
    found = find_site(pidfile)
    verdict = found.verdict
    if verdict.kind != "site" or verdict.pid is None:
        if args.command == "status":
            print(f"{PROG}: not running ({verdict.message})", file=sys.stderr)
            return verdict.status_code
        print(f"{PROG}: error: {verdict.message}", file=sys.stderr)
        return verdict.exit_code
    pid = verdict.pid
    status_file = status_path(pidfile)
    before = read_status(status_file) or {}
    try:
        if args.command == "stop":
            found.send(signal.SIGTERM)
            if not found.wait_exit(args.timeout):
                raise SitebusError(f"gave up after {args.timeout:g} s waiting for pid {pid} "
                                   "to exit")
            if remove_if_left(pidfile, found):
                print(f"{PROG}: removed {pidfile}, which the site could not remove (its "
                      "directory should be writable by the site's user)", file=sys.stderr)
            print(f"{PROG}: stopped pid {pid}")
        elif args.command == "reload":
            found.send(signal.SIGUSR1)
            _wait(lambda: (read_status(status_file) or {}).get("reloads", 0)
                  > before.get("reloads", 0), args.timeout, "the reload to finish")
            after = read_status(status_file) or {}
            called_off = after.get("reload_error")
            if called_off:
                print(f"{PROG}: error: the reload of pid {pid} was called off; the workers "
                      f"that served keep serving: {called_off}", file=sys.stderr)
                return EX_SOFTWARE
            if after.get("log_error"):
                print(f"{PROG}: error: pid {pid} reloaded but {after['log_error']}",
                      file=sys.stderr)
                return EX_CANTCREAT
            print(f"{PROG}: reloaded pid {pid}")
        elif args.command == "restart":
            found.send(signal.SIGUSR2)

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
    finally:
        found.close()
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
    if info.get("log_error"):
        lines.append(f"logs:      {info['log_error']}")
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
