"""Tutorial 8: make it smoother with Ajax.

A jQuery page (``tut08.html``) talks to a REST resource at /generator (POST makes a
string, PUT replaces it, DELETE forgets it, GET returns it as text/plain), kept in the
session; the page's stylesheet comes from ``public``.
"""

import os.path
import random
import string
from typing import Any

import services.web as cherrypy

HERE = os.path.dirname(os.path.abspath(__file__))


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return open(os.path.join(HERE, 'tut08.html'), 'rb')


@cherrypy.expose
class StringGeneratorWebService:

    @cherrypy.tools.accept(media='text/plain')
    def GET(self):
        return cherrypy.session['mystring']

    def POST(self, length=8):
        some_string = ''.join(random.sample(string.hexdigits, int(length)))
        cherrypy.session['mystring'] = some_string
        return some_string

    def PUT(self, another_string):
        cherrypy.session['mystring'] = another_string

    def DELETE(self):
        cherrypy.session.pop('mystring', None)


conf = {
    '/': {
        'tools.sessions.on': True,
        'tools.staticdir.root': HERE
    },
    '/generator': {
        'request.dispatch': cherrypy.dispatch.MethodDispatcher(),
        'tools.response_headers.on': True,
        'tools.response_headers.headers': [('Content-Type', 'text/plain')],
    },
    '/static': {
        'tools.staticdir.on': True,
        'tools.staticdir.dir': './public'
    }
}


def make_app():
    """Return the root with its REST resource attached."""
    webapp: Any = StringGenerator()
    webapp.generator = StringGeneratorWebService()
    return webapp


if __name__ == '__main__':
    cherrypy.quickstart(make_app(), '/', conf)
