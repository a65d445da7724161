"""Tutorial 6: what about my javascripts, CSS and images?

The page links /static/css/style.css, which the staticdir tool serves from the ``public``
directory beside this module (the reference uses the current directory; a packaged
tutorial must find its files wherever it is run from).
"""

import os.path
import random
import string

import services.web as cherrypy

HERE = os.path.dirname(os.path.abspath(__file__))


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return """<html>
          <head>
            <link href="/static/css/style.css" rel="stylesheet">
          </head>
          <body>
            <form method="get" action="generate">
              <input type="text" value="8" name="length" />
              <button type="submit">Give it now!</button>
            </form>
          </body>
        </html>"""

    @cherrypy.expose
    def generate(self, length=8):
        some_string = ''.join(random.sample(string.hexdigits, int(length)))
        cherrypy.session['mystring'] = some_string
        return some_string

    @cherrypy.expose
    def display(self):
        return cherrypy.session['mystring']


conf = {
    '/': {
        'tools.sessions.on': True,
        'tools.staticdir.root': HERE
    },
    '/static': {
        'tools.staticdir.on': True,
        'tools.staticdir.dir': './public'
    }
}

if __name__ == '__main__':
    cherrypy.quickstart(StringGenerator(), '/', conf)
