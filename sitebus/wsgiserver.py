"""cheroot's WSGI server on a listener sitebus bound, with TLS, and a stop that drains.

cheroot's ``HTTPServer.prepare()`` binds the socket itself and, whenever ``LISTEN_PID`` is
set, takes fd 3 for every server in the process. CherootServer replaces ``prepare()`` so the
server serves on the :class:`~sitebus.listeners.Listener` it is given, and does the rest of
cheroot's preparation unchanged (the connection manager, the worker threads, ``ready``).

``stop()`` drains, in this order:

1. the listener stops accepting; when sitebus owns the socket it is shut down, so the kernel
   refuses new connections at once and cheroot's selector wakes up instead of sleeping out
   its expiration interval;
2. our duplicate of the listener is closed before cheroot's own ``stop()`` runs, because that
   connects to the server's socket to wake ``accept()``: on a socket systemd or the next
   process image keeps, that would queue a bogus connection (and re-activate the service);
3. cheroot's ``stop()`` ends the selector loop, closes idle keep-alive connections, and waits
   up to ``shutdown_timeout`` for the worker threads to finish the requests in flight; the
   connection of a request still running after that is shut down. (A handler that never
   returns still keeps its thread: Python cannot end a thread from outside.)
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from cheroot import __version__ as cheroot_version
from cheroot import connections, wsgi
from cheroot.ssl import Adapter
from cheroot.ssl.builtin import BuiltinSSLAdapter

from sitebus import __version__
from sitebus.listeners import Listener

__all__ = ["CherootServer", "make_ssl_adapter"]


def listener_address(sock: Listener) -> Any:
    """Return cheroot's ``bind_addr`` for a bound socket: (host, port) or a path."""
    address = sock.getsockname()
    if isinstance(address, tuple):
        return address[:2]
    if isinstance(address, bytes):
        return address.decode("utf-8", "surrogateescape")
    return address


class CherootServer(wsgi.Server):
    """cheroot's WSGI server, serving on a Listener instead of binding by itself."""

    version = f"sitebus/{__version__} Cheroot/{cheroot_version}"
    """The Server header and SERVER_SOFTWARE, as the reference names both parts."""

    ready_event: threading.Event | None = None
    """Set when the server is ready, so ``ServerAdapter.wait()`` need not poll ``ready``."""

    def __init__(
        self,
        listener: Listener,
        wsgi_app: Callable[..., Any],
        wsgi_version: tuple[Any, int] = (1, 0),
        **kwargs: Any,
    ) -> None:
        # wsgi.Server.__init__ picks the gateway by wsgi_version from a map that (cheroot 11)
        # lacks ('u', 0), though its Gateway_u0 exists: build with 1.0, then put it in.
        self.wsgi_version = (1, 0)
        super().__init__(listener_address(listener), wsgi_app, **kwargs)
        if tuple(wsgi_version) == ("u", 0):
            self.gateway = wsgi.Gateway_u0
        self.wsgi_version = wsgi_version
        self.listener = listener

    def prepare(self) -> None:
        """Prepare to serve on our listener: connection manager, worker threads, ready."""
        if self.software is None:
            self.software = f"{self.version} Server"
        self.socket = self.listener
        self._connections = connections.ConnectionManager(self)
        self.requests.start()
        self.ready = True
        self._start_time = time.time()
        if self.ready_event is not None:
            self.ready_event.set()

    def stop(self) -> None:
        """Refuse new connections at once; let requests in flight finish; close."""
        if self.ready:
            self.listener.stop_accepting()
            self.listener.close()
        super().stop()


class _ContextSSLAdapter(BuiltinSSLAdapter):
    """The builtin adapter on an SSLContext the site built (certificates already loaded)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        Adapter.__init__(self, None, None)
        self.context = context
        self._server_env: dict[str, Any] = {}


def make_ssl_adapter(
    certificate: str | None,
    private_key: str | None,
    certificate_chain: str | None = None,
    ciphers: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Adapter | None:
    """Return cheroot's builtin TLS adapter for these settings, or None for plain HTTP.

    Raises OSError (a file cannot be read) or ssl.SSLError (a bad certificate or key, a key
    that does not match, a cipher string that selects nothing).
    """
    if certificate:
        adapter = BuiltinSSLAdapter(certificate, private_key, certificate_chain, ciphers)
        if context is not None:
            adapter.context = context
        return adapter
    if context is not None:
        if ciphers:
            context.set_ciphers(ciphers)
        return _ContextSSLAdapter(context)
    return None
