"""Server adapters under the reference's module name (from ``sitebus.servers.server``)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from services.web.process._lazy import resolver

SERVERS = {
    "ServerAdapter": "sitebus.servers.server:ServerAdapter",
    "Timeouts": "sitebus.servers.server:Timeouts",
    "FlupCGIServer": "sitebus.servers.server:FlupCGIServer",
    "FlupFCGIServer": "sitebus.servers.server:FlupFCGIServer",
    "FlupSCGIServer": "sitebus.servers.server:FlupSCGIServer",
}

__all__ = list(SERVERS)
__getattr__ = resolver(__name__, SERVERS)


ANY_ADDRESSES = ("0.0.0.0", "::", "")
"""Hosts that mean every interface: a check by connecting to them proves nothing."""


@contextlib.contextmanager
def _safe_wait(host: str, port: Any) -> Iterator[None]:
    """Run a wait for ``host:port`` to be bound; on a server bound to every interface, turn
    its failure (an OSError, such as portend's Timeout) into a warning: with no loopback
    interface such a binding cannot be checked by connecting, so failing to see it does not
    mean it failed. A wait on any other host fails as it is.
    """
    try:
        yield
    except OSError:
        if host not in ANY_ADDRESSES:
            raise
        warnings.warn(f"Unable to verify that the server is bound on {port}", stacklevel=3)
