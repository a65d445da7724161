"""Objects by dotted name: ``"package.module.attr"`` imported and looked up.

The config (``sitebus.site.config``), the servers (``server.instance``), the tree's app specs and
the framework's tools name classes and functions this way. The reference's module name
works as an alias (``cherrypy.lib.sessions.FileSession`` is ``services.web.lib...``), so
configs written for it run unchanged. Standard library only: the lowest layers may use it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MODULE_ALIASES", "attributes", "modules"]

# Config files written for the reference name the framework `cherrypy`; where CherryPy is
# not installed, those names resolve to sitebus's framework service of the same shape.
MODULE_ALIASES = {"cherrypy": "services.web"}


def modules(module_path: str) -> Any:
    """Import and return the module named ``module_path``."""
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as error:
        head, _, rest = module_path.partition(".")
        alias = MODULE_ALIASES.get(head)
        if not alias or error.name != head:
            raise
        try:
            return importlib.import_module(alias + ("." + rest if rest else ""))
        except ModuleNotFoundError as aliased:
            # Report the missing module under the name the config used.
            missing = aliased.name or ""
            if missing == alias or missing.startswith(alias + "."):
                missing = head + missing[len(alias):]
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing) from None


def attributes(full_attribute_name: str) -> Any:
    """Import the longest module prefix of a dotted name and return the attribute it names."""
    parts = full_attribute_name.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target = modules(module_name)
        except ModuleNotFoundError as error:
            if error.name and not module_name.startswith(error.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attr in parts[split:]:
            target = getattr(target, attr)
        return target
    raise ImportError(f"no module found for {full_attribute_name!r}")
