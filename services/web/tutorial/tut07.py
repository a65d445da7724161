"""Tutorial 7: give us a REST.

One exposed resource whose methods are named after the HTTP verbs, chosen by the
MethodDispatcher; the string lives in the session. GET answers only clients that accept
text/plain (406 otherwise) and, before any POST, fails with 500 (no string in the session).
"""

import random
import string

import services.web as cherrypy


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
        'request.dispatch': cherrypy.dispatch.MethodDispatcher(),
        'tools.sessions.on': True,
        'tools.response_headers.on': True,
        'tools.response_headers.headers': [('Content-Type', 'text/plain')],
    }
}

if __name__ == '__main__':
    cherrypy.quickstart(StringGeneratorWebService(), '/', conf)
