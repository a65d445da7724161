"""Site services (engine plugins) under the reference's module name.

Each name is the sitebus class of that service, imported from its own module on first use.
"""

from __future__ import annotations

from services.web.process._lazy import resolver

PLUGINS = {
    "SimplePlugin": "sitebus.plugins:SimplePlugin",
    "Monitor": "sitebus.plugins:Monitor",
    "BackgroundTask": "sitebus.plugins:BackgroundTask",
    "PerpetualTimer": "sitebus.plugins:PerpetualTimer",
    "ThreadManager": "sitebus.plugins:ThreadManager",
    "SignalHandler": "sitebus.process.signals:SignalHandler",
    "Daemonizer": "sitebus.process.daemon:Daemonizer",
    "PIDFile": "sitebus.process.pidfile:PIDFile",
    "DropPrivileges": "sitebus.process.privileges:DropPrivileges",
    "Autoreloader": "sitebus.reload.autoreload:Autoreloader",
}

__all__ = list(PLUGINS)
__getattr__ = resolver(__name__, PLUGINS)
