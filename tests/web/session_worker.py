"""A worker process for the cross-process session tests: the counting app with FileSession.

``python -m tests.web.session_worker STORAGE_PATH`` serves on 127.0.0.1 and a free port and
logs ``Serving on http://127.0.0.1:PORT``.
"""

import sys

import services.web as cherrypy
from services.web.lib.sessions import FileSession
from sitebus.site import container as site
from tests.web.sessions_helpers import Counter

if __name__ == "__main__":
    site.config.update({"server.socket_port": 0, "server.thread_pool": 8,
                        "engine.autoreload.on": False, "log.access_file": ""})
    cherrypy.quickstart(Counter(), "", {"/": {
        "tools.sessions.on": True, "tools.sessions.storage_class": FileSession,
        "tools.sessions.storage_path": sys.argv[1], "tools.sessions.lock_timeout": 60}})
