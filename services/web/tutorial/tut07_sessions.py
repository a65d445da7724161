"""Package tutorial 7: a session remembers how often this visitor saw the page."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

MESSAGE = """
            During your current session, you've viewed this
            page {} times! Your life is a patio of fun!
        """


class HitCounter:
    """``/`` counts the visits of the current session (tools.sessions on for the class)."""

    _cp_config = {"tools.sessions.on": True}

    @cherrypy.expose
    def index(self):
        """Count this visit and say how many there were."""
        visits = cherrypy.session.get("count", 0) + 1
        cherrypy.session["count"] = visits
        return MESSAGE.format(visits)


if __name__ == "__main__":
    cherrypy.quickstart(HitCounter(), config=tutconf)
