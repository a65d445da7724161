"""HTTP servers under the reference's names: ``services.web.server`` and ``_cpserver.Server``.

The site container owns the servers; ``services.web.server`` is ``sitebus.site.container.server`` (a
``sitebus.servers.server.Server`` on cheroot, subscribed to the site's bus). ``Server()`` makes one
more, as the reference's does, on the site's bus and serving the site tree unless told
otherwise::

    extra = Server()
    extra.socket_port = 8081
    extra.subscribe()
"""

from __future__ import annotations

from typing import Any

from sitebus.bus import Bus
from sitebus.servers.server import Server as _SiteServer

__all__ = ["Server", "default_base", "default_server"]


class Server(_SiteServer):
    """An HTTP server on the site's bus (or the given one), serving the site tree."""

    def __init__(self, bus: Bus | None = None, name: str | None = None, **settings: Any) -> None:
        from sitebus.site.container import site

        super().__init__(bus if bus is not None else site.bus, name, **settings)
        if self.wsgi_app is None:
            self.wsgi_app = site.tree


def default_server() -> Any:
    """Return the site's default server."""
    from sitebus.site.container import site

    return site.server


def default_base() -> str:
    """Return the default server's base URL, e.g. 'http://127.0.0.1:8080'."""
    return default_server().base() or "http://127.0.0.1:8080"
