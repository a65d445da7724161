"""Tutorial 5: track my end-user's activity.

The generated string is stored in the session (in memory by default): generate one at
/generate, then /display shows it back to the same browser.
"""

import random
import string

import services.web as cherrypy


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return """<html>
          <head></head>
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
        'tools.sessions.on': True
    }
}

if __name__ == '__main__':
    cherrypy.quickstart(StringGenerator(), '/', conf)
