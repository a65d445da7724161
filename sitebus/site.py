"""The site container: one bus, one config, one log manager, one tree and the servers.

A Site turns config into a running process: the ``engine``, ``server``, ``log`` and ``tree``
config namespaces set attributes on the bus's plugins, the servers, the log manager and the
tree, as the reference's global config does. ``site`` is the process-wide default; its parts
are also this module's ``bus``, ``config``, ``log`` and ``tree`` (and ``server``), and
``services.web`` re-exports them under the reference's names (``engine``...).

Engine plugins are created on first use from ``ENGINE_PLUGINS``, a registry of names to
factories (``engine.pidfile.on = True`` creates ``bus.pidfile``); ``engine.<name>.on``
subscribes or unsubscribes one, ``engine.<name>.<attr>`` sets an attribute it has, and
``engine.SIGHUP``/``engine.SIGTERM`` replace the listeners of those signals. A key that names
nothing known is a ConfigError that lists what was expected.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from sitebus.bus import Bus
from sitebus.config import Config, attributes
from sitebus.errors import ConfigError
from sitebus.logs import LogManager
from sitebus.plugins import ThreadManager
from sitebus.signals import SignalHandler
from sitebus.tree import Tree

__all__ = ["Engine", "Site", "ENGINE_PLUGINS", "site", "bus", "config", "log", "tree"]


def _factory(path: str, *args: Any) -> Callable[[Bus], Any]:
    """Return a factory that imports ``module:Class`` when first needed and builds it."""

    def build(bus: Bus) -> Any:
        module_name, _, class_name = path.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(bus, *args)

    build.__qualname__ = f"factory({path})"
    return build


ENGINE_PLUGINS: dict[str, Callable[[Bus], Any]] = {
    "signal_handler": _factory("sitebus.signals:SignalHandler"),
    "thread_manager": _factory("sitebus.plugins:ThreadManager"),
}
"""Engine plugins by config name: ``engine.<name>.*`` configures ``bus.<name>``."""


def load_object(spec: Any) -> Any:
    """Return the object a ``"package.module:attr"`` (or dotted) string names; others as given."""
    if not isinstance(spec, str):
        return spec
    module_name, colon, attr = spec.partition(":")
    if not colon:
        return attributes(spec)
    target = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; expected one of {', '.join(sorted(known))}"


class Engine(Bus):
    """The site's bus, with its engine plugins as attributes (``engine.autoreload``...)."""

    signal_handler: SignalHandler
    thread_manager: ThreadManager


class Site:
    """A bus with its plugins, a config, a log manager and a tree of applications."""

    def __init__(self) -> None:
        self.bus = Engine()
        self.log = LogManager()
        self.log.screen = True
        self.bus.subscribe("graceful", self.log.reopen_files)
        self.tree = Tree(self.log)
        self.config = Config()
        self.config.namespaces["engine"] = self._engine_namespace
        self.config.namespaces["log"] = self._log_namespace
        self.config.namespaces["tree"] = self._tree_namespace
        # The reference's engine attributes: the signal handler exists but is subscribed only
        # by quickstart or the CLI; the thread manager is subscribed from the start.
        self.bus.signal_handler = SignalHandler(self.bus)
        self.bus.thread_manager = ThreadManager(self.bus)
        self.bus.thread_manager.subscribe()

    # -- engine plugins ------------------------------------------------------------------------

    def plugin(self, name: str) -> Any:
        """Return ``bus.<name>``, creating it from ENGINE_PLUGINS on first use."""
        existing = getattr(self.bus, name, None)
        if existing is not None:
            return existing
        factory = ENGINE_PLUGINS.get(name)
        if factory is None:
            raise ConfigError("unknown engine plugin" + _suggest(name, list(ENGINE_PLUGINS)),
                              key=f"engine.{name}")
        plugin = factory(self.bus)
        setattr(self.bus, name, plugin)
        return plugin

    def _engine_namespace(self, key: str, value: Any) -> None:
        if key in ("SIGHUP", "SIGTERM"):
            self.plugin("signal_handler").configure(key, value)
            return
        name, dot, attr = key.partition(".")
        if not dot:
            settable = not key.startswith("_") and not callable(getattr(self.bus, key, print))
            if not settable:
                known = ["SIGHUP", "SIGTERM", *ENGINE_PLUGINS]
                raise ConfigError("unknown setting" + _suggest(key, known), key=f"engine.{key}",
                                  value=value)
            setattr(self.bus, key, value)
            return
        plugin = self.plugin(name)
        if attr == "on":
            if not isinstance(value, bool):
                raise ConfigError(f"expected True or False, got {value!r}", key=f"engine.{key}",
                                  value=value)
            (plugin.subscribe if value else plugin.unsubscribe)()
            return
        known = [a for a in dir(plugin)
                 if not a.startswith("_") and not callable(getattr(plugin, a))]
        if attr not in known:
            raise ConfigError("unknown setting" + _suggest(attr, known), key=f"engine.{key}",
                              value=value)
        setattr(plugin, attr, value)

    # -- log and tree --------------------------------------------------------------------------

    def _log_namespace(self, key: str, value: Any) -> None:
        if key not in LogManager.settings:
            raise ConfigError("unknown setting" + _suggest(key, list(LogManager.settings)),
                              key=f"log.{key}", value=value)
        setattr(self.log, key, value)

    def _tree_namespace(self, key: str, value: Any) -> None:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            script_name, target = value
        else:
            script_name, target = "/" + key, value
        try:
            app = load_object(target)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"cannot load {target!r}: {error}", key=f"tree.{key}",
                              value=value) from None
        self.tree.mount(app, script_name)


site = Site()
"""The process-wide site."""

bus = site.bus
config = site.config
log = site.log
tree = site.tree
