"""What a server type reads of its Server plugin's settings.

The builders in ``registry`` and ``asgiserver`` take any object with these attributes; the
Server plugin (``sitebus.servers.server``) is the one that has them. A Protocol rather than
the plugin's class, so the registry the plugin imports does not import the plugin back.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, Protocol

from sitebus.bus import Bus

__all__ = ["ServerSettings"]


class ServerSettings(Protocol):
    """The ``server.*`` settings a server type is built from (see ``Server`` for each)."""

    bus: Bus
    wsgi_app: Callable[..., Any] | None
    wsgi_version: tuple[Any, int]
    thread_pool: int
    thread_pool_max: int
    socket_queue_size: int
    socket_timeout: float
    shutdown_timeout: float
    accepted_queue_size: int
    accepted_queue_timeout: float
    protocol_version: str
    max_request_header_size: int
    max_request_body_size: int
    nodelay: bool
    statistics: bool
    ssl_certificate: str | None
    ssl_private_key: str | None
    ssl_certificate_chain: str | None
    ssl_ciphers: str | None
    ssl_context: ssl.SSLContext | None
