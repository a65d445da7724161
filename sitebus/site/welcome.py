"""The default site: what ``sitebus run`` serves when no app is mounted.

One page that says what is answering and how to configure a real site, so a person who just
installed sitebus sees it work and knows the next step.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from sitebus import __version__

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>sitebus {version}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44em; margin: 3em auto; padding: 0 1em;
       color: #222; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; }}
code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head>
<body>
<h1>sitebus is running</h1>
<p>This is sitebus {version}'s default site: no application is mounted yet.
It is served on {serving}.</p>
<h2>Serve your own site</h2>
<p>Write a config file that mounts your WSGI applications (Flask, Django, Bottle, or any WSGI
callable) and apps built with <code>services.web</code>, then run
<code>sitebus run -c site.conf</code>:</p>
<pre>[global]
server.socket_host = "127.0.0.1"
server.socket_port = 8080
log.access_file = "access.log"
tree.blog = "/blog", "myblog.wsgi:application"
tree.api = "/api", "myapi:app"</pre>
<p>Check a config without starting anything: <code>sitebus check -c site.conf</code>.
Control a running site through its PID file: <code>sitebus status -p site.pid</code>,
<code>reload</code>, <code>restart</code>, <code>stop</code>. <code>sitebus --help</code> tells
the rest.</p>
</body></html>
"""


def welcome_app(site: Any) -> Callable[..., Iterable[bytes]]:
    """Return the default site's WSGI app, which names the addresses ``site`` serves on."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("", "/"):
            body = b"Not Found\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                              ("Content-Length", str(len(body)))])
            return [body]
        serving = ", ".join(html.escape(d) for d in site.descriptions()) or "no listener"
        body = PAGE.format(version=__version__, serving=serving).encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app
