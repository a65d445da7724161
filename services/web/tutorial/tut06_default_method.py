"""Package tutorial 6: ``default`` answers every path no other method claims.

``/hendrik``, ``/lorenzo`` and ``/remi`` have no methods of their own: ``default`` gets the
path's segment as its argument and looks the user up.
"""

import services.web as cherrypy
from services.web.tutorial._tutconf import TUTCONF as tutconf

USERS = {
    "remi": "Remi Delon, who led CherryPy for years",
    "hendrik": "Hendrik Mans, CherryPy co-developer & crazy German",
    "lorenzo": "Lorenzo Lamas, an actor who also sings",
}


class UsersPage:
    """``/`` lists the users; ``/<user>`` describes one."""

    @cherrypy.expose
    def default(self, user):
        """Describe ``user``, or say that nobody has that name."""
        about = USERS.get(user, "Unknown user. :-(")
        return f'{about} (<a href="./">back</a>)'

    @cherrypy.expose
    def index(self):
        """Link every user."""
        links = "".join(f'<a href="./{name}">{name.title()}</a><br/>' for name in USERS)
        return links + '<a href="./nobody">Nobody</a><br/>'


if __name__ == "__main__":
    cherrypy.quickstart(UsersPage(), config=tutconf)
