"""HTTP Basic authentication (RFC 7617, which replaced RFC 2617): the ``auth_basic`` tool.

Example, with ``checkpassword_dict`` as the credentials store::

    users = {'ada': 'analytical', 'grace': 'cobol'}
    config = {'/admin': {
        'tools.auth_basic.on': True,
        'tools.auth_basic.realm': 'staff',
        'tools.auth_basic.checkpassword': services.web.lib.auth_basic.checkpassword_dict(users),
    }}

The tool runs at ``before_request_body`` (the reference: ``before_handler``), so the body of
an unauthenticated request is never read or parsed. Credentials are decoded as
``accept_charset`` (UTF-8, which the challenge announces), falling back to ISO-8859-1 for
old clients. A missing header, another scheme or wrong credentials answer 401 with the
challenge; a header that is not valid Base64 of ``user:password`` answers 400. On success
``request.login`` is the user name. ``checkpassword_dict`` compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable

from services.web._cperror import HTTPError
from services.web._serving import serving

__all__ = ["basic_auth", "checkpassword_dict", "parse_basic"]


def checkpassword_dict(user_password_dict: dict[str, str]) -> Callable[[str, str, str], bool]:
    """Return a ``checkpassword`` function checking credentials against {username: password}."""

    def checkpassword(realm: str, user: str, password: str) -> bool:
        expected = user_password_dict.get(user)
        if expected is None:
            hmac.compare_digest(password.encode("utf-8"), password.encode("utf-8"))
            return False
        return hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))

    return checkpassword


def parse_basic(header: str | None, charsets: tuple[str, ...] = ("utf-8", "iso-8859-1")
                ) -> tuple[str, str] | None:
    """Return (username, password) from an Authorization header value, or None if not Basic.

    Raises ValueError when the header is Basic but malformed.
    """
    if not header:
        return None
    scheme, _, params = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(params.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("the Basic credentials are not Base64") from None
    for charset in charsets:
        try:
            text = raw.decode(charset)
        except UnicodeDecodeError:
            continue
        username, colon, password = text.partition(":")
        if not colon:
            raise ValueError("the Basic credentials have no ':' between user and password")
        return username, password
    raise ValueError("the Basic credentials could not be decoded")


def basic_auth(realm: str, checkpassword: Callable[[str, str, str], bool],
               debug: bool = False, accept_charset: str = "utf-8") -> None:
    """Check the request's Basic credentials with ``checkpassword(realm, user, password)``.

    Answers 401 (with a ``WWW-Authenticate: Basic`` challenge) when they are missing or
    wrong, 400 when they are malformed.
    """
    if '"' in realm:
        raise ValueError(f"realm: a double quote cannot appear in it, got {realm!r}")
    request = serving.request
    charsets = tuple(dict.fromkeys((accept_charset.lower(), "iso-8859-1")))
    try:
        credentials = parse_basic(request.headers.get("Authorization"), charsets)
    except ValueError as error:
        raise HTTPError(400, f"Bad Request: {error}.") from None
    if credentials is not None:
        username, password = credentials
        if checkpassword(realm, username, password):
            request.login = username
            return
    # ISO-8859-1 is what a client assumes without a charset: announce only another one.
    announce = accept_charset and accept_charset.upper() not in ("ISO-8859-1", "LATIN-1")
    charset = f', charset="{accept_charset.upper()}"' if announce else ""
    serving.response.headers["WWW-Authenticate"] = f'Basic realm="{realm}"{charset}'
    raise HTTPError(401, "This page needs a user name and password.")


basic_auth.priority = 1  # type: ignore[attr-defined]
