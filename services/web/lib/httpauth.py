"""The legacy RFC 2617 helpers (``lib.httpauth``), kept for ``lib.auth`` and old code.

Usage: ``doAuth(realm)`` gives the challenge to send with a 401 (Digest preferred, Basic as
the fallback); ``parseAuthorization(header)`` turns the client's Authorization header into
an ``auth_map`` (None if it cannot be parsed); ``checkResponse(auth_map, password, ...)``
checks it against the stored password. Digest supports MD5 and MD5-sess, qop auth and
auth-int.

These nonces carry no proof of origin and are not checked for age or reuse, as in the
reference: new code should use ``lib.auth_digest`` (RFC 7616, SHA-256, replay checks) and
``lib.auth_basic``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from services.web.lib.auth_digest import parse_params

__all__ = ["DIGEST_AUTH_ENCODERS", "MD5", "MD5_SESS", "SUPPORTED_ALGORITHM", "SUPPORTED_QOP",
           "basicAuth", "calculateNonce", "checkResponse", "digestAuth", "doAuth",
           "md5SessionKey", "parseAuthorization"]

MD5 = "MD5"
MD5_SESS = "MD5-sess"
AUTH = "auth"
AUTH_INT = "auth-int"
SUPPORTED_ALGORITHM = (MD5, MD5_SESS)
SUPPORTED_QOP = (AUTH, AUTH_INT)


def _md5_hex(text: str | bytes) -> str:
    return hashlib.md5(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


DIGEST_AUTH_ENCODERS: dict[str, Callable[[str], str]] = {MD5: _md5_hex, MD5_SESS: _md5_hex}


def calculateNonce(realm: str, algorithm: str = MD5) -> str:  # noqa: N802
    """Return a new nonce value."""
    try:
        encoder = DIGEST_AUTH_ENCODERS[algorithm]
    except KeyError:
        raise NotImplementedError(f"The chosen algorithm ({algorithm}) does not have an "
                                  "implementation yet") from None
    return encoder(f"{time.time()}:{realm}:{os.urandom(8).hex()}")


def digestAuth(realm: str, algorithm: str = MD5, nonce: str | None = None,  # noqa: N802
               qop: str = AUTH) -> str:
    """Return a challenge for Digest authentication."""
    if nonce is None:
        nonce = calculateNonce(realm, algorithm)
    return f'Digest realm="{realm}", nonce="{nonce}", algorithm="{algorithm}", qop="{qop}"'


def basicAuth(realm: str) -> str:  # noqa: N802
    """Return a challenge for Basic authentication."""
    if '"' in realm:
        raise ValueError(f"realm: a double quote cannot appear in it, got {realm!r}")
    return f'Basic realm="{realm}"'


def doAuth(realm: str) -> str:  # noqa: N802
    """Return the challenge string: Digest first, Basic for clients without Digest."""
    return digestAuth(realm) + ", " + basicAuth(realm)


def parseAuthorization(credentials: str | None) -> dict[str, Any] | None:  # noqa: N802
    """Return the ``auth_map`` of an Authorization header value, or None if it cannot parse."""
    if not credentials:
        return None
    scheme, _, params = credentials.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            text = base64.b64decode(params.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        username, colon, password = text.partition(":")
        if not colon:
            return None
        return {"username": username, "password": password, "auth_scheme": "basic"}
    if scheme == "digest":
        try:
            parsed: dict[str, Any] = parse_params(params)
        except ValueError:
            return None
        required = ("username", "realm", "nonce", "uri", "response")
        if any(not parsed.get(name) for name in required):
            return None
        if "qop" in parsed and not (parsed.get("cnonce") and parsed.get("nc")):
            return None
        parsed["auth_scheme"] = "digest"
        return parsed
    return None


def md5SessionKey(params: dict[str, Any], password: str) -> str:  # noqa: N802
    """Return A1 for MD5-sess: H(user:realm:password):nonce:cnonce."""
    for key in ("username", "realm", "nonce", "cnonce"):
        if key not in params:
            raise KeyError(f"missing {key!r} in the Authorization parameters")
    ha1 = _md5_hex(f"{params['username']}:{params['realm']}:{password}")
    return f"{ha1}:{params['nonce']}:{params['cnonce']}"


def _digest_response(auth_map: dict[str, Any], password: str, method: str,
                     a1: str | None, entity_body: bytes | str = b"") -> str:
    algorithm = auth_map.get("algorithm", MD5)
    if algorithm not in SUPPORTED_ALGORITHM:
        raise NotImplementedError(f"unsupported algorithm {algorithm!r}")
    if algorithm == MD5_SESS:
        a1 = a1 or md5SessionKey(auth_map, password)
    else:
        a1 = f"{auth_map['username']}:{auth_map['realm']}:{password}"
    qop = auth_map.get("qop")
    a2 = f"{method}:{auth_map['uri']}"
    if qop == AUTH_INT:
        a2 += ":" + _md5_hex(entity_body)
    if qop:
        data = f"{auth_map['nonce']}:{auth_map['nc']}:{auth_map['cnonce']}:{qop}:" \
               f"{_md5_hex(a2)}"
    else:
        data = f"{auth_map['nonce']}:{_md5_hex(a2)}"
    return _md5_hex(f"{_md5_hex(a1)}:{data}")


def checkResponse(auth_map: dict[str, Any], password: str | None,  # noqa: N802
                  method: str = "GET", encrypt: Callable[..., str] | None = None,
                  **kwargs: Any) -> bool:
    """Return True if ``auth_map`` (from parseAuthorization) matches ``password``.

    Basic: ``encrypt(sent_password[, username])`` (default: as sent) must equal
    ``password``. Digest: the realm must equal ``kwargs['realm']``; ``A1`` may be given for
    MD5-sess.
    """
    if password is None:
        return False
    scheme = auth_map.get("auth_scheme")
    if scheme == "basic":
        sent = auth_map["password"]
        if encrypt is None:
            candidate = sent
        else:
            try:
                candidate = encrypt(sent, auth_map["username"])
            except TypeError:
                candidate = encrypt(sent)
        return hmac.compare_digest(str(candidate).encode(), str(password).encode())
    if scheme == "digest":
        if auth_map.get("realm") != kwargs.get("realm"):
            return False
        try:
            expected = _digest_response(auth_map, password, method, kwargs.get("A1"),
                                        kwargs.get("entity_body", b""))
        except (KeyError, NotImplementedError):
            return False
        return hmac.compare_digest(expected, str(auth_map.get("response", "")).lower())
    return False
