"""The Request: what the client asked for, and the stages that answer it.

A request goes through these stages, running the hooks attached at each point::

    process_headers, get_resource (the dispatcher finds the handler and its config),
    configure (config namespaces: request.*, response.*, tools.*, hooks.*, error_page.*),
    on_start_resource, process_query_string, before_request_body, body processing,
    before_handler, the handler, before_finalize, finalize, on_end_resource;
    on an error: before_error_response, error_response(), after_error_response, finalize;
    when the server has sent everything (or given up): on_end_request.

Hooks of one point run in ascending priority (default 50), ties in the order they were
attached; a failing hook is logged and the other hooks of that point still run only if they
are ``failsafe``; the error is raised after the point's hooks. HTTPError and HTTPRedirect
raised anywhere before finalize become the response; other errors become a 500 through
``error_response``, with the traceback on the page only where ``show_tracebacks`` is on.

The hooks are in ``_cphooks``, the Response in ``_cpresponse``; both are also reachable here
under the reference's module name.
"""

from __future__ import annotations

import http.cookies
import uuid
from typing import Any

from services.web import _cperror
from services.web._cpdispatch import Dispatcher
from services.web._cperror import HTTPError, HTTPRedirect, InternalRedirect
from services.web._cphooks import Hook, HookMap, current_log, hookpoints, log_traceback
from services.web._cpresponse import Response, prepare_iter
from services.web._serving import serving
from services.web.lib import httputil

__all__ = ["Hook", "HookMap", "Request", "Response", "current_log", "hookpoints",
           "log_traceback", "prepare_iter"]


def _stop_if_timed_out(response: Response) -> None:
    """Raise TimeoutError once the timeout monitor has marked ``response`` as too late."""
    if response.timed_out:
        raise _cperror.TimeoutError()


class Request:
    """An HTTP request: what the client asked for, and how this application answers it.

    Class attributes are the defaults; config (``request.*``) and tools change them per
    request on the instance.
    """

    prev: Request | None = None
    """The previous Request when an InternalRedirect made this one."""

    local = httputil.Host("127.0.0.1", 80)
    """The server's address (ip, port, name)."""

    remote = httputil.Host("127.0.0.1", 1111)
    """The client's address (ip, port, name)."""

    scheme = "http"
    server_protocol = "HTTP/1.1"
    base = ""
    """The scheme and host of the request URL, e.g. 'http://www.example.com:8080'."""

    request_line = ""
    method = "GET"
    query_string = ""
    query_string_encoding = "utf8"
    protocol = (1, 1)
    """The HTTP version for this request: the lesser of the client's and the server's."""

    params: dict[str, Any] = {}
    """Keyword arguments for the handler, from the query string, the body and the path."""

    headers = httputil.HeaderMap()
    rfile: Any = None
    process_request_body = True
    methods_with_bodies = ("POST", "PUT", "PATCH")
    """The methods whose request body is processed (into ``params``)."""

    body: Any = None
    """The request entity (a RequestBody); ``body.params`` are the params from the body."""

    dispatch: Any = Dispatcher()
    """The dispatcher: finds the handler and config (``request.dispatch`` in config)."""

    script_name = ""
    """Where the app serving this request is mounted ('' for the root)."""

    path_info = "/"
    """The path below the mount point (after the dispatcher, the handler's path)."""

    login: str | None = None
    app: Any = None
    handler: Any = None
    """The page handler the dispatcher found; tools may wrap or replace it."""

    toolmaps: dict[str, dict[str, dict[str, Any]]] = {}
    config: dict[str, Any] | None = None
    is_index: bool | None = None
    """True if the handler is an index (its URL ends with '/'), False if not, None if unknown."""

    hooks = HookMap(hookpoints)
    error_page: dict[Any, Any] = {}
    """Custom error pages: {code or 'default': a template file name or a callable}."""

    show_tracebacks = True
    """If True, unexpected errors show their traceback on the error page."""

    show_mismatched_params = True
    """If True, 404/400 pages for wrong handler arguments say which ones were wrong."""

    throws: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, InternalRedirect)
    throw_errors = False
    """If True, unexpected errors propagate instead of becoming 500 responses."""

    cached = False
    """True if the response was served from the cache (``tools.caching``)."""

    cacheable = False
    """True if the response may be stored in the cache (``tools.caching``)."""

    closed = False
    stage: str | None = None
    multithread = True
    multiprocess = False
    wsgi_environ: dict[str, Any] = {}
    namespaces: Any = None  # the NamespaceSet, set by _cpconfig

    def __init__(self, local_host: httputil.Host, remote_host: httputil.Host,
                 scheme: str = "http", server_protocol: str = "HTTP/1.1") -> None:
        self.local = local_host
        self.remote = remote_host
        self.scheme = scheme
        self.server_protocol = server_protocol
        self.params = {}

    def __getattr__(self, name: str) -> Any:
        if name == "cookie":
            cookie = self.cookie = http.cookies.SimpleCookie()
            value = self.headers.get("Cookie")
            if value:
                try:
                    cookie.load(value)
                except http.cookies.CookieError as error:
                    raise HTTPError(400, str(error)) from None
            return cookie
        if name == "unique_id":
            unique = self.unique_id = uuid.uuid4()
            return unique
        if name == "header_list":
            return list(self.headers.items())
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- running ---------------------------------------------------------------------------

    def run(self, method: str, path: str, query_string: str, req_protocol: str,
            headers: Any, rfile: Any) -> Response:
        """Process the request and return the Response (also ``serving.response``).

        ``path`` is the full path (script name and path info); ``headers`` a HeaderMap or
        a list of (name, value) pairs. The WSGI adapter calls ``run_prepared`` instead.
        """
        self.method = method
        self.query_string = query_string or ""
        if not isinstance(headers, httputil.HeaderMap):
            header_map = httputil.HeaderMap()
            for name, value in headers:
                header_map[name] = httputil.decode_TEXT_maybe(value.strip())
            headers = header_map
        self.headers = headers
        self.rfile = rfile
        path = path or "/"
        script_name = self.app.script_name if self.app is not None else ""
        self.script_name = script_name
        self.path_info = path[len(script_name):] if path.startswith(script_name) else path
        self.request_line = f"{method} {path}{'?' + query_string if query_string else ''} " \
                            f"{req_protocol}"
        return self.run_prepared(req_protocol)

    def run_prepared(self, req_protocol: str) -> Response:
        """Process a request whose method, paths, query string and headers are set."""
        response = serving.response
        try:
            self.stage = "process_protocol"
            rp = int(req_protocol[5]), int(req_protocol[7])
            sp = int(self.server_protocol[5]), int(self.server_protocol[7])
            self.protocol = rp if rp < sp else sp
            self.respond(self.path_info)
        except Exception as error:
            if self._passes_through(error):
                raise
            # A failure in setup, in the error handler or in finalize: bypass them.
            log_traceback()
            body = _cperror.format_exc() if _cperror.shows_tracebacks(self) else ""
            status, header_list, content = _cperror.bare_error(body)
            response.status = response.output_status = status
            response.header_list = header_list
            response._body = content
        if self.method == "HEAD":
            response._body = []  # HEAD responses MUST NOT carry a body
        return response

    def respond(self, path_info: str) -> None:
        """Find the handler for ``path_info``, run the hooks around it, and fill in the response."""
        try:
            self._respond_then_end_resource(path_info, serving.response)
        except Exception as error:
            if self._passes_through(error):
                raise
            self.handle_error()

    def _passes_through(self, error: BaseException) -> bool:
        """Tell whether ``error`` goes on to the server instead of becoming an error page."""
        return isinstance(error, self.throws) or bool(self.throw_errors)

    def _respond_then_end_resource(self, path_info: str, response: Response) -> None:
        """Answer the request, an HTTPError or redirect being an answer too; the
        on_end_resource hooks run whatever happens."""
        try:
            self._do_respond(path_info, response)
        except (HTTPRedirect, HTTPError) as answer:
            answer.set_response()
            self.stage = "before_finalize (HTTPError)"
            self.hooks.run("before_finalize")
            response.finalize()
        finally:
            self._enter_hook_point("on_end_resource")

    def _do_respond(self, path_info: str, response: Response) -> None:
        """Take the request through its stages, from the headers to the finalized response.

        ``stage`` names the step under way (error logs quote it); where a step is a hook
        point, its hooks run on entering it.
        """
        if self.app is None:
            raise _cperror.NotFound()
        self.toolmaps = {}
        self.hooks = type(self).hooks.copy()
        for stage, step in (("process_headers", self.process_headers),
                            ("get_resource", lambda: self.get_resource(path_info))):
            self.stage = stage
            step()

        from services.web._cpreqbody import RequestBody

        self.body = RequestBody(self.rfile, self.headers, request_params=self.params)
        self.configure()
        self._enter_hook_point("on_start_resource")
        self.stage = "process_query_string"
        if self.query_string:
            self.process_query_string()
        # Only the methods that carry a body have it read (a GET's is left alone).
        self.process_request_body = (self.process_request_body
                                     and self.method in self.methods_with_bodies)
        self._enter_hook_point("before_request_body")
        if self.process_request_body:
            self.body.process()
        _stop_if_timed_out(response)
        self._enter_hook_point("before_handler")
        if self.handler:
            _stop_if_timed_out(response)  # the before_handler hooks may have used it up
            self.stage = "handler"
            response.body = self.handler()
        self._enter_hook_point("before_finalize")
        response.finalize()

    def _enter_hook_point(self, point: str) -> None:
        self.stage = point
        self.hooks.run(point)

    def process_query_string(self) -> None:
        """Parse the query string into ``params``; a string not in its encoding is a 404."""
        try:
            p = httputil.parse_query_string(self.query_string,
                                            encoding=self.query_string_encoding)
        except UnicodeDecodeError:
            raise HTTPError(
                404, "The given query string could not be processed. Query strings for this "
                f"resource must be encoded with {self.query_string_encoding!r}.") from None
        self.params.update(p)

    def process_headers(self) -> None:
        """Check the Host header (HTTP/1.1 requires it) and compute ``base``."""
        host = dict.get(self.headers, "Host")
        if not host:
            if self.protocol >= (1, 1):
                raise HTTPError(400, "An HTTP/1.1 request must carry a Host header.")
            host = self.local.name or self.local.ip
        self.base = f"{self.scheme}://{host}"

    def get_resource(self, path: str) -> None:
        """Call the dispatcher: it sets ``handler`` and ``config``."""
        dispatch = self.dispatch
        app_dispatch = self.app.find_config(path, "request.dispatch", None) \
            if self.app._dispatch_in_config else None
        if app_dispatch is not None:
            dispatch = app_dispatch
        dispatch(path)

    def configure(self) -> None:
        """Apply the config namespaces of ``self.config`` to this request."""
        from services.web._cpconfig import apply_request_config

        apply_request_config(self)

    def handle_error(self) -> None:
        """Handle the last unanticipated exception (turn it into an error response)."""
        response = serving.response
        try:
            self.hooks.run("before_error_response")
            error_response = self.error_response
            if error_response is not None:
                error_response()
            self.hooks.run("after_error_response")
            response.finalize()
        except HTTPRedirect as inst:
            inst.set_response()
            response.finalize()

    @staticmethod
    def error_response() -> None:
        """Set the response to a 500 error page (the default ``request.error_response``)."""
        HTTPError(500).set_response()

    def close(self) -> None:
        """Run the on_end_request hooks: the response has been sent (or abandoned).

        Then close the temporary files of uploads: they belong to this request.
        """
        if not self.closed:
            self.closed = True
            self.stage = "on_end_request"
            try:
                self.hooks.run("on_end_request")
            finally:
                self.stage = "close"
                body = self.body
                if body is not None and hasattr(body, "close_files"):
                    body.close_files()

