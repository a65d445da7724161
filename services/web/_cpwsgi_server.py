"""The reference's WSGI server class, ``CPWSGIServer``: cheroot set up from a Server's settings.

``CPWSGIServer(server)`` builds a cheroot WSGI server that binds ``server.bind_addr`` and
serves ``server.wsgi_app`` (the site tree when unset) with the server's thread pool, timeouts,
sizes and protocol. It is what ``server.instance = 'cherrypy._cpwsgi_server.CPWSGIServer'``
names, and what code that assigns ``server.httpserver`` itself constructs. A site normally
needs neither: its servers build their cheroot server on start.
"""

from __future__ import annotations

from typing import Any

from cheroot import wsgi

from sitebus.servers.registry import cheroot_arguments, tune_cheroot

__all__ = ["CPWSGIServer"]


class CPWSGIServer(wsgi.Server):
    """A cheroot WSGI server configured from a Server adapter (the default server if none)."""

    def __init__(self, server_adapter: Any = None) -> None:
        from sitebus.site.container import site

        adapter = server_adapter if server_adapter is not None else site.server
        self.server_adapter = adapter
        self.wsgi_version = (1, 0)  # cheroot's gateway map lacks ('u', 0): set it below
        super().__init__(adapter.bind_addr, adapter.wsgi_app or site.tree,
                         **cheroot_arguments(adapter))
        if tuple(adapter.wsgi_version) == ("u", 0):
            self.gateway = wsgi.Gateway_u0
        self.wsgi_version = adapter.wsgi_version
        tune_cheroot(self, adapter)
