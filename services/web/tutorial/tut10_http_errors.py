"""Package tutorial 10: raising HTTPError, custom error pages, and tracebacks on or off."""

import os

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

HERE = os.path.dirname(os.path.abspath(__file__))

RAISED = (400, 401, 402, 500)
"""The statuses the index offers to raise on purpose."""


def index_page(tracebacks_shown: bool) -> str:
    """The index: one link per kind of error, and the switch for tracebacks."""
    raised = "".join(f'<li><a href="/error?code={code}">{code}</a></li>' for code in RAISED)
    links = [
        f'Tracebacks are {"shown" if tracebacks_shown else "hidden"}: '
        f'<a href="toggleTracebacks">turn them {"off" if tracebacks_shown else "on"}</a>',
        '<a href="/doesNotExist">A link to nowhere (404)</a>',
        '<a href="/error?code=403">403, answered with a page of our own</a>',
        f"Raised by the handler itself: <ul>{raised}</ul>",
        '<a href="/messageArg">An error with a message of our own</a>',
    ]
    return "<html><body>" + "".join(f"<p>{link}</p>" for link in links) + "</body></html>"


class HTTPErrorDemo:
    """Pages that end in errors of several kinds; 403 uses ``custom_error.html``."""

    _cp_config = {"error_page.403": os.path.join(HERE, "custom_error.html")}

    @cherrypy.expose
    def index(self):
        """Link each kind of error; say whether tracebacks are shown."""
        return index_page(bool(cherrypy.request.show_tracebacks))

    @cherrypy.expose
    def toggleTracebacks(self):  # noqa: N802 - the tutorial's URL
        """Flip ``request.show_tracebacks`` site-wide and go back to the index."""
        cherrypy.config.update({"request.show_tracebacks":
                                not cherrypy.request.show_tracebacks})
        raise cherrypy.HTTPRedirect("/")

    @cherrypy.expose
    def error(self, code):
        """Fail with the status ``code``."""
        raise cherrypy.HTTPError(status=code)

    @cherrypy.expose
    def messageArg(self):  # noqa: N802 - the tutorial's URL
        """Fail with a message of our own."""
        raise cherrypy.HTTPError(500, message=(
            "If you construct an HTTPError with a 'message' argument, it will be placed "
            "on the error page (underneath the status line by default)."))


if __name__ == "__main__":
    cherrypy.quickstart(HTTPErrorDemo(), config=tutconf)
