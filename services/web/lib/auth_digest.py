"""HTTP Digest authentication (RFC 7616, which replaced RFC 2617): the ``auth_digest`` tool.

Example, with ``get_ha1_dict_plain`` (plain passwords) as the credentials store::

    users = {'ada': 'analytical'}
    config = {'/admin': {
        'tools.auth_digest.on': True,
        'tools.auth_digest.realm': 'staff',
        'tools.auth_digest.get_ha1': services.web.lib.auth_digest.get_ha1_dict_plain(users),
        'tools.auth_digest.key': KEY,  # a secret shared by every worker process
    }}

Algorithms: MD5, MD5-sess, SHA-256 and SHA-256-sess (SHA-512-256 too where hashlib has
it). HA1 depends on the algorithm, so the store says which it can give: ``get_ha1(realm,
username)`` gives MD5 (the reference's signature); a ``get_ha1`` that also takes
``algorithm=`` (as ``get_ha1_dict_plain``'s does) can give any, and then the challenge
offers SHA-256 first and MD5 for older clients, one challenge each in ``WWW-Authenticate``.

Nonces are ``timestamp:salt:HMAC-SHA256(key, timestamp:salt:realm)``: no state is kept
to issue them, they cannot be forged without ``key``, and one older than ``max_age`` seconds (600)
is answered with ``stale=true`` so the client retries without asking its user. Replays: a
qop is required (RFC 7616 dropped the mode without one), and the nonce count ``nc`` of each
nonce must grow; the highest count seen is kept per nonce, in this process, until the nonce
expires, so a captured request replayed verbatim is refused (401). Those counts live in one
process, so a nonce is accepted only by the process that issued it: its salt starts with a
random token of the process (``issuer_token``, new in each worker and after each restart), and
a nonce of another process is answered as stale (``stale=true``: the client retries with a
fresh nonce without asking its user). A replay sent to another worker is therefore refused as
well. (A store shared by the workers was rejected: it needs a location every worker agrees on
and a lock per request; with keep-alive, a client stays with one worker, and a new
connection that lands on another costs one extra round trip.)

The tool runs at ``before_request_body`` (the reference: ``before_handler``), so the body of
an unauthenticated request is never parsed; ``qop='auth-int'`` (offered only when
configured, e.g. ``qop='auth,auth-int'``) reads the raw body first, to hash it, and hands
the same bytes on. A header that cannot be parsed, or whose ``uri`` is not the request's,
is a 400; wrong credentials, an unknown user, a forged nonce or a replay are a 401.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import inspect
import io
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from services.web._cperror import HTTPError
from services.web._serving import serving

__all__ = ["H", "HttpDigestAuthorization", "TRACE", "digest_auth", "get_ha1_dict",
           "get_ha1_dict_plain", "get_ha1_file_htdigest", "md5_hex", "synthesize_nonce",
           "www_authenticate"]

HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}
if "sha512_256" in hashlib.algorithms_available:
    HASHES["SHA-512-256"] = lambda data: hashlib.new("sha512_256", data)
ALGORITHMS = tuple(HASHES) + tuple(f"{name}-sess" for name in HASHES)
"""The algorithms understood (RFC 7616 section 3.3)."""
QOPS = ("auth", "auth-int")


def TRACE(msg: str) -> None:  # noqa: N802 (the reference's name)
    """Log a debugging message of this module."""
    from services.web._cprequest import current_log

    current_log().error(msg, "TOOLS.AUTH_DIGEST")


def hash_hex(algorithm: str, text: str | bytes) -> str:
    """Return the hex digest of ``text`` (UTF-8) with ``algorithm`` ('-sess' ignored)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return HASHES[algorithm.removesuffix("-sess")](data).hexdigest()


def md5_hex(s: str | bytes) -> str:
    """Return the MD5 hex digest of ``s``."""
    return hash_hex("MD5", s)


H = md5_hex
"""The hash function H of RFC 2617 (MD5)."""


# -- credential stores ------------------------------------------------------------------------


def get_ha1_dict_plain(user_password_dict: dict[str, str]) -> Callable[..., str | None]:
    """Return a get_ha1 function reading plain passwords from {username: password}."""

    def get_ha1(realm: str, username: str, algorithm: str = "MD5") -> str | None:
        password = user_password_dict.get(username)
        if password is None:
            return None
        return hash_hex(algorithm, f"{username}:{realm}:{password}")

    return get_ha1


def get_ha1_dict(user_ha1_dict: dict[str, str]) -> Callable[[str, str], str | None]:
    """Return a get_ha1 function reading MD5 HA1 hashes from {username: HA1}."""

    def get_ha1(realm: str, username: str) -> str | None:
        return user_ha1_dict.get(username)

    return get_ha1


def get_ha1_file_htdigest(filename: str) -> Callable[[str, str], str | None]:
    """Return a get_ha1 function reading an Apache htdigest file (``user:realm:HA1`` lines)."""

    def get_ha1(realm: str, username: str) -> str | None:
        with open(filename, encoding="utf-8") as handle:
            for line in handle:
                user, _, rest = line.rstrip("\r\n").partition(":")
                line_realm, _, ha1 = rest.partition(":")
                if user == username and line_realm == realm:
                    return ha1
        return None

    return get_ha1


@functools.lru_cache(maxsize=256)
def _takes_algorithm(get_ha1: Callable[..., Any]) -> bool:
    try:
        return "algorithm" in inspect.signature(get_ha1).parameters
    except (TypeError, ValueError):
        return False


# -- nonces -----------------------------------------------------------------------------------


def synthesize_nonce(s: str, key: str, timestamp: int | None = None,
                     salt: str | None = None) -> str:
    """A fresh nonce: the server can tell later that it made it, and how long ago.

    ``s`` relates to the resource (the realm); ``key`` is a secret known only to the server.
    The nonce is ``timestamp:salt:HMAC`` with a random salt, so no two challenges share one
    (each client then counts its own ``nc`` from 1); the salt starts with ``issuer_token``.
    """
    if timestamp is None:
        timestamp = int(time.time())
    if salt is None:
        salt = issuer_token + os.urandom(8).hex()
    mac = hmac.new(str(key).encode("utf-8"), f"{timestamp}:{salt}:{s}".encode(),
                   hashlib.sha256)
    return f"{timestamp}:{salt}:{mac.hexdigest()}"


class NonceCounts:
    """The highest nonce count seen per nonce, forgotten when the nonce expires."""

    max_entries = 100_000

    def __init__(self) -> None:
        self._counts: collections.OrderedDict[str, tuple[int, int]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def advance(self, nonce: str, nc: int, timestamp: int, max_age: float) -> bool:
        """Record ``nc`` for ``nonce``; False if it does not exceed the last one (a replay)."""
        with self._lock:
            horizon = time.time() - max_age
            counts = self._counts
            while counts:
                oldest = next(iter(counts))
                if counts[oldest][1] >= horizon and len(counts) < self.max_entries:
                    break
                counts.popitem(last=False)
            last = counts.get(nonce)
            if last is not None and nc <= last[0]:
                return False
            counts[nonce] = (nc, timestamp)
            return True


nonce_counts = NonceCounts()


def _new_issuer_token() -> None:
    global issuer_token
    issuer_token = os.urandom(6).hex()


issuer_token = ""
"""The random start of every nonce salt this process issues; new in a forked child."""
_new_issuer_token()
os.register_at_fork(after_in_child=_new_issuer_token)


def issued_here(nonce: str | None) -> bool:
    """Return True if ``nonce`` (already validated) was issued by this process."""
    parts = (nonce or "").split(":")
    return len(parts) == 3 and parts[1].startswith(issuer_token)


# -- the Authorization header -----------------------------------------------------------------

_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*'
                    r'("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')


def parse_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted value"`` pairs (names lower-cased); ValueError if bad."""
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"malformed parameters at {text[pos:pos + 20]!r}")
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if name in params:
            raise ValueError(f"the parameter {name!r} appears twice")
        params[name] = value
        pos = match.end()
    return params


class HttpDigestAuthorization:
    """A parsed Digest Authorization header, and the digest it should carry.

    Raises ValueError when the header is not a well-formed Digest authorization.
    """

    def errmsg(self, s: str) -> str:
        return f"Digest Authorization header: {s}"

    def __init__(self, auth_header: str, http_method: str, debug: bool = False,
                 accept_charset: str = "utf-8") -> None:
        self.http_method = http_method
        self.debug = debug
        scheme, _, params_text = auth_header.strip().partition(" ")
        if scheme.lower() != "digest":
            raise ValueError(self.errmsg("Authorization scheme is not Digest"))
        self.auth_header = auth_header
        params = parse_params(params_text)
        self.params = params
        if "username*" in params and "username" not in params:
            params["username"] = _ext_value(params["username*"])
        self.realm = params.get("realm")
        self.username = params.get("username")
        self.nonce = params.get("nonce")
        self.uri = params.get("uri")
        self.response = params.get("response", "").lower()
        self.algorithm = params.get("algorithm", "MD5")
        self.cnonce = params.get("cnonce")
        self.opaque = params.get("opaque")
        self.qop = params.get("qop")
        self.nc = params.get("nc")
        for name in ("realm", "username", "nonce", "uri", "response"):
            if not params.get(name):
                raise ValueError(self.errmsg(f"missing {name!r} parameter"))
        if params.get("userhash", "false").lower() == "true":
            raise ValueError(self.errmsg("userhash is not supported"))
        if self.algorithm not in ALGORITHMS:
            raise ValueError(self.errmsg(f"unsupported algorithm {self.algorithm!r}"))
        if self.qop not in QOPS:
            raise ValueError(self.errmsg(f"qop must be one of {', '.join(QOPS)}, got "
                                         f"{self.qop!r}"))
        if not self.cnonce or not self.nc or not re.fullmatch(r"[0-9a-fA-F]{8}", self.nc):
            raise ValueError(self.errmsg("cnonce and an 8-digit hex nc are required with qop"))

    def __str__(self) -> str:
        return "authorization : " + self.auth_header

    def timestamp(self) -> int | None:
        """The time the nonce was made at, or None if it is not one of ours in form."""
        stamp, colon, _ = (self.nonce or "").partition(":")
        return int(stamp) if colon and stamp.isdigit() else None

    def validate_nonce(self, s: str, key: str) -> bool:
        """Return True if the nonce was made by ``synthesize_nonce(s, key)`` (not spoofed)."""
        timestamp = self.timestamp()
        parts = (self.nonce or "").split(":")
        if timestamp is None or len(parts) != 3:
            return False
        return hmac.compare_digest(synthesize_nonce(s, key, timestamp, parts[1]),
                                   self.nonce or "")

    def is_nonce_stale(self, max_age_seconds: float = 600) -> bool:
        """Return True if the (validated) nonce is older than ``max_age_seconds``."""
        timestamp = self.timestamp()
        return timestamp is None or timestamp + max_age_seconds < time.time()

    def HA2(self, entity_body: bytes | str = b"") -> str:  # noqa: N802
        """Return H(A2) (RFC 7616 section 3.4.3)."""
        if self.qop == "auth-int":
            a2 = f"{self.http_method}:{self.uri}:{hash_hex(self.algorithm, entity_body)}"
        else:
            a2 = f"{self.http_method}:{self.uri}"
        return hash_hex(self.algorithm, a2)

    def request_digest(self, ha1: str, entity_body: bytes | str = b"") -> str:
        """Return the response digest the client should have sent, for HA1 ``ha1``."""
        if self.algorithm.endswith("-sess"):
            ha1 = hash_hex(self.algorithm, f"{ha1}:{self.nonce}:{self.cnonce}")
        data = f"{self.nonce}:{self.nc}:{self.cnonce}:{self.qop}:{self.HA2(entity_body)}"
        return hash_hex(self.algorithm, f"{ha1}:{data}")


def _ext_value(value: str) -> str:
    charset, _, rest = value.partition("'")
    _lang, _, encoded = rest.partition("'")
    try:
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        raise ValueError("username* is not a valid RFC 5987 value") from None


def www_authenticate(realm: str, key: str, algorithm: str = "MD5", nonce: str | None = None,
                     qop: str = "auth", stale: bool = False,
                     accept_charset: str = "utf-8") -> str:
    """Return a Digest challenge for a WWW-Authenticate header."""
    if '"' in realm:
        raise ValueError(f"realm: a double quote cannot appear in it, got {realm!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Unsupported value for algorithm: {algorithm!r}")
    for one in qop.split(","):
        if one.strip() not in QOPS:
            raise ValueError(f"Unsupported value for qop: {qop!r}")
    if nonce is None:
        nonce = synthesize_nonce(realm, key)
    challenge = f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, ' \
                f'qop="{qop}"'
    if stale:
        challenge += ", stale=true"
    if accept_charset:
        challenge += f', charset="{accept_charset.upper()}"'
    return challenge


# -- the tool ---------------------------------------------------------------------------------


def _entity_body() -> bytes:
    """Read the raw request body (for auth-int) and put the same bytes back for processing."""
    request = serving.request
    body = request.body
    if not request.process_request_body or body is None:
        return b""
    if body.length is None and "Transfer-Encoding" not in request.headers:
        return b""
    limit = body.maxbytes
    if limit and body.length is not None and body.length > limit:
        raise HTTPError(413)
    data = body.fp.read(body.length) if body.length is not None else \
        body.fp.read(limit + 1 if limit else -1)
    if limit and len(data) > limit:
        raise HTTPError(413)
    body.fp = io.BytesIO(data)
    return data


def digest_auth(realm: str, get_ha1: Callable[..., str | None], key: str,
                debug: bool = False, accept_charset: str = "utf-8",
                algorithms: Any = None, qop: str = "auth", max_age: float = 600) -> None:
    """Check the request's Digest credentials; answer 401 with challenges if they fail.

    ``get_ha1(realm, username[, algorithm])`` returns HA1 or None for an unknown user;
    ``key`` is the server's secret for nonces; ``algorithms`` (default: SHA-256 and MD5
    where ``get_ha1`` takes ``algorithm``, else MD5) are offered in order.
    """
    request = serving.request
    takes_algorithm = _takes_algorithm(get_ha1)
    if algorithms is None:
        algorithms = ("SHA-256", "MD5") if takes_algorithm else ("MD5",)
    elif isinstance(algorithms, str):
        algorithms = (algorithms,)
    offered_qops = [q.strip() for q in qop.split(",")]
    stale = False
    header = request.headers.get("Authorization")
    if header and header.strip().lower().startswith("digest"):
        try:
            auth = HttpDigestAuthorization(header, request.method, debug, accept_charset)
        except ValueError as error:
            raise HTTPError(400, str(error)) from None
        if auth.uri != _request_uri(request):
            raise HTTPError(400, auth.errmsg("the uri does not match the request"))
        if debug:
            TRACE(str(auth))
        accepted = auth.algorithm in algorithms or \
            auth.algorithm.removesuffix("-sess") in algorithms
        if auth.realm == realm and accepted and \
                auth.qop in offered_qops and auth.validate_nonce(realm, key):
            if takes_algorithm:
                ha1 = get_ha1(realm, auth.username, algorithm=auth.algorithm.removesuffix(
                    "-sess"))
            else:
                ha1 = get_ha1(realm, auth.username)
            if ha1 is not None:
                entity = _entity_body() if auth.qop == "auth-int" else b""
                expected = auth.request_digest(ha1, entity)
                if hmac.compare_digest(expected, auth.response):
                    if auth.is_nonce_stale(max_age) or not issued_here(auth.nonce):
                        stale = True  # too old, or another process counts its uses
                    elif nonce_counts.advance(auth.nonce or "", int(auth.nc or "0", 16),
                                              auth.timestamp() or 0, max_age):
                        request.login = auth.username
                        if debug:
                            TRACE(f"digest authentication of {auth.username!r} succeeded")
                        return
                    elif debug:
                        TRACE("replayed nonce count: refused")
    nonce = synthesize_nonce(realm, key)
    challenges = [www_authenticate(realm, key, algorithm, nonce, ",".join(offered_qops),
                                   stale, accept_charset) for algorithm in algorithms]
    serving.response.headers["WWW-Authenticate"] = ", ".join(challenges)
    raise HTTPError(401, "This page needs a user name and password.")


digest_auth.priority = 1  # type: ignore[attr-defined]


def _request_uri(request: Any) -> str:
    """Return the request target as the client sent it (path and query)."""
    environ = getattr(request, "wsgi_environ", None) or {}
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        return raw
    path = urllib.parse.quote(request.script_name + request.path_info, safe="/%:@!$&'()*+,;=")
    return path + ("?" + request.query_string if request.query_string else "")
