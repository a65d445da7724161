"""Tutorial 10: make it a modern single-page application with React.js.

The backend of tutorial 9; the page (``tut10.html``) loads React and Babel from their CDNs
and the component from ``public/js/gen.js`` (compiled in the browser: no build step).
"""

import os.path
from typing import Any

import services.web as cherrypy
from services.web.tutorial import tut09
from services.web.tutorial.tut09 import (  # noqa: F401 (the tutorial's names)
    StringGeneratorWebService,
    cleanup_database,
    conf,
    setup_database,
)

HERE = os.path.dirname(os.path.abspath(__file__))


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return open(os.path.join(HERE, 'tut10.html'), 'rb')


def make_app():
    """Return the root with its REST resource attached."""
    webapp: Any = StringGenerator()
    webapp.generator = StringGeneratorWebService()
    return webapp


if __name__ == '__main__':
    cherrypy.engine.subscribe('start', tut09.setup_database)
    cherrypy.engine.subscribe('stop', tut09.cleanup_database)
    cherrypy.quickstart(make_app(), '/', conf)
