"""Launch: what the command line and the environment ask for, made into the process-wide site.

``sitebus run`` and ``sitebus check`` parse their arguments into ``Options`` and call
``build``; the CLI assembles nothing itself. Starting is then the bus's own business: its
first start prepares the site (``Site.prepare``) the same way for every entry point.

Precedence, lowest first: a config environment's defaults (``-e``, or ``environment =`` in a
file), the config files' keys, ``SITEBUS_*`` environment variables, the command line. So an
explicit ``log.screen = True`` survives ``-e production``, and ``-b`` wins over
``server.socket_port``. Config files are read once: each is parsed into a dict, which says
whether there will be workers (needed before anything is imported) and then configures the
site.

The environment variables, for twelve-factor deployments (a command-line option wins)::

    SITEBUS_CONFIG      config files, separated by ':'      (-c)
    SITEBUS_ENV         a config environment                (-e)
    SITEBUS_APP         apps, separated by spaces           (APP ...)
    SITEBUS_BIND        addresses, separated by ',' or ' '  (-b)
    SITEBUS_WORKERS     a number of workers                 (-w)
    SITEBUS_ACCESS_LOG  a file, or '-' for stdout           (--access-log)
    SITEBUS_ERROR_LOG   a file, or '-' for stderr           (--error-log)
    SITEBUS_CHDIR       a directory to change to            (--chdir)
    SITEBUS_RELOAD      1/0, true/false, yes/no, on/off     (--reload/--no-reload)
    SITEBUS_PIDFILE     a PID file                          (-p)
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sitebus.errors import ConfigError, UsageError
from sitebus.site.apps import TreeEntry
from sitebus.site.config import as_dict

__all__ = ["Options", "build", "options_from_environ", "parse_app", "parse_bind"]

ENVIRONMENT_PREFIX = "SITEBUS_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass
class Options:
    """What to run: the command line's values (None or empty: not given)."""

    config_files: list[str] = field(default_factory=list)
    environment: str | None = None
    imports: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    apps: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    workers: int | None = None
    access_log: str | None = None
    error_log: str | None = None
    chdir: str | None = None
    reload: bool | None = None
    pidfile: str | None = None
    daemonize: bool = False
    gateway: str | None = None


# -- values ----------------------------------------------------------------------------------------


def parse_bind(text: str, source: str = "-b/--bind") -> tuple[str, int] | str:
    """Return ``(host, port)`` or a UNIX socket path for ``HOST:PORT``, ``:PORT``,
    ``[IPv6]:PORT`` or ``unix:PATH``; ``:PORT`` listens on every IPv4 interface."""
    expected = "expected HOST:PORT, :PORT, [IPv6]:PORT or unix:PATH"
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise UsageError(f"{source}: {expected}, got {text!r} (no path)")
        return os.path.abspath(path)
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"{source}: {expected}, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{source}: {host!r} is not an IPv6 address ({text!r})") from None
    elif ":" in host:
        raise UsageError(f"{source}: {expected}; put an IPv6 address in brackets, got {text!r}")
    return (host or "0.0.0.0", int(port_text))


def parse_app(text: str) -> TreeEntry:
    """Return the tree entry for an APP argument: ``module:attr`` or ``PREFIX=module:attr``."""
    prefix, equals, target = text.partition("=")
    if not equals:
        prefix, target = "", text
    if ":" not in target or target.startswith(":") or target.endswith(":"):
        raise UsageError(f"APP: expected module:attr or /PREFIX=module:attr, got {text!r}")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return TreeEntry(f"APP {text!r}", prefix.rstrip("/"), target)


def options_from_environ(options: Options, environ: Mapping[str, str]) -> Options:
    """Fill what the command line left unset from ``SITEBUS_*`` variables."""

    def value(name: str) -> str | None:
        text = environ.get(ENVIRONMENT_PREFIX + name)
        return text if text else None

    def split(text: str | None, separators: str) -> list[str]:
        if text is None:
            return []
        for separator in separators[1:]:
            text = text.replace(separator, separators[0])
        return [part for part in text.split(separators[0]) if part]

    given = {f.name: getattr(options, f.name) for f in fields(options)}
    found: dict[str, Any] = {
        "config_files": split(value("CONFIG"), ":"),
        "environment": value("ENV"),
        "apps": split(value("APP"), " \t\n"),
        "binds": split(value("BIND"), ", \t\n"),
        "access_log": value("ACCESS_LOG"),
        "error_log": value("ERROR_LOG"),
        "chdir": value("CHDIR"),
        "pidfile": value("PIDFILE"),
    }
    workers = value("WORKERS")
    if workers is not None:
        if not workers.isdigit():
            raise UsageError(f"{ENVIRONMENT_PREFIX}WORKERS: expected a number of workers, "
                             f"0 or more, got {workers!r}")
        found["workers"] = int(workers)
    reload = value("RELOAD")
    if reload is not None:
        if reload.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise UsageError(f"{ENVIRONMENT_PREFIX}RELOAD: expected one of "
                             f"{', '.join(TRUE_WORDS + FALSE_WORDS)}, got {reload!r}")
        found["reload"] = reload.lower() in TRUE_WORDS
    for name, default in found.items():
        if given[name] in (None, []) and default not in (None, []):
            given[name] = default
    return Options(**given)


# -- building the site -----------------------------------------------------------------------------


def _import_modules(names: list[str]) -> None:
    for name in names:
        module = name[:-3].replace(os.sep, ".") if name.endswith(".py") else name
        try:
            importlib.import_module(module)
        except Exception as error:
            raise ConfigError(f"cannot import {module!r}: {type(error).__name__}: {error}",
                              key="-i") from None


def _read_files(names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, as_dict(path)) for path in (os.path.abspath(name) for name in names)]


def _global(files: list[tuple[str, dict[str, Any]]], key: str) -> Any:
    found = None
    for _path, parsed in files:
        section = parsed.get("global")
        if isinstance(section, Mapping) and key in section:
            found = section[key]
    return found


def _command_line_config(options: Options) -> dict[str, Any]:
    """The site config keys that options set; they are applied after the files."""
    config: dict[str, Any] = {}
    for number, text in enumerate(options.binds, start=1):
        address = parse_bind(text)
        prefix = "server." if number == 1 else f"server.bind{number}."
        if isinstance(address, str):
            config.update({prefix + "socket_file": address})
        else:
            config.update({prefix + "socket_file": None, prefix + "socket_host": address[0],
                           prefix + "socket_port": address[1]})
    if options.workers is not None:
        config["server.workers"] = options.workers
    if options.access_log is not None:
        config["log.access_file"] = options.access_log
    if options.error_log is not None:
        config["log.error_file"] = options.error_log
    if options.reload is not None:
        config["engine.autoreload.on"] = options.reload
    return config


def app_sections(site: Any, files: list[tuple[str, dict[str, Any]]]) -> None:
    """Give the config files' app sections to the one services.web app that takes them.

    ``[/path]`` sections (and sections other than ``[global]``) are the app config of the
    single services.web app mounted without a config of its own, as the reference's cherryd
    gives them; a ``[/path]`` section with no such app, or with several, is a ConfigError
    naming the file and the section. Other WSGI apps never receive them.
    """
    takers = [app for app in site.framework_apps()
              if all(app is not configured for configured in site.configured_apps)]
    for path, parsed in files:
        sections = {name: keys for name, keys in parsed.items() if name != "global"}
        if not sections:
            continue
        if len(takers) == 1:
            takers[0].merge(sections)
            continue
        paths = [name for name in sections if str(name).startswith("/")]
        if not paths:
            continue
        if not takers:
            why = ("no services.web app is mounted to take it (Flask, Django and other WSGI "
                   "apps take no services.web config)")
        else:
            where = ", ".join(repr(app.script_name or "/") for app in takers)
            why = (f"{len(takers)} services.web apps could take it (at {where}): give each "
                   'its own with tree.NAME = {"path": ..., "app": ..., "config": "FILE"}')
        raise ConfigError(f"app config section, but {why}", filename=path, section=paths[0])


def _load_apps(site: Any, options: Options, entries: list[TreeEntry],
               files: list[tuple[str, dict[str, Any]]], imported: bool) -> None:
    """Import the -i modules, mount the tree entries and APP arguments, give the files' app
    sections to their app; the default site when nothing is mounted."""
    if not imported:
        _import_modules(options.imports)
    site.mount_deferred()
    for entry in entries:
        site.mount_entry(entry)
    app_sections(site, files)
    if not site.tree.apps and not site.tree.vhosts and not site.asgi:
        from sitebus.site.welcome import welcome_app

        site.tree.graft(welcome_app(site), "")


def build(options: Options, defer_apps: bool = False, environ: Mapping[str, str] | None = None
          ) -> Any:
    """Configure the process-wide site from ``options`` and the environment; start nothing.

    With ``defer_apps`` (``sitebus run``), apps are left to the workers when there will be
    workers and no preload: ``site.workers.load_apps`` loads them after the fork.
    """
    from sitebus.site.container import site

    options = options_from_environ(options, os.environ if environ is None else environ)
    files = _read_files(options.config_files)  # before --chdir: names are the caller's
    if options.chdir:
        try:
            os.chdir(options.chdir)
        except OSError as error:
            raise UsageError(f"--chdir: cannot change to {options.chdir!r}: "
                             f"{error.strerror}") from None
    for path in reversed(options.paths):
        sys.path.insert(0, os.path.abspath(path))
    if "" not in sys.path:
        sys.path.insert(0, "")
    entries = [parse_app(text) for text in options.apps]
    overrides = _command_line_config(options)

    workers = overrides.get("server.workers", _global(files, "server.workers")) or 0
    preload = _global(files, "server.preload") is True
    deferred = defer_apps and isinstance(workers, int) and workers > 0 and not preload
    if deferred:
        site.defer_apps()
    else:
        _import_modules(options.imports)
    if options.environment:
        site.config.update({"environment": options.environment})
    for path, parsed in files:
        site.config.update(parsed)
        site.config.files.append(path)
    site.config.update(overrides)
    if deferred and site.has_workers and not site.workers.preload:
        site.workers.load_apps = lambda: _load_apps(site, options, entries, files, False)
    else:
        _load_apps(site, options, entries, files, imported=not deferred)
    if options.pidfile:
        site.use_pidfile(os.path.abspath(options.pidfile))
    if options.gateway:
        site.use_gateway(options.gateway)
    if options.daemonize:
        site.log.screen = False
        site.plugin("daemonizer").subscribe()
    site.check()
    return site
