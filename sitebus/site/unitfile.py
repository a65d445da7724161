"""``sitebus unit``: write systemd units for a site, with this installation's real paths.

``sitebus unit -c site.conf [--socket] [--user U] [--name NAME] [-o DIR]`` prints (or writes
into DIR) a ``NAME.service`` that runs ``sitebus run -e production`` with the absolute path
of this installation's ``sitebus`` (the one in the running interpreter's environment, a
virtualenv's included), the config files' absolute paths and the current directory as its
working directory (where the ``tree.*`` apps are imported from). With ``--socket``, also a
``NAME.socket`` that listens on the addresses of the config's servers, in order: systemd binds
them, starts the site on the first connection and keeps them across restarts. The units pass
``systemd-analyze verify`` as written (a test runs it).

The config is read, not run: only ``[global]``'s ``server.*`` addresses, the ``log.*`` files
(their directories become ``ReadWritePaths=``, as ``ProtectSystem=full`` makes the rest of
``/usr``, ``/boot`` and ``/etc`` read-only) and ``engine.pidfile.pidfile``. Nothing is
imported, no log file opened. ``unit_files`` is the pure part: settings and paths in, text out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sitebus.errors import EX_OK, ConfigError, UsageError

__all__ = ["UnitSpec", "add_parser", "command_unit", "listen_addresses", "sitebus_program",
           "unit_files"]


@dataclass
class UnitSpec:
    """What the units say: a name, the command's parts and where the site reads and writes."""

    name: str
    program: list[str]
    configs: list[str]
    workdir: str
    user: str | None = None
    group: str | None = None
    listens: list[str] = field(default_factory=list)
    writable: list[str] = field(default_factory=list)


def sitebus_program() -> list[str]:
    """Return the command that runs this installation's sitebus, as absolute paths."""
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "sitebus")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("sitebus")
    if found and os.path.realpath(os.path.dirname(found)) == os.path.realpath(
            os.path.dirname(sys.executable)):
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "sitebus"]


def listen_addresses(settings: Mapping[str, Any]) -> list[str]:
    """Return ``ListenStream=`` values for the servers a ``[global]`` section configures."""
    names: list[str | None] = [None]
    for key in settings:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "server" and parts[2].startswith("socket_") \
                and parts[1] not in names:
            names.append(parts[1])
    listens = []
    for name in names:
        prefix = "server." if name is None else f"server.{name}."
        if settings.get(prefix + "type", "cheroot") != "cheroot":
            continue
        socket_file = settings.get(prefix + "socket_file")
        if socket_file:
            listens.append(os.path.abspath(str(socket_file)))
            continue
        if name is not None and prefix + "socket_port" not in settings:
            continue  # a server section without an address of its own (tls keys only...)
        host = str(settings.get(prefix + "socket_host", "127.0.0.1"))
        port = settings.get(prefix + "socket_port", 8080)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ConfigError(f"expected a port from 1 to 65535 for a socket unit, got "
                              f"{port!r}", key=prefix + "socket_port", value=port)
        if host in ("0.0.0.0", "::", ""):
            listens.append(str(port))
        elif ":" in host:
            listens.append(f"[{host}]:{port}")
        else:
            listens.append(f"{host}:{port}")
    return listens


def writable_directories(settings: Mapping[str, Any]) -> list[str]:
    """Return the directories the site writes files into: its logs' and PID file's."""
    directories = []
    for key in ("log.error_file", "log.access_file", "engine.pidfile.pidfile"):
        value = settings.get(key)
        if isinstance(value, str) and value:
            directory = os.path.dirname(os.path.abspath(value))
            if directory not in directories:
                directories.append(directory)
    return directories


def _quote(word: str) -> str:
    """Quote a word for an ExecStart= line (systemd.service(5), "Command lines")."""
    if word and not any(c in word for c in ' \t"\'\\;$%'):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def unit_files(spec: UnitSpec, socket: bool) -> dict[str, str]:
    """Return {file name: text} of the service unit (and the socket unit with ``socket``)."""
    command = [*spec.program, "run", "-e", "production"]
    for config in spec.configs:
        command += ["-c", config]
    lines = [
        f"# Written by `sitebus unit` for {', '.join(spec.configs) or 'the default site'}.",
        "[Unit]",
        f"Description=sitebus web site {spec.name}",
        "After=network.target",
        "",
        "[Service]",
        "# READY=1 once every server listens; RELOADING=1/READY=1 around a reload.",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_quote(word) for word in command),
        "# Restart in place: new code and config, same sockets, no refused connection.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "# SIGTERM to the master only: it drains, then stops its workers itself.",
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "TimeoutStopSec=30",
        "Restart=on-failure",
        "RestartSec=2",
        "# A bad command line, config or permission does not get better by restarting.",
        "RestartPreventExitStatus=64 77 78",
        "WatchdogSec=30",
        "FileDescriptorStoreMax=16",
        f"WorkingDirectory={spec.workdir}",
    ]
    if spec.user:
        lines.append(f"User={spec.user}")
    if spec.group:
        lines.append(f"Group={spec.group}")
    lines.append("NoNewPrivileges=yes")
    in_tmp = [p for p in (spec.workdir, *spec.configs, *spec.writable)
              if p.startswith(("/tmp/", "/var/tmp/"))]
    if not in_tmp:  # a private /tmp would hide the site's own files
        lines.append("PrivateTmp=yes")
    lines.append("ProtectSystem=full")
    if spec.writable:
        lines.append("ReadWritePaths=" + " ".join(f"-{d}" for d in spec.writable))
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    files = {f"{spec.name}.service": "\n".join(lines)}
    if socket:
        if not spec.listens:
            raise ConfigError("the config gives no address to listen on (server.socket_port "
                              "or server.socket_file), so there is no socket unit to write",
                              key="server.socket_port")
        socket_lines = [
            "# Written by `sitebus unit --socket`: systemd binds these and starts the site on",
            "# the first connection; the servers take them in this order.",
            "[Unit]",
            f"Description=sitebus web site {spec.name} sockets",
            "",
            "[Socket]",
            *(f"ListenStream={address}" for address in spec.listens),
            f"Service={spec.name}.service",
        ]
        if spec.user and any(address.startswith("/") for address in spec.listens):
            socket_lines += [f"SocketUser={spec.user}", "SocketMode=0660"]
        socket_lines += ["", "[Install]", "WantedBy=sockets.target", ""]
        files[f"{spec.name}.socket"] = "\n".join(socket_lines)
    return files


# -- the command ----------------------------------------------------------------------------

def add_parser(commands: Any) -> None:
    """Add the ``unit`` command to the CLI's subcommands."""
    unit = commands.add_parser(
        "unit", help="write systemd units for a site (with this installation's paths)",
        description="Print (or write into DIR) a systemd service unit, and with --socket a "
                    "socket unit, that run this site with production settings.")
    unit.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                      help="the site's config file (repeatable)")
    unit.add_argument("--socket", action="store_true",
                      help="also a socket unit listening on the config's addresses")
    unit.add_argument("--user", metavar="USER", help="run as USER (User=)")
    unit.add_argument("--group", metavar="GROUP", help="run with GROUP (Group=)")
    unit.add_argument("--name", default="sitebus", metavar="NAME",
                      help="the units' name (default sitebus: sitebus.service)")
    unit.add_argument("-o", "--output", metavar="DIR",
                      help="write NAME.service (and NAME.socket) into DIR instead of printing")


def _global_settings(configs: Sequence[str]) -> dict[str, Any]:
    from sitebus.site.config import Parser

    settings: dict[str, Any] = {}
    for filename in configs:
        parsed = Parser().dict_from_file(filename)
        settings.update(parsed.get("global", {}))
    return settings


def command_unit(args: argparse.Namespace) -> int:
    """Print or write the units; raise a SitebusError for bad input."""
    name = args.name
    if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise UsageError(f"--name: expected a unit name such as 'sitebus' or 'shop', got "
                         f"{name!r}")
    configs = [os.path.abspath(config) for config in args.config]
    for config in configs:
        if not os.path.isfile(config):
            raise ConfigError("cannot read the config file: no such file", filename=config)
    settings = _global_settings(configs)
    spec = UnitSpec(name=name, program=sitebus_program(), configs=configs,
                    workdir=os.getcwd(), user=args.user, group=args.group,
                    listens=listen_addresses(settings),
                    writable=writable_directories(settings))
    files = unit_files(spec, args.socket)
    if args.output is None:
        for index, (filename, text) in enumerate(files.items()):
            print(("\n" if index else "") + f"# {filename}\n{text}", end="")
        return EX_OK
    if not os.path.isdir(args.output):
        raise UsageError(f"-o: {args.output!r} is not a directory")
    for filename, text in files.items():
        path = os.path.join(args.output, filename)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"sitebus: wrote {path}")
    return EX_OK
