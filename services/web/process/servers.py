"""Server adapters under the reference's module name (from ``sitebus.servers``)."""

from __future__ import annotations

from services.web.process._lazy import resolver

SERVERS = {
    "ServerAdapter": "sitebus.servers:ServerAdapter",
    "Timeouts": "sitebus.servers:Timeouts",
    "FlupCGIServer": "sitebus.servers:FlupCGIServer",
    "FlupFCGIServer": "sitebus.servers:FlupFCGIServer",
    "FlupSCGIServer": "sitebus.servers:FlupSCGIServer",
}

__all__ = list(SERVERS)
__getattr__ = resolver(__name__, SERVERS)
