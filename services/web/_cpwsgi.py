"""The WSGI side of an Application: environ in, Request/Response run, iterable out.

One call of the application serves one request, in this order: a Request and a Response
are made current for the thread (``acquire_thread`` and ``before_request`` are published
on the bus), the request runs, ``start_response`` gets the status and headers, and the
returned iterable hands out the body. Its ``close()`` (which the server calls when it has
sent everything, or given up) closes every closable body the response held, runs the
``on_end_request`` hooks, publishes ``after_request`` and clears the thread's slots.

An InternalRedirect makes a new GET request for the new path within the same call (the old
request is closed first); visiting the same URL twice is an error. Failures outside the
request machinery (and errors from a streamed body before anything was sent) answer with
the bare 500 of ``_cperror.bare_error``, with the traceback shown where
``request.show_tracebacks`` is on; they are logged either way.

Paths and query strings arrive in WSGI's form (bytes seen as latin-1) and are decoded as
UTF-8 where they are valid UTF-8.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

from services.web import _cperror
from services.web._cperror import InternalRedirect
from services.web._cprequest import current_log
from services.web._serving import serving
from services.web.lib.httputil import HeaderMap, Host, decode_TEXT_maybe
from sitebus.site.container import log as _site_log

__all__ = ["AppResponse", "CPWSGIApp", "VirtualHost", "serve", "translate_headers"]

# WSGI environ keys to header names; filled as keys are met (None: not a header).
_header_names: dict[str, str | None] = {
    "HTTP_CGI_AUTHORIZATION": "Authorization",
    "CONTENT_LENGTH": "Content-Length",
    "CONTENT_TYPE": "Content-Type",
    "REMOTE_HOST": "Remote-Host",
    "REMOTE_ADDR": "Remote-Addr",
}
_MAX_HEADER_NAMES = 4096

_hosts: dict[tuple[str, str, str], Host] = {}


def translate_headers(environ: dict[str, Any]) -> HeaderMap:
    """Return the request headers of a WSGI environ, title-cased as HeaderMap keeps them."""
    headers = HeaderMap()
    names = _header_names
    for key, value in environ.items():
        name = names.get(key, "")
        if name == "":
            if key[:5] == "HTTP_":
                name = key[5:].replace("_", "-").title()
            else:
                name = None
            if len(names) < _MAX_HEADER_NAMES:
                names[key] = name
        if name is not None:
            if "=?" in value:
                # A decoded word must not smuggle in a line break (header injection).
                value = decode_TEXT_maybe(value).replace("\r", "").replace("\n", "")
            dict.__setitem__(headers, name, value)
    return headers


def _recode(text: str) -> str:
    """Decode a WSGI string (latin-1-seen bytes) as UTF-8, if it is valid UTF-8."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _local_host(environ: dict[str, Any]) -> Host:
    key = (environ.get("SERVER_ADDR", ""), environ.get("SERVER_PORT", ""),
           environ.get("SERVER_NAME", ""))
    host = _hosts.get(key)
    if host is None:
        try:
            port = int(key[1] or 80)
        except ValueError:
            port = -1
        host = Host(key[0], port, key[2])
        if len(_hosts) < 64:
            _hosts[key] = host
    return host


class AppResponse:
    """The iterable WSGI result of one request; ``close()`` ends the request."""

    __slots__ = ("app", "request", "response", "body", "closed")

    def __init__(self, app: Any, request: Any, response: Any, body: Any) -> None:
        self.app = app
        self.request = request
        self.response = response
        self.body = body
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        """End the request: close the body, on_end_request, after_request, clear the slots."""
        if self.closed:
            return
        self.closed = True
        try:
            self.response.close_body()
        finally:
            self.app.release_serving(self.request, self.response)


def _streamed(body: Any, start_response: Callable[..., Any], request: Any) -> Iterator[bytes]:
    """Hand out a streamed body; an error before the first chunk still becomes a 500."""
    started = False
    try:
        for chunk in body:
            started = True
            yield chunk
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except Exception:
        tb = _cperror.format_exc()
        current_log().error(tb, "HTTP", severity=40)
        shown = tb if _cperror.shows_tracebacks(request) else ""
        status, headers, content = _cperror.bare_error(shown)
        start_response(status, headers, sys.exc_info())  # re-raises once headers are out
        if not started:
            yield from content


def _native_headers(header_list: list[tuple[Any, Any]]) -> list[tuple[str, str]]:
    """Return ``header_list`` as text pairs; code may have added byte-string pairs to it
    (the reference's form), which are decoded as ISO-8859-1."""
    for name, value in header_list:
        if type(name) is not str or type(value) is not str:
            break
    else:
        return header_list
    return [(_native_text(name, "key"), _native_text(value, "value"))
            for name, value in header_list]


def _native_text(part: Any, what: str) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, bytes):
        return part.decode("ISO-8859-1")
    raise TypeError(f"response.header_list {what} {part!r} is not a byte string.")


def respond(app: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """Serve one request of ``app`` (a WSGI call that may raise InternalRedirect)."""
    request, response = app.get_serving(
        _local_host(environ),
        Host(environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or -1),
             environ.get("REMOTE_HOST", "")),
        environ.get("wsgi.url_scheme", "http"),
        environ.get("ACTUAL_SERVER_PROTOCOL", "HTTP/1.1"),
    )
    try:
        request.login = environ.get("LOGON_USER") or environ.get("REMOTE_USER") or None
        request.multithread = environ.get("wsgi.multithread", True)
        request.multiprocess = environ.get("wsgi.multiprocess", False)
        request.wsgi_environ = environ
        environ["cherrypy.request"] = request  # for the access line, written after the body
        request.prev = environ.get("cherrypy.previous_request")
        method = request.method = environ["REQUEST_METHOD"]
        script_name = request.script_name = _recode(environ.get("SCRIPT_NAME", ""))
        # '' below a mount point ('/app' asked, '/app/' meant): trailing_slash redirects.
        path_info = _recode(environ.get("PATH_INFO", "")) or ("" if script_name else "/")
        request.path_info = path_info
        query_string = request.query_string = _recode(environ.get("QUERY_STRING", ""))
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.0")
        request.request_line = (
            f"{method} {script_name}{path_info}{'?' if query_string else ''}{query_string} "
            f"{protocol}")
        request.headers = translate_headers(environ)
        request.rfile = environ.get("wsgi.input")
        request.run_prepared(protocol)
        body = response.body
        if response.stream and request.method != "HEAD":
            body = _streamed(body, start_response, request)
        start_response(response.output_status, _native_headers(response.header_list))
        if not response.stream and _site_log.wants_access():
            # Known length: the line is written now, before the body goes out (as the
            # reference writes it), so it is in the log when the client has the response.
            _site_log.access()  # type: ignore[call-arg]  # (a SiteLog: see _cplogging)
            environ["cherrypy.access_logged"] = True
    except BaseException:
        try:
            response.close_body()
        finally:
            app.release_serving(request, response)
        raise
    return AppResponse(app, request, response, body)


def serve(app: Any, inner: Callable[..., Any], environ: dict[str, Any],
          start_response: Callable[..., Any]) -> Any:
    """Call ``inner`` for the request, following internal redirects and trapping errors."""
    try:
        redirections: list[str] = []
        while True:
            try:
                return inner(environ, start_response)
            except InternalRedirect as ir:
                environ = _redirected_environ(environ, ir, redirections, app.recursive)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        tb = _cperror.format_exc()
        current_log().error(tb, "HTTP", severity=40)
        shown = tb if _cperror.shows_tracebacks(serving.request) else ""
        status, headers, body = _cperror.bare_error(shown)
        start_response(status, headers, sys.exc_info())
        return body


def _redirected_environ(environ: dict[str, Any], ir: InternalRedirect,
                        redirections: list[str], recursive: bool) -> dict[str, Any]:
    sn = environ.get("SCRIPT_NAME", "")
    old_uri = sn + environ.get("PATH_INFO", "")
    if environ.get("QUERY_STRING"):
        old_uri += "?" + environ["QUERY_STRING"]
    redirections.append(old_uri)
    new_path = ir.path.encode("utf-8").decode("latin-1")
    new_qs = ir.query_string.encode("utf-8").decode("latin-1")
    if not recursive:
        new_uri = sn + new_path + ("?" + new_qs if new_qs else "")
        if new_uri in redirections:
            raise RuntimeError(f"InternalRedirector visited the same URL twice: {new_uri!r}")
    environ = dict(environ)
    environ["REQUEST_METHOD"] = "GET"
    environ["PATH_INFO"] = new_path
    environ["QUERY_STRING"] = new_qs
    environ["wsgi.input"] = io.BytesIO()
    environ["CONTENT_LENGTH"] = "0"
    environ.pop("CONTENT_TYPE", None)
    environ["cherrypy.previous_request"] = ir.request
    return environ


class CPWSGIApp:
    """An Application's WSGI interface: its middleware ``pipeline`` around its requests.

    ``pipeline`` is a list of ``(name, factory)``; each factory is called as
    ``factory(next_app, **config[name])``, outermost first. The chain is built at the first
    request after a change of config (``Application.merge``), so entries added before the
    app serves (``app.wsgiapp.pipeline.append(...)``) take part.
    """

    def __init__(self, cpapp: Any, pipeline: list[tuple[str, Callable[..., Any]]] | None = None
                 ) -> None:
        self.cpapp = cpapp
        self.pipeline: list[tuple[str, Callable[..., Any]]] = list(pipeline or [])
        self.config: dict[str, dict[str, Any]] = {}
        self.head: Callable[..., Any] | None = None
        self._configured: list[tuple[str, Callable[..., Any]]] = []
        self._configured_args: list[tuple[str, str]] = []

    def tail(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The innermost WSGI callable: run the request on the application."""
        return respond(self.cpapp, environ, start_response)

    def reset(self) -> None:
        """Forget what the app's config put in the pipeline (its config is read again);
        what code added stays."""
        self.pipeline[:] = [entry for entry in self.pipeline if entry not in self._configured]
        for name, arg in self._configured_args:
            self.config.get(name, {}).pop(arg, None)
        self._configured = []
        self._configured_args = []
        self.head = None

    def configure(self, key: str, value: Any) -> None:
        """Apply one ``wsgi.*`` key of the app's config: ``pipeline`` or ``<name>.<arg>``."""
        if key == "pipeline":
            self.pipeline.extend(value)
            self._configured.extend(value)
            return
        name, _, arg = key.partition(".")
        self.config.setdefault(name, {})[arg] = value
        self._configured_args.append((name, arg))

    def _build(self) -> Callable[..., Any]:
        head: Callable[..., Any] = self.tail
        for name, factory in reversed(self.pipeline):
            head = factory(head, **self.config.get(name, {}))
        self.head = head
        return head

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        head = self.head or self._build()
        return serve(self.cpapp, head, environ, start_response)


class VirtualHost:
    """WSGI middleware that picks an application by the request's Host header.

    ``domains`` maps host names (with a port where the clients send one) to WSGI apps;
    requests for other hosts go to ``default``. With ``use_x_forwarded_host`` (the default)
    a proxy's X-Forwarded-Host wins over Host.
    """

    def __init__(self, default: Callable[..., Any],
                 domains: dict[str, Callable[..., Any]] | None = None,
                 use_x_forwarded_host: bool = True) -> None:
        self.default = default
        self.domains = dict(domains or {})
        self.use_x_forwarded_host = use_x_forwarded_host

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        host = environ.get("HTTP_HOST", "")
        if self.use_x_forwarded_host:
            host = environ.get("HTTP_X_FORWARDED_HOST", host)
        app = self.domains.get(host, self.default)
        return app(environ, start_response)
