"""Proxy headers for every app: the client's address, scheme and host behind a trusted proxy.

Off by default. ``engine.proxy.on = True`` makes the tree rewrite each request's environ, before
routing, from the headers of a proxy it trusts: ``REMOTE_ADDR`` (and ``REMOTE_PORT`` when
given) becomes the client's, ``wsgi.url_scheme`` (and ``HTTPS``) the scheme the client used,
``HTTP_HOST``, ``SERVER_NAME`` and ``SERVER_PORT`` the host it asked for. So Flask, Django,
Bottle, bare WSGI and ``services.web`` apps alike see the client, build URLs the client can
follow, and the access log shows the client. The peer's own address stays in
``environ['sitebus.proxy_peer']``.

Trust is by the connecting peer's address: ``engine.proxy.trusted``, a list (or a
comma-separated string) of addresses and networks (``"10.0.0.0/8"``), ``"unix"`` for UNIX
socket peers (a proxy on this host), or ``"*"`` for any peer. Default: ``127.0.0.1``, ``::1``
and ``unix``, as gunicorn's ``forwarded_allow_ips``. From any other peer the headers are
ignored, so a client talking to the site directly cannot forge its address.

Headers: ``Forwarded`` (RFC 7239) when present, else ``X-Forwarded-For``, ``X-Forwarded-Proto``
and ``X-Forwarded-Host``. A chain of proxies appends one hop each; the client is found by
walking the hops from the nearest, past every trusted address: the first untrusted address is
the client (so a client's own, forged, leftmost entries are never taken while a proxy in the
chain is untrusted). The scheme and host are that hop's (``Forwarded``) or, for the
``X-Forwarded-*`` headers, the entry at the same position when the lists line up, else the
nearest proxy's. Values that do not parse (an address that is no IP, a scheme other than
http/https, a host with a space or slash) are ignored one by one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from sitebus.bus import Bus
from sitebus.errors import ConfigError
from sitebus.plugins import SimplePlugin

__all__ = ["ProxyHeaders", "Trust", "forwarded_hops", "rewrite"]

DEFAULT_TRUSTED = ("127.0.0.1", "::1", "unix")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Trust:
    """Which peers are trusted proxies: addresses, networks, ``unix``, or ``*``."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.unix = False
        self.networks: list[Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry == "unix":
                self.unix = True
            else:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
        self._cache: dict[str, bool] = {}

    def __call__(self, peer: str) -> bool:
        """Return True when ``peer`` (an address, '' for a UNIX socket) is trusted."""
        known = self._cache.get(peer)
        if known is not None:
            return known
        verdict = self._decide(peer)
        if len(self._cache) < 4096:
            self._cache[peer] = verdict
        return verdict

    def _decide(self, peer: str) -> bool:
        if self.everyone:
            return True
        if not peer or peer.startswith("/") or peer.startswith("unix:"):
            return self.unix
        address = _address(peer)
        return address is not None and any(address in net for net in self.networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_node(node: str) -> tuple[str, str | None]:
    """Split a Forwarded node (``1.2.3.4:80``, ``"[::1]:80"``, ``::1``) into address and port."""
    node = node.strip().strip('"')
    if node.startswith("["):
        end = node.find("]")
        port = node[end + 2:] if node[end + 1:end + 2] == ":" else None
        return node[1:end], port
    if node.count(":") == 1:
        address, port = node.split(":")
        return address, port
    return node, None


_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def forwarded_hops(header: str) -> list[dict[str, str]]:
    """Parse a Forwarded header into its hops, each a dict of lowercase parameter names."""
    hops = []
    for element in header.split(","):
        hop = {}
        for pair in element.split(";"):
            match = _PAIR.fullmatch(pair)
            if match:
                value = match.group(2)
                if value.startswith('"'):
                    value = value[1:-1].replace('\\"', '"')
                hop[match.group(1).lower()] = value
        hops.append(hop)
    return hops


_HOST = re.compile(r"[A-Za-z0-9.\-_]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
SCHEMES = ("http", "https")


def _pick(values: list[str], index: int, count: int) -> str | None:
    """The entry of a list header for hop ``index`` of ``count`` (else the nearest proxy's)."""
    if not values:
        return None
    return values[index] if len(values) == count else values[-1]


def rewrite(environ: dict[str, Any], trusted: Trust) -> None:
    """Apply a trusted peer's proxy headers to ``environ`` (see the module docstring)."""
    peer = environ.get("REMOTE_ADDR") or ""
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded is None and "HTTP_X_FORWARDED_FOR" not in environ \
            and "HTTP_X_FORWARDED_PROTO" not in environ and "HTTP_X_FORWARDED_HOST" not in environ:
        return
    if not trusted(peer):
        return
    client: str | None = None
    port: str | None = None
    scheme: str | None = None
    host: str | None = None
    if forwarded is not None:
        hops = forwarded_hops(forwarded)
        chosen = hops[0] if hops else {}
        for hop in reversed(hops):
            chosen = hop
            address, _port = _split_node(hop.get("for", ""))
            if not trusted(address):
                break
        client, port = _split_node(chosen.get("for", "")) if "for" in chosen else (None, None)
        scheme, host = chosen.get("proto"), chosen.get("host")
    else:
        addresses = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")
                     if a.strip()]
        index = 0
        for index in range(len(addresses) - 1, -1, -1):
            if not trusted(addresses[index]):
                break
        if addresses:
            client = addresses[index]
        count = len(addresses)
        schemes = [s.strip() for s in environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")
                   if s.strip()]
        hosts = [h.strip() for h in environ.get("HTTP_X_FORWARDED_HOST", "").split(",")
                 if h.strip()]
        scheme = _pick(schemes, index, count)
        host = _pick(hosts, index, count)
    environ["sitebus.proxy_peer"] = peer
    if client and _address(client) is not None:
        environ["REMOTE_ADDR"] = client
        if port and port.isdigit():
            environ["REMOTE_PORT"] = port
    if scheme and scheme.lower() in SCHEMES:
        scheme = scheme.lower()
        environ["wsgi.url_scheme"] = scheme
        if scheme == "https":
            environ["HTTPS"] = "on"
        else:
            environ.pop("HTTPS", None)
    if host and _HOST.fullmatch(host):
        environ["HTTP_HOST"] = host
        if host.startswith("["):
            name, _, rest = host[1:].partition("]")
            host_port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, host_port = host.partition(":")
        environ["SERVER_NAME"] = name
        environ["SERVER_PORT"] = host_port or (
            "443" if environ.get("wsgi.url_scheme") == "https" else "80")


class ProxyHeaders(SimplePlugin):
    """``engine.proxy``: rewrite every request's environ from a trusted proxy's headers."""

    def __init__(self, bus: Bus, tree: Any = None) -> None:
        super().__init__(bus)
        self.tree = tree
        self._trusted: tuple[str, ...] = DEFAULT_TRUSTED
        self._trust = Trust(DEFAULT_TRUSTED)
        self._on = False

    @property
    def trusted(self) -> list[str]:
        """The proxies whose headers are believed: addresses, networks, 'unix', '*'."""
        return list(self._trusted)

    @trusted.setter
    def trusted(self, value: str | Iterable[str]) -> None:
        entries = [e.strip() for e in value.split(",")] if isinstance(value, str) else value
        try:
            entries = [str(e).strip() for e in entries if str(e).strip()]
            trust = Trust(entries)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"expected addresses or networks ('10.0.0.0/8'), 'unix' or '*', "
                              f"got {value!r}: {error}", key="engine.proxy.trusted",
                              value=value) from None
        self._trusted = tuple(entries)
        self._trust = trust

    def subscribe(self) -> None:
        """Rewrite requests on the tree from now on."""
        if self.tree is None:
            raise ConfigError("proxy headers need the site's tree (ProxyHeaders(bus, tree))",
                              key="engine.proxy.on", value=True)
        super().subscribe()
        self.tree.proxy = self.rewrite
        self._on = True

    def unsubscribe(self) -> None:
        """Leave requests as the peer sent them."""
        super().unsubscribe()
        if self._on and self.tree is not None:
            self.tree.proxy = None
        self._on = False

    def rewrite(self, environ: dict[str, Any]) -> None:
        """Apply the headers of a trusted peer to ``environ``."""
        rewrite(environ, self._trust)
