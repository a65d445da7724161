"""The start-up checker: warnings about common mistakes in mounted applications and config.

Subscribed to the bus's ``start`` channel, it runs each ``check_*`` method and logs what it
finds at WARNING level, as ``Checker: <finding>`` (the reference prints the same findings
under "CherryPy Checker:"). Findings never stop the site. ``checker.on = False`` in site
config turns the checker off; ``checker.<check name> = False`` turns one check off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from sitebus.errors import ConfigError

__all__ = ["Checker", "checker", "register"]

SITE_ONLY_NAMESPACES = ("engine", "server", "checker", "tree")
OBSOLETE_KEYS = {
    "server.default_content_type": "tools.response_headers.headers",
    "log_access_file": "log.access_file",
    "log_config_options": None,
    "log_file": "log.error_file",
    "log_file_not_found": None,
    "log_request_headers": "tools.log_headers.on",
    "log_to_screen": "log.screen",
    "show_tracebacks": "request.show_tracebacks",
    "throw_errors": "request.throw_errors",
    "profiler.on": "profiler.make_app(app) as WSGI middleware",
    "autoreload_on": "engine.autoreload.on",
    "autoreload_frequency": "engine.autoreload.frequency",
    "autoreload_match": "engine.autoreload.match",
    "reload_files": "engine.autoreload.files",
    "deadlock_poll_frequency": "engine.timeout_monitor.frequency",
}


class Checker:
    """Look for common mistakes when the site starts, and log them as warnings."""

    on = True
    """If False, the checker does not run."""

    def __init__(self) -> None:
        self.findings: list[str] = []

    def __call__(self) -> None:
        """Run all checks (unless off) and log what they find."""
        if not self.on:
            return
        self.findings = []
        for name in sorted(dir(self)):
            if name.startswith("check_"):
                method = getattr(self, name)
                if method and callable(method):
                    method()

    def warn(self, message: str) -> None:
        """Log one finding."""
        self.findings.append(message)
        from sitebus.site.container import bus

        bus.log(f"Checker: {message}", logging.WARNING)

    def _apps(self) -> Iterator[tuple[str, Any]]:
        from services.web._cptree import Application
        from sitebus.site.container import tree

        for script_name, app in tree.apps.items():
            if isinstance(app, Application):
                yield script_name, app
        for host, table in tree.vhosts.items():
            for script_name, app in table.items():
                if isinstance(app, Application):
                    yield f"{host}{script_name}", app

    def check_app_config_entries_dont_start_with_script_name(self) -> None:
        """Warn about app config sections named with the app's own mount point."""
        for script_name, app in self._apps():
            if not script_name or not app.config:
                continue
            for section in app.config:
                if str(section).startswith(script_name + "/") or section == script_name:
                    self.warn(
                        f"App at {script_name!r}: config section {section!r} repeats the mount "
                        "point; an app's sections are paths below it ('/' is the app's root).")

    def check_site_config_entries_in_app_config(self) -> None:
        """Warn about site-only keys (engine, server...) in application config."""
        for script_name, app in self._apps():
            misplaced = []
            for section, entries in app.config.items():
                if not str(section).startswith("/") or not isinstance(entries, dict):
                    continue
                for key in entries:
                    namespace = str(key).split(".", 1)[0]
                    if namespace in SITE_ONLY_NAMESPACES or key == "environment":
                        misplaced.append(f"[{section}] {key}")
            if misplaced:
                self.warn(
                    f"App at {script_name!r}: these keys work only in the site's config, here "
                    f"they do nothing: {', '.join(misplaced)}. Set them in [global], through "
                    "config.update(), not in the config given to tree.mount().")

    def check_skipped_app_config(self) -> None:
        """Warn about applications mounted without any config."""
        for script_name, app in self._apps():
            if not app.config:
                self.warn(f"App at {script_name!r}: mounted with no config at all.")

    def check_app_config_brackets(self) -> None:
        """Warn about config section names written with brackets in a dict."""
        for script_name, app in self._apps():
            for section in app.config:
                if str(section).startswith("[") and str(section).endswith("]"):
                    self.warn(
                        f"App at {script_name!r}: section {section!r} is written with brackets; "
                        "in a dict, write the bare path.")

    def check_compatibility(self) -> None:
        """Warn about config keys of older versions of the reference."""
        from sitebus.site.container import config

        sections: list[tuple[str, dict[str, Any]]] = [("global", dict(config))]
        for script_name, app in self._apps():
            sections.extend((f"{script_name!r} [{s}]", e) for s, e in app.config.items()
                            if isinstance(e, dict))
        for where, entries in sections:
            for key in entries:
                if key in OBSOLETE_KEYS:
                    replacement = OBSOLETE_KEYS[key]
                    hint = f" Use {replacement!r} instead." if replacement else ""
                    self.warn(f"{key!r} is obsolete ({where}).{hint}")

    def check_config_namespaces(self) -> None:
        """Warn about application config keys in namespaces nothing answers to."""
        for script_name, app in self._apps():
            known = set(app.request_namespaces()) | set(app.namespaces) | {"log", "wsgi"}
            known |= set(SITE_ONLY_NAMESPACES)
            for section, entries in app.config.items():
                if not str(section).startswith("/") or not isinstance(entries, dict):
                    continue
                for key in entries:
                    namespace, dot, _ = str(key).partition(".")
                    if dot and namespace not in known:
                        self.warn(
                            f"App at {script_name!r}: {key!r} in section {section!r}: no "
                            f"namespace {namespace!r} (there are "
                            f"{', '.join(sorted(known))}).")

    def check_localhost(self) -> None:
        """Warn about 'localhost' as the socket host (it may resolve to IPv4 or IPv6)."""
        from sitebus.site.container import config

        if config.get("server.socket_host") == "localhost":
            self.warn("server.socket_host = 'localhost' may resolve to an IPv4 or an IPv6 "
                      "address, whichever the resolver lists first; name the one you mean: "
                      "'127.0.0.1' or '::1'.")


checker = Checker()
"""The site's checker."""


def _namespace(bus: Any) -> Callable[[str, Any], None]:
    def handler(key: str, value: Any) -> None:
        if key == "on":
            if not isinstance(value, bool):
                raise ConfigError(f"expected True or False, got {value!r}", key="checker.on",
                                  value=value)
            checker.on = value
            return
        if not key.startswith("check_") or not hasattr(checker, key):
            checks = sorted(n for n in dir(Checker) if n.startswith("check_"))
            raise ConfigError(f"unknown check; expected 'on' or one of {', '.join(checks)}",
                              key=f"checker.{key}", value=value)
        if value is not False:
            raise ConfigError("a check can only be turned off (False)", key=f"checker.{key}",
                              value=value)
        setattr(checker, key, False)

    return handler


def register(bus: Any, config: Any) -> None:
    """Subscribe the checker to the bus's start channel and own the checker namespace."""
    bus.subscribe("start", checker)
    config.namespaces["checker"] = _namespace(bus)
    existing = {k[len("checker."):]: v for k, v in config.items() if k.startswith("checker.")}
    for key, value in existing.items():
        config.namespaces["checker"](key, value)
