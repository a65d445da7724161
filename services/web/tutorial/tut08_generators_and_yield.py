"""Package tutorial 8: a handler may yield its body piece by piece."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

USERS = ("Remi", "Carlos", "Hendrik", "Lorenzo Lamas")


class GeneratorDemo:
    """``/`` answers a generator: its pieces are the page, sent as they come."""

    @cherrypy.expose
    def index(self):
        """Return the page as a generator of its parts."""
        return page_parts(USERS)


def page_parts(users):
    """Yield a heading, one line per user, and the end of the page."""
    yield "<html><body><h2>Generators rule!</h2><h3>List of users:</h3>"
    for user in users:
        yield f"{user}<br/>"
    yield "</body></html>"


if __name__ == "__main__":
    cherrypy.quickstart(GeneratorDemo(), config=tutconf)
