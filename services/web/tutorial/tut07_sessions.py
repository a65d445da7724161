"""Package tutorial 7: a session remembers how often this visitor saw the page."""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf


def visits_message(visits: int) -> str:
    """The page's text for the ``visits``-th view (the reference's words and layout)."""
    said = ("During your current session, you've viewed this",
            f"page {visits} times! Your life is a patio of fun!")
    return "".join("\n" + " " * 12 + line for line in said) + "\n" + " " * 8


class HitCounter:
    """``/`` counts the visits of the current session (tools.sessions on for the class)."""

    _cp_config = {"tools.sessions.on": True}

    @cherrypy.expose
    def index(self):
        """Count this visit and say how many there were."""
        return visits_message(count_visit(cherrypy.session))


def count_visit(session):
    """Add this visit to the session's count; return the count."""
    session["count"] = session.get("count", 0) + 1
    return session["count"]


if __name__ == "__main__":
    cherrypy.quickstart(HitCounter(), config=tutconf)
