"""The legacy authentication tools ``basic_auth`` and ``digest_auth`` (``lib.auth``).

``users`` is {username: password}, or a callable returning that dict or (given a user
name) the password. For Basic, ``encrypt`` (default MD5 hex) is applied to the password the
client sent before comparing it with the stored one; Digest compares plain passwords.
Built on ``lib.httpauth``, whose nonces are not checked for age or reuse: prefer the
``auth_basic`` and ``auth_digest`` tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.web._cperror import HTTPError
from services.web._serving import serving
from services.web.lib import httpauth

__all__ = ["basic_auth", "check_auth", "digest_auth"]


def _password_of(users: Any, username: str) -> str | None:
    if callable(users):
        try:
            found = users()
        except TypeError:
            return users(username)
        users = found
    if not isinstance(users, dict):
        raise ValueError("Authentication users must be a dictionary")
    return users.get(username)


def check_auth(users: Any, encrypt: Callable[..., str] | None = None,
               realm: str | None = None) -> bool:
    """If an authorization header contains credentials, return True or False."""
    request = serving.request
    header = request.headers.get("Authorization")
    if header is None:
        return False
    auth_map = httpauth.parseAuthorization(header)
    if auth_map is None:
        raise HTTPError(400, "Bad Request")
    if encrypt is None:
        encrypt = httpauth.DIGEST_AUTH_ENCODERS[httpauth.MD5]
    password = _password_of(users, auth_map["username"])
    if httpauth.checkResponse(auth_map, password, method=request.method, encrypt=encrypt,
                              realm=realm):
        request.login = auth_map["username"]
        return True
    request.login = False
    return False


def basic_auth(realm: str, users: Any, encrypt: Callable[..., str] | None = None,
               debug: bool = False) -> None:
    """If auth fails, raise 401 with a basic authentication header."""
    if check_auth(users, encrypt):
        return
    serving.response.headers["WWW-Authenticate"] = httpauth.basicAuth(realm)
    raise HTTPError(401, "This page needs a user name and password.")


def digest_auth(realm: str, users: Any, debug: bool = False) -> None:
    """If auth fails, raise 401 with a digest authentication header."""
    if check_auth(users, realm=realm):
        return
    serving.response.headers["WWW-Authenticate"] = httpauth.digestAuth(realm)
    raise HTTPError(401, "This page needs a user name and password.")
