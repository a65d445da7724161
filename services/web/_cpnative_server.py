"""The reference's "native" server class, ``CPHTTPServer``.

The reference serves its request objects on cheroot without the WSGI layer; here every
server speaks WSGI (the framework's request handling is a WSGI application), so the native
server is the same cheroot server as ``_cpwsgi_server.CPWSGIServer``, under the reference's
name, for code that sets ``server.httpserver = CPHTTPServer(server)``.
"""

from __future__ import annotations

from services.web._cpwsgi_server import CPWSGIServer

__all__ = ["CPHTTPServer"]


class CPHTTPServer(CPWSGIServer):
    """A cheroot server for the site tree, configured from a Server adapter."""
