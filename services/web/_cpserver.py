"""The default HTTP server of the site, under the reference's name (``services.web.server``).

The site container owns the servers; ``services.web.server`` is ``sitebus.site.server`` (a
``sitebus.servers.Server`` on cheroot, subscribed to the site's bus).
"""

from __future__ import annotations

from typing import Any

from sitebus.servers import Server

__all__ = ["Server", "default_base", "default_server"]


def default_server() -> Any:
    """Return the site's default server."""
    from sitebus.site import site

    return site.server


def default_base() -> str:
    """Return the default server's base URL, e.g. 'http://127.0.0.1:8080'."""
    return default_server().base() or "http://127.0.0.1:8080"
