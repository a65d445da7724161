"""quickstart in a real process: config file ([global] to the site, the rest to the app),
signal handlers subscribed, the default server serving, SIGTERM ending with 0."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.httpclients import fetch
from tests.processes import python

APP = '''
import services.web as cherrypy

class Root:
    @cherrypy.expose
    def index(self):
        app = cherrypy.request.app
        return f"{app.config['custom']['greeting']} {cherrypy.request.config['demo.x']}"

cherrypy.quickstart(Root(), "/app", "site.conf")
'''

CONF = '''
[global]
server.socket_port = 0
checker.on = False

[/]
demo.x = 42

[custom]
greeting = "hi"
'''


def get(port: int, path: str) -> tuple[int, bytes]:
    status, body, _response = fetch(("127.0.0.1", port), path, timeout=10)
    return status, body


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quickstart_with_a_config_file(spawn: Any, write_script: Any, tmp_path: Path) -> None:
    (tmp_path / "site.conf").write_text(CONF)
    script = write_script("app.py", APP)
    child = spawn(python(str(script)))
    port = int(child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", 30).group(1))
    child.wait_for_output(r"Bus STARTED", 30)
    assert get(port, "/app/") == (200, b"hi 42")
    assert get(port, "/app")[0] == 301
    assert get(port, "/elsewhere")[0] == 404
    assert "Checker" not in child.output  # checker.on = False from [global]
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 0
    assert "Bus EXITED" in child.output
