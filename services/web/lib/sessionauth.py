"""Session-based login (``tools.session_auth``): ``SessionAuth`` and ``session_auth``.

With the tool on (and ``tools.sessions`` on), every request below its section needs a user
name in ``session[session_key]``; without one the login screen is the answer. The screen
posts to ``do_login`` (``check_username_and_password`` returns an error message, or None
when the credentials are right); ``do_logout`` forgets the user. Both need POST. Any
attribute of SessionAuth can be replaced through a tool argument
(``tools.session_auth.check_username_and_password = my_check``); the reference's names
are also in ``lib.cptools``.

Beyond the reference, for safety: the values the login screen shows are HTML-escaped; a
successful login gets a new session id (``session.regenerate()``), so an id planted before
login is worthless after it (session fixation); and ``from_page`` redirects only within
this site, never to another host (an open redirect).
"""

from __future__ import annotations

import html
import urllib.parse
from typing import Any

from services.web._cperror import HTTPError, HTTPRedirect
from services.web._serving import serving

__all__ = ["SessionAuth", "session_auth"]


# The login form: the tests and the reference's suite look for its <form> line and the
# "Message:" line; the field names are what do_login reads.
_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Log in</title></head>
<body>
<p>Message: {error_msg}</p>
<form method="post" action="do_login">
<p><label>Login: <input type="text" name="username" value="{username}" size="10"></label></p>
<p><label>Password: <input type="password" name="password" size="10"></label></p>
<input type="hidden" name="from_page" value="{from_page}">
<p><input type="submit" value="Log in"></p>
</form>
</body>
</html>
"""


class SessionAuth:
    """Login by form, kept in the session: each request without a user name gets the form."""

    session_key = "username"
    debug = False

    def check_username_and_password(self, username: str, password: str) -> str | None:
        """Return an error message if the credentials are wrong, else None."""
        return None

    def anonymous(self) -> str | None:
        """The user name to give a visitor who has not logged in; None asks them to log in."""
        return None

    def on_login(self, username: str) -> None:
        pass

    def on_logout(self, username: str) -> None:
        pass

    def on_check(self, username: str) -> None:
        pass

    def login_screen(self, from_page: str = "..", username: str = "", error_msg: str = "",
                     **kwargs: Any) -> bytes:
        """Return the login page (bytes)."""
        fields = {name: html.escape(str(value), quote=True) for name, value in
                  (("from_page", from_page), ("username", username), ("error_msg", error_msg))}
        return _LOGIN_PAGE.format(**fields).encode("utf-8")

    def _answer(self, body: bytes) -> bool:
        response = serving.response
        response.body = body
        response.headers.pop("Content-Length", None)
        response.headers["Content-Type"] = "text/html;charset=utf-8"
        return True

    def do_login(self, username: str = "", password: str = "", from_page: str = "..",
                 **kwargs: Any) -> bool:
        """Check the posted credentials: redirect on success, show the form again on failure."""
        error_msg = self.check_username_and_password(username, password)
        if error_msg:
            return self._answer(self.login_screen(from_page, username, error_msg))
        session = serving.session
        serving.request.login = username
        session.regenerate()
        session[self.session_key] = username
        self.on_login(username)
        raise HTTPRedirect(_same_site(from_page) or "/")

    def do_logout(self, from_page: str = "..", **kwargs: Any) -> bool:
        """Forget the session's user and redirect back."""
        session = serving.session
        username = session.get(self.session_key)
        session[self.session_key] = None
        if username:
            serving.request.login = None
            self.on_logout(username)
        raise HTTPRedirect(_same_site(from_page) or "/")

    def do_check(self) -> bool | None:
        """Let a request with a user name through; answer the others with the login form."""
        from services.web._helper import url

        session = serving.session
        request = serving.request
        username = session.get(self.session_key)
        if not username:
            session[self.session_key] = username = self.anonymous()
            self._debug_message("no user name in the session: asking anonymous()")
        if not username:
            self._debug_message("No username, routing to login_screen")
            return self._answer(self.login_screen(url(qs=request.query_string)))
        request.login = username
        self.on_check(username)
        return None

    def _debug_message(self, template: str, context: dict[str, Any] | None = None) -> None:
        if self.debug:
            from services.web._cprequest import current_log

            current_log().error(template % (context or {}), "TOOLS.SESSAUTH")

    def run(self) -> bool | None:
        request = serving.request
        path = request.path_info
        if path.endswith("login_screen"):
            return self._answer(self.login_screen(**_text_params(request.params)))
        if path.endswith(("do_login", "do_logout")):
            if request.method != "POST":
                serving.response.headers["Allow"] = "POST"
                raise HTTPError(405)
            params = _text_params(request.params)
            if path.endswith("do_login"):
                return self.do_login(**params)
            return self.do_logout(**params)
        return self.do_check()


def _text_params(params: dict[str, Any]) -> dict[str, str]:
    """Return the request params as text; a repeated or uploaded field is a 400."""
    for name, value in params.items():
        if not isinstance(value, str):
            raise HTTPError(400, f"The field {name!r} must be given once, as text.")
    return dict(params)


def _same_site(target: str) -> str:
    """Return ``target`` if it stays on this site (a path or this host's URL), else ''."""
    target = (target or "").strip()
    parts = urllib.parse.urlsplit(target)
    if target.startswith(("//", "\\")) or "\\" in target:
        return ""
    if parts.scheme or parts.netloc:
        base = urllib.parse.urlsplit(serving.request.base)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            return ""
    return target


def session_auth(**kwargs: Any) -> bool | None:
    """Session authentication hook: any SessionAuth attribute may be given as an argument."""
    auth = SessionAuth()
    for name, value in kwargs.items():
        setattr(auth, name, value)
    return auth.run()


session_auth.__doc__ = (
    "Ask for a login before the handler runs.\n\nEach keyword sets the SessionAuth "
    "attribute of the same name for this request:\n\n" + "\n".join(
        f"{name}: {type(getattr(SessionAuth, name)).__name__}"
        for name in dir(SessionAuth) if not name.startswith("__")))
