"""Package tutorial 10: raising HTTPError, custom error pages, and tracebacks on or off."""

import os

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

HERE = os.path.dirname(os.path.abspath(__file__))

INDEX = """
<html><body>
    <p>Toggle tracebacks <a href="toggleTracebacks">{switch}</a></p>
    <p><a href="/doesNotExist">Click me; I'm a broken link!</a></p>
    <p><a href="/error?code=403">Use a custom error page from a file.</a></p>
    <p>These errors are explicitly raised by the application:</p>
    <ul>
        <li><a href="/error?code=400">400</a></li>
        <li><a href="/error?code=401">401</a></li>
        <li><a href="/error?code=402">402</a></li>
        <li><a href="/error?code=500">500</a></li>
    </ul>
    <p><a href="/messageArg">You can also set the response body
    when you raise an error.</a></p>
</body></html>
"""


class HTTPErrorDemo:
    """Pages that end in errors of several kinds; 403 uses ``custom_error.html``."""

    _cp_config = {"error_page.403": os.path.join(HERE, "custom_error.html")}

    @cherrypy.expose
    def index(self):
        """Link each kind of error; say whether tracebacks are shown."""
        shown = cherrypy.request.show_tracebacks
        return INDEX.format(switch="off" if shown else "on")

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
