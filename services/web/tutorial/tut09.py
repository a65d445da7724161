"""Tutorial 9: data is all my life.

The same page as tutorial 8, with the strings in SQLite (``my.db`` in the current
directory), keyed by the session id. The table is made when the engine starts and dropped
when it stops. The session stores a dummy timestamp, or it would be discarded on every
request (an id that was never saved is replaced). A connection per call, as sqlite
connections cannot be shared between the server's threads.
"""

import os.path
import random
import sqlite3
import string
import time
from typing import Any

import services.web as cherrypy

HERE = os.path.dirname(os.path.abspath(__file__))
DB_STRING = "my.db"


class StringGenerator:
    @cherrypy.expose
    def index(self):
        return open(os.path.join(HERE, 'tut08.html'), 'rb')


@cherrypy.expose
class StringGeneratorWebService:

    @cherrypy.tools.accept(media='text/plain')
    def GET(self):
        with sqlite3.connect(DB_STRING) as c:
            cherrypy.session['ts'] = time.time()
            r = c.execute("SELECT value FROM user_string WHERE session_id=?",
                          [cherrypy.session.id])
            return r.fetchone()

    def POST(self, length=8):
        some_string = ''.join(random.sample(string.hexdigits, int(length)))
        with sqlite3.connect(DB_STRING) as c:
            cherrypy.session['ts'] = time.time()
            c.execute("INSERT INTO user_string VALUES (?, ?)",
                      [cherrypy.session.id, some_string])
        return some_string

    def PUT(self, another_string):
        with sqlite3.connect(DB_STRING) as c:
            cherrypy.session['ts'] = time.time()
            c.execute("UPDATE user_string SET value=? WHERE session_id=?",
                      [another_string, cherrypy.session.id])

    def DELETE(self):
        cherrypy.session.pop('ts', None)
        with sqlite3.connect(DB_STRING) as c:
            c.execute("DELETE FROM user_string WHERE session_id=?",
                      [cherrypy.session.id])


def setup_database():
    """Create the `user_string` table in the database on server startup."""
    with sqlite3.connect(DB_STRING) as con:
        con.execute("CREATE TABLE user_string (session_id, value)")


def cleanup_database():
    """Destroy the `user_string` table from the database on server shutdown."""
    with sqlite3.connect(DB_STRING) as con:
        con.execute("DROP TABLE user_string")


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
    cherrypy.engine.subscribe('start', setup_database)
    cherrypy.engine.subscribe('stop', cleanup_database)
    cherrypy.quickstart(make_app(), '/', conf)
