"""Package tutorial 1: the smallest application, one exposed ``index`` saying hello."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf


class HelloWorld:
    """The root of the site: ``/`` answers with a greeting."""

    @cherrypy.expose
    def index(self):
        """Answer ``/``."""
        return "Hello world!"


if __name__ == "__main__":
    cherrypy.quickstart(HelloWorld(), config=tutconf)
