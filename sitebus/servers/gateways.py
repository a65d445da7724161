"""FastCGI, SCGI and CGI gateways: the reference's flup adapters, driven by a ServerAdapter.

Each adapter has what a ServerAdapter drives: ``start()`` serves until ``stop()``, ``ready``
and ``ready_event``. flup is optional and imported inside ``start()`` (also the reference's
reason: flup's constructor starts a thread pool, which must not exist before daemonizing);
``require_flup()`` reports a missing flup by name before anything is bound.

A front that sends no ``PATH_INFO`` (nginx's ``scgi_params`` and ``fastcgi_params`` do not)
left flup to take it from ``REQUEST_URI``, still percent-encoded: ``/caf%C3%A9`` reached the
app as is, where every HTTP server gives it decoded. ``path_info_from_request_uri`` decodes
it, as WSGI wants (the bytes as latin-1 characters). nginx's ``fastcgi_params`` also send the
whole path as ``SCRIPT_NAME``, which a site mounted at the root must reset
(``fastcgi_param SCRIPT_NAME "";``): the path's split cannot be guessed.

flup's servers install handlers for SIGINT, SIGTERM and SIGHUP in ``run()``, which fails
outside the main thread and would take the signals away from the bus: the adapters turn that
off. Given a listener, they serve on it instead of binding ``bindAddress`` themselves.
``stop()`` ends flup's select loop and makes the listener accept nothing more (for a socket
sitebus owns, new connections are refused at once); flup then waits for its worker threads
to finish the requests in flight.

CGI: flup's CGI server writes the application's bytes to the text stream ``sys.stdout``,
which raises TypeError on Python 3, so CGIServer runs the standard library's
``wsgiref.handlers.CGIHandler``; ``FlupCGIServer`` remains as the reference's name for it.
A CGI process answers one request, so its ``start()`` returns when that is done, and the
ServerAdapter then exits the bus.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from sitebus.errors import UnavailableError
from sitebus.servers.listeners import Listener

__all__ = ["CGIServer", "FlupCGIServer", "FlupFCGIServer", "FlupSCGIServer",
           "path_info_from_request_uri", "require_flup"]


def require_flup(what: str) -> None:
    """Raise UnavailableError naming ``what`` when flup is not installed."""
    if importlib.util.find_spec("flup") is None:
        raise UnavailableError(
            errno.ENOENT, f"{what} needs flup, which is not installed (pip install flup)"
        )


_QUOTED_SLASH = re.compile("%2F", re.IGNORECASE)


def path_info_from_request_uri(environ: Mapping[str, str]) -> str | None:
    """Return ``PATH_INFO`` from ``REQUEST_URI``, decoded, less ``SCRIPT_NAME``; None to keep.

    None when the front sent a ``PATH_INFO`` or no ``REQUEST_URI``. CGI's meta-variables are
    decoded, ``REQUEST_URI`` is not; WSGI strings carry the decoded bytes as latin-1
    characters. As in cheroot, an encoded slash stays ``%2F``, so one path segment cannot
    turn into two.
    """
    if environ.get("PATH_INFO") or "REQUEST_URI" not in environ:
        return None
    raw = environ["REQUEST_URI"].split("?", 1)[0]
    path = "%2F".join(unquote(part, encoding="latin-1") for part in _QUOTED_SLASH.split(raw))
    script_name = environ.get("SCRIPT_NAME", "")
    if script_name and path.startswith(script_name):
        path = path[len(script_name):]
    return path


class _FlupServer:
    """Run a flup WSGIServer from ``module`` until ``stop()``."""

    module = ""
    scheme = ""
    ready = False
    ready_event: threading.Event | None = None

    def __init__(self, *args: Any, listener: Listener | None = None, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.listener = listener
        self.flupserver: Any = None

    def _server_class(self) -> type:
        require_flup(f"the {self.scheme} server")
        base: type = importlib.import_module(self.module).WSGIServer
        adapter = self

        class Server(base):
            def _installSignalHandlers(self) -> None:  # noqa: N802 (flup's name)
                pass  # the bus handles signals

            def _restoreSignalHandlers(self) -> None:  # noqa: N802
                pass

            def _sanitizeEnv(self, environ: dict[str, Any]) -> None:  # noqa: N802
                path_info = path_info_from_request_uri(environ)
                super()._sanitizeEnv(environ)  # QUERY_STRING and the other defaults
                if path_info is not None:
                    environ["PATH_INFO"] = path_info  # flup's own is still encoded

            def _setupSocket(self) -> Any:  # noqa: N802
                if adapter.listener is not None:
                    return adapter.listener
                return super()._setupSocket()

        return Server

    def start(self) -> None:
        """Serve until stop() (flup's run loop)."""
        self.flupserver = self._server_class()(*self.args, **self.kwargs)
        self.ready = True
        if self.ready_event is not None:
            self.ready_event.set()
        self.flupserver.run()

    def stop(self) -> None:
        """Accept nothing more; flup finishes the requests in flight, then start() returns."""
        self.ready = False
        if self.flupserver is not None:
            self.flupserver._keepGoing = False  # flup's own stop flag (its _exit() is the same)
        if self.listener is not None:
            self.listener.stop_accepting()


class FlupFCGIServer(_FlupServer):
    """Serves the site over FastCGI with flup's server (flup.server.fcgi)."""

    module = "flup.server.fcgi"
    scheme = "fcgi"


class FlupSCGIServer(_FlupServer):
    """Serves the site over SCGI with flup's server (flup.server.scgi)."""

    module = "flup.server.scgi"
    scheme = "scgi"


class CGIServer:
    """Answer one CGI request (environment, stdin, stdout) with wsgiref's CGIHandler."""

    scheme = "cgi"
    ready = False
    ready_event: threading.Event | None = None

    def __init__(self, application: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.application = application

    def start(self) -> None:
        """Answer the request, then return."""
        from wsgiref.handlers import CGIHandler

        self.ready = True
        if self.ready_event is not None:
            self.ready_event.set()
        CGIHandler().run(self.application)

    def stop(self) -> None:
        """Nothing to stop: a CGI request runs to its end."""
        self.ready = False


FlupCGIServer = CGIServer
