"""Profiling with cProfile: one handler, every request of an app, and pages to browse results.

Profile one page handler::

    class Root:
        p = profiler.Profiler("/var/tmp/profiles")

        @services.web.expose
        def index(self):
            return self.p.run(self._index)

Profile every request of an application with the WSGI middleware, in its ``/`` config::

    wsgi.pipeline = [("profile", services.web.lib.profiler.make_app)]
    wsgi.profile.path = "/var/tmp/profiles"
    wsgi.profile.aggregate = False      # True: one file accumulating every request

Each run is dumped to ``<path>/cp_NNNN.prof`` (``ProfileAggregator``: ``cp_NNNN.prof``
rewritten with the running total). Browse them by mounting a Profiler: its ``index`` lists
the files, ``report?filename=...`` shows pstats' table (``sortby``: 'cumulative',
'tottime', 'calls'...). Nothing is profiled or mounted unless asked: mount it where you like,
for instance in site config ``tree.profiler = "/profiler",
services.web.lib.profiler.Profiler("/var/tmp/profiles")``. ``serve(path, port)`` serves
them on their own. The default path is ``<tmp>/services.web-profile-<uid>``.
"""

from __future__ import annotations

import cProfile
import html
import io
import os
import pstats
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

from services.web._cperror import NotFound
from services.web._helper import expose
from services.web._serving import serving

__all__ = ["ProfileAggregator", "Profiler", "make_app", "new_func_strip_path", "serve"]

_filename = re.compile(r"^cp_\d{4,}\.prof$")


def default_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"services.web-profile-{os.getuid()}")


def new_func_strip_path(func_name: tuple[str, int, str]) -> tuple[str, int, str]:
    """Make profiler output more readable by adding ``__init__`` modules' parents.

    (Reports show full paths, so they need no stripping; this is kept for callers.)
    """
    filename, line, name = func_name
    if filename.endswith("__init__.py"):
        return os.path.basename(filename[:-12]) + filename[-12:], line, name
    return os.path.basename(filename), line, name


class Profiler:
    """Runs functions under cProfile, dumps the results in ``path``, and shows them."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_path()
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self.count = max((int(name[3:-5]) for name in self.statfiles()), default=0)

    def _next_file(self) -> str:
        with self._lock:
            self.count += 1
            return os.path.join(self.path, f"cp_{self.count:04d}.prof")

    def run(self, func: Callable[..., Any], *args: Any, **params: Any) -> Any:
        """Run ``func(*args, **params)`` under the profiler; dump the profile into path."""
        prof = cProfile.Profile()
        result = prof.runcall(func, *args, **params)
        prof.dump_stats(self._next_file())
        return result

    def statfiles(self) -> list[str]:
        """Return the names of the available profiles, oldest first."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return []
        return sorted((n for n in names if _filename.match(n)), key=lambda n: int(n[3:-5]))

    def stats(self, filename: str, sortby: str = "cumulative") -> str:
        """The text ``pstats`` prints for one saved profile."""
        if filename not in self.statfiles():
            raise NotFound()
        out = io.StringIO()
        stats = pstats.Stats(os.path.join(self.path, filename), stream=out)
        try:
            stats.sort_stats(sortby)
        except KeyError:
            raise NotFound(f"Unknown sort key {sortby!r}") from None
        stats.print_stats()
        return out.getvalue()

    @expose
    def index(self) -> str:
        items = "\n".join(
            f'<li><a href="report?filename={html.escape(name, quote=True)}">'
            f"{html.escape(name)}</a></li>" for name in reversed(self.statfiles()))
        return ("<html><head><title>Profiles</title></head><body><h1>Profiles</h1>"
                f"<p>In {html.escape(self.path)}; newest first.</p>"
                f"<ul>{items or '<li>(none yet)</li>'}</ul></body></html>")

    menu = index

    @expose
    def report(self, filename: str, sortby: str = "cumulative") -> str:
        serving.response.headers["Content-Type"] = "text/plain"
        return self.stats(filename, sortby)


class ProfileAggregator(Profiler):
    """A Profiler whose runs accumulate in one profile (rewritten after each run)."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__(path)
        self.profiler = cProfile.Profile()
        self.filename = self._next_file()
        self._run_lock = threading.Lock()

    def run(self, func: Callable[..., Any], *args: Any, **params: Any) -> Any:
        # cProfile measures one thread at a time: runs are serialized.
        with self._run_lock:
            result = self.profiler.runcall(func, *args, **params)
            self.profiler.dump_stats(self.filename)
        return result


class make_app:  # noqa: N801 (the reference's name)
    """WSGI middleware which profiles every request of ``nextapp``."""

    def __init__(self, nextapp: Callable[..., Iterable[bytes]], path: str | None = None,
                 aggregate: bool = False) -> None:
        self.nextapp = nextapp
        self.aggregate = aggregate
        self.profiler = ProfileAggregator(path) if aggregate else Profiler(path)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        def gather() -> list[bytes]:
            result = self.nextapp(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        return self.profiler.run(gather)


def serve(path: str | None = None, port: int = 8080) -> None:
    """Serve the profiles in ``path`` on 127.0.0.1:``port`` until interrupted."""
    import services.web as cherrypy

    cherrypy.config.update({"server.socket_port": int(port), "server.thread_pool": 10,
                            "environment": "production"})
    cherrypy.quickstart(Profiler(path))


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    serve(args[0] if args else None, int(args[1]) if len(args) > 1 else 8080)
