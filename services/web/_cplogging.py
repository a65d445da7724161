"""The framework's logs under the reference's logger names.

The site's LogManager (``sitebus.site.logs``) owns the process's logs: bus messages go to the
``sitebus`` logger and access lines to ``sitebus.access``, and ``log.screen``,
``log.error_file`` and ``log.access_file`` put handlers there. What the framework writes
(HTTP errors, tracebacks, ``cherrypy.log()`` from handlers, access lines of its requests) goes
to the loggers the reference names instead, so the reference's logging recipes work as
written:

- ``cherrypy.error`` and ``cherrypy.access`` for the site, ``cherrypy.error.<appid>`` and
  ``cherrypy.access.<appid>`` for each Application (``app.log``); an app's error records
  propagate to ``cherrypy.error``.
- The two site loggers pass their records on to the handlers of ``sitebus`` and
  ``sitebus.access`` (``SiteHandlers``), so the site's own settings still decide where they are
  written; ``cherrypy.error`` also propagates to the root logger, as Python's loggers do, so a
  ``logging.config.dictConfig`` naming any of these loggers, or a root handler, sees them.

``services.web.log`` is the site's LogManager itself (one object for the config namespace and
for code); importing the framework gives it the class ``SiteLog``, which sends
``cherrypy.log(...)`` to the current request's application log (so that app's
``log.error_file`` applies) or, outside a request, to ``cherrypy.error``, writes the access
lines of framework requests to ``cherrypy.access`` (with the reference's ``{i}``, the
request's unique id, and ``{z}``), and takes ``log.access()`` without arguments for the
current request, as the reference's does.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Mapping
from time import perf_counter
from typing import Any

from sitebus.site.logs import LogManager as _SiteLogManager

__all__ = ["LazyRfc3339UtcTime", "LogManager", "SiteHandlers", "SiteLog", "site_log"]


class LazyRfc3339UtcTime:
    """The current UTC time as RFC 3339 text (``2026-12-05T23:45:00Z``), made when formatted."""

    def __str__(self) -> str:
        return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LogManager(_SiteLogManager):
    """Error and access logs named as the reference names them: ``cherrypy.error[.appid]``
    and ``cherrypy.access[.appid]``."""

    def __init__(self, appid: str | None = None, logger_root: str = "cherrypy") -> None:
        super().__init__(appid, logger_root)
        suffix = f".{appid}" if appid else ""
        self.error_log = logging.getLogger(f"{logger_root}.error{suffix}")
        if appid is None:
            self.error_log.setLevel(logging.INFO)

    def error(self, msg: str = "", context: str = "", severity: int = logging.INFO,
              traceback: bool = False) -> None:
        """Write ``msg`` to the error log; the context leads the message (``HTTP ...``), as in
        the reference's records, for handlers with formatters of their own."""
        exc_info: Any = sys.exc_info() if traceback and sys.exc_info()[0] else None
        text = f"{context} {msg}" if context else msg
        self.error_log.log(severity, text, exc_info=exc_info)

    __call__ = error


class SiteHandlers(logging.Handler):
    """Hand each record to the handlers of another logger (the site's), not to its parents."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        for handler in self.target.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


site_log = LogManager()
"""The framework's site-level logs: ``cherrypy.error`` and ``cherrypy.access``."""


def current_app_log() -> Any:
    """The LogManager of the application serving this thread's request, or None."""
    from services.web._serving import serving

    request = serving.__dict__.get("request")
    app = getattr(request, "app", None) if request is not None else None
    return getattr(app, "log", None)


class SiteLog(LogManager):
    """The site's LogManager, as the framework uses it (``services.web.log``)."""

    def error(self, msg: str = "", context: str = "", severity: int = logging.INFO,
              traceback: bool = False) -> None:
        """Write to the current application's error log, else to ``cherrypy.error``."""
        target = current_app_log() or site_log
        target.error(msg, context, severity, traceback)

    __call__ = error

    def access(self, environ: Mapping[str, Any] | None = None, status: str | None = None,
               size: int | None = None, duration: float | None = None,
               request_id: str | None = None) -> None:
        """Write one access line; with no arguments, for the current request."""
        request = None
        if environ is None:
            from services.web._serving import serving

            request, response = serving.request, serving.response
            environ = request.wsgi_environ or {}
            status = str(response.status or "200")
            length = response.headers.get("Content-Length")
            size = int(length) if length else None
        else:
            if environ.get("cherrypy.access_logged"):
                return  # written by the framework when the response was ready
            request = environ.get("cherrypy.request")
        if request is None:
            super().access(environ, status or "200", size, duration, request_id)
            return
        if not site_log.access_log.isEnabledFor(logging.INFO):
            return
        if duration is None and "sitebus.request_start" in environ:
            duration = perf_counter() - environ["sitebus.request_start"]
        if request_id is None:
            request_id = environ.get("sitebus.request_id")
        line = self.line_formatter()(self._framework_environ(request, environ),
                                     status or "200", size, duration, request_id)
        site_log.access_log.log(logging.INFO, line)

    @staticmethod
    def _framework_environ(request: Any, environ: Mapping[str, Any]) -> dict[str, Any]:
        """The environ as the framework's handler left the request: its remote (the proxy
        tool's client), its login, its request line and User-Agent, for the site's format."""
        fields = dict(environ)
        remote = getattr(request, "remote", None)
        if remote is not None and (remote.name or remote.ip):
            fields["REMOTE_ADDR"] = remote.name or remote.ip
        if getattr(request, "login", None):
            fields["REMOTE_USER"] = str(request.login)
        parts = str(getattr(request, "request_line", "") or "").split(" ", 2)
        if len(parts) == 3:
            fields["REQUEST_METHOD"], fields["REQUEST_URI"], fields["SERVER_PROTOCOL"] = parts
        headers = getattr(request, "headers", None)
        if headers is not None:
            fields["HTTP_USER_AGENT"] = headers.get("User-Agent", "")
        return fields

    def wants_access(self) -> bool:
        """True when an access line would be written anywhere (site or framework loggers)."""
        if super().wants_access():
            return True
        log: logging.Logger | None = site_log.access_log
        while log is not None:
            if any(not isinstance(h, SiteHandlers) for h in log.handlers):
                return log.isEnabledFor(logging.INFO)
            log = log.parent if log.propagate else None
        return False


def install(site_logs: _SiteLogManager) -> None:
    """Make ``site_logs`` (the site's LogManager) a SiteLog and route the framework's site
    loggers to its handlers (once)."""
    site_logs.__class__ = SiteLog
    for logger, target in ((site_log.error_log, site_logs.error_log),
                           (site_log.access_log, site_logs.access_log)):
        if not any(isinstance(h, SiteHandlers) for h in logger.handlers):
            logger.addHandler(SiteHandlers(target))
