"""Names resolved from sitebus modules on first use.

The site's plugins and servers live one per module in sitebus and some of them may be
absent from a given installation (or not written yet); resolving each name when it is first
asked for keeps ``import services.web`` working whatever is there, and reports a missing
one by the sitebus module it should come from.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolver(module_name: str, names: dict[str, str]) -> Any:
    """Return a module ``__getattr__`` that imports each name from its sitebus module."""

    def __getattr__(name: str) -> Any:
        source = names.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module_path, _, attr = source.partition(":")
        try:
            module = importlib.import_module(module_path)
            return getattr(module, attr)
        except (ImportError, AttributeError) as error:
            raise AttributeError(
                f"{module_name}.{name} comes from {module_path}.{attr}, which is not "
                f"available: {error}") from None

    return __getattr__
