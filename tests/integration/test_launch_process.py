"""`sitebus run` with apps of every kind, alone and together, and the one-line command.

Flask, Django, Bottle, Falcon, Pyramid, a bare callable and two services.web apps, each with
its own app config, from one config file; each framework alone; apps that cannot be served
(an import that raises, an ASGI app with a virtual host) end `run` (one process and workers)
and `check` with one line and exit 78. Then `sitebus run module:attr -b ...`, SITEBUS_*
variables, --access-log, --chdir, and explicit keys over an environment's defaults.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.frontends import free_port
from tests.integration.sites import get, get_unix, run_site
from tests.processes import child_env, python

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

FRAMEWORKS = '''\
"""One hello app per framework, and two services.web roots."""
import os

import services.web as web


def bare(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bare"]


def flask_app():
    import flask
    app = flask.Flask(__name__)
    app.add_url_rule("/", "index", lambda: "flask")
    return app


def bottle_app():
    import bottle
    app = bottle.Bottle()
    app.route("/")(lambda: "bottle")
    return app


def falcon_app():
    import falcon

    class Hello:
        def on_get(self, req, resp):
            resp.text = "falcon"

    app = falcon.App()
    app.add_route("/", Hello())
    return app


def pyramid_app():
    from pyramid.config import Configurator
    from pyramid.response import Response

    with Configurator() as config:
        config.add_route("hello", "/")
        config.add_view(lambda request: Response("pyramid"), route_name="hello")
        return config.make_wsgi_app()


def django_app():
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                       SECRET_KEY="test only", MIDDLEWARE=[])
    django.setup()
    global urlpatterns
    urlpatterns = [path("", lambda request: HttpResponse("django"))]
    from django.core.wsgi import get_wsgi_application
    return get_wsgi_application()


class Web:
    def __init__(self, name):
        self.name = name

    @web.expose
    def index(self):
        return f"{self.name} {web.request.config.get('demo.greeting')}"


one = Web("one")
two = Web("two")


async def asgi(scope, receive, send):
    pass


KINDS = {"bare": lambda: bare, "flask": flask_app, "bottle": bottle_app, "falcon": falcon_app,
         "pyramid": pyramid_app, "django": django_app}
for _name in os.environ.get("FRAMEWORKS", "").split():
    globals()[_name] = KINDS[_name]()
'''

ALL = ("bare", "flask", "bottle", "falcon", "pyramid", "django")


def write_apps(tmp_path: Path) -> None:
    (tmp_path / "fw.py").write_text(FRAMEWORKS)
    (tmp_path / "one.conf").write_text("[/]\ndemo.greeting = 'from one.conf'\n")
    (tmp_path / "two.conf").write_text("[/]\ndemo.greeting = 'from two.conf'\n")


def serving_port(child: Any) -> int:
    found = child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", 60)
    return int(found.group(1))


def run_command(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(python("-m", "sitebus", *args), cwd=tmp_path, env=child_env(env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_every_framework_and_two_services_web_apps_in_one_site(spawn: Any,
                                                               tmp_path: Path) -> None:
    for module in ("flask", "bottle", "falcon", "pyramid", "django"):
        pytest.importorskip(module)
    write_apps(tmp_path)
    entries = "\n".join(f'tree.{name} = "/{name}", "fw:{name}"' for name in ALL)
    config = f'''[global]
server.socket_port = 0
engine.autoreload.on = False
{entries}
tree.one = {{"path": "/one", "app": "fw:one", "config": "one.conf"}}
tree.two = {{"path": "/two", "app": "fw:two", "config": "two.conf"}}
'''
    child = run_site(spawn, tmp_path, config, env={"FRAMEWORKS": " ".join(ALL)}, name="all")
    port = serving_port(child)
    for name in ALL:
        assert get(port, f"/{name}/")[:2] == (200, name.encode()), name
    assert get(port, "/one/")[:2] == (200, b"one from one.conf")
    assert get(port, "/two/")[:2] == (200, b"two from two.conf")


@pytest.mark.parametrize("name", ALL)
def test_each_framework_alone(spawn: Any, tmp_path: Path, name: str) -> None:
    pytest.importorskip({"bare": "os"}.get(name, name))
    write_apps(tmp_path)
    child = run_site(spawn, tmp_path, f'[global]\nserver.socket_port = 0\n'
                                      f'engine.autoreload.on = False\n'
                                      f'tree.{name} = "/{name}", "fw:{name}"\n',
                     env={"FRAMEWORKS": name}, name=name)
    assert get(serving_port(child), f"/{name}/")[:2] == (200, name.encode())


def test_the_sites_app_sections_go_to_its_one_services_web_app_beside_bottle(
    spawn: Any, tmp_path: Path,
) -> None:
    pytest.importorskip("bottle")
    write_apps(tmp_path)
    config = '''[global]
server.socket_port = 0
engine.autoreload.on = False
tree.bottle = "/bottle", "fw:bottle"
tree.bare = "/bare", "fw:bare"
tree.one = "/one", "fw:one"

[/]
demo.greeting = "from site.conf"
tools.gzip.on = True
'''
    child = run_site(spawn, tmp_path, config, env={"FRAMEWORKS": "bottle bare"})
    port = serving_port(child)
    status, body, headers = get(port, "/one/", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert get(port, "/one/")[1] == b"one from site.conf"
    assert get(port, "/bottle/")[:2] == (200, b"bottle")


BROKEN = {
    "raises": ("tree.x = '/x', 'explodes:app'",
               r"tree\.x: cannot import module 'explodes': RuntimeError: boom at import"),
    "asgi-config": ("tree.x = {'path': '/x', 'app': 'fw:asgi', 'config': 'app.conf'}",
                    r"tree\.x: 'fw:asgi' is an ASGI app .* takes no services\.web config"),
    "not-callable": ("tree.x = '/x', 'fw:KINDS'",
                     r"tree\.x: 'fw:KINDS' \(builtins\.dict\) is not callable"),
    "orphan-section": ("tree.x = '/x', 'fw:bare'\n[/static]\ntools.staticdir.on = True",
                       r"app config section, but no services\.web app is mounted to take it "
                       r".*site\.conf, \[/static\]\)"),
}


@pytest.mark.parametrize("how", [("run",), ("run", "-w", "2"), ("check",)],
                         ids=["run", "run-workers", "check"])
@pytest.mark.parametrize("broken", list(BROKEN))
def test_an_app_that_cannot_serve_is_one_line_and_exit_78(tmp_path: Path, how: tuple[str, ...],
                                                          broken: str) -> None:
    write_apps(tmp_path)
    (tmp_path / "explodes.py").write_text("raise RuntimeError('boom at import')\n")
    entry, message = BROKEN[broken]
    (tmp_path / "site.conf").write_text(f"[global]\nserver.socket_port = 0\n"
                                        f"engine.autoreload.on = False\n{entry}\n")
    done = run_command(tmp_path, *how, "-c", "site.conf")
    errors = [line for line in done.stderr.splitlines() if line.startswith("sitebus: error:")]
    assert done.returncode == 78, done.stderr
    assert len(errors) == 1 and re.search(message, errors[0]), done.stderr
    assert "Traceback" not in done.stderr


def test_the_one_liner_with_binds_and_an_access_log_on_stdout(spawn: Any,
                                                              tmp_path: Path) -> None:
    pytest.importorskip("flask")
    write_apps(tmp_path)
    port = free_port()
    sock = tmp_path / "site.sock"
    child = spawn(python("-m", "sitebus", "run", "fw:bare", "/f=fw:flask", "-b",
                         f"127.0.0.1:{port}", "-b", f"unix:{sock}", "--access-log", "-",
                         "--no-reload"), env={"FRAMEWORKS": "flask"}, notify=False)
    child.wait_for_port(port)
    assert get(port, "/")[:2] == (200, b"bare")
    assert get(port, "/f/")[:2] == (200, b"flask")
    assert get_unix(str(sock), "/f/") == (200, b"flask")
    child.wait_for_output(r'"GET /f/ HTTP/1\.1" 200 5')
    assert len(re.findall(r'"GET / HTTP/1\.1" 200', child.output)) == 1  # once, not twice
    assert "Autoreloader" not in child.output  # --no-reload


def test_settings_from_the_environment_and_the_command_line_over_the_file(
    spawn: Any, tmp_path: Path,
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_apps(app_dir)
    port, file_port = free_port(), free_port()
    (tmp_path / "site.conf").write_text(
        f"[global]\nserver.socket_port = {file_port}\nlog.screen = True\n"
        "engine.autoreload.on = True\n")
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf", "-e", "production"),
                  env={"SITEBUS_BIND": f"127.0.0.1:{port}", "SITEBUS_APP": "fw:bare",
                       "SITEBUS_CHDIR": str(app_dir)}, notify=False)
    child.wait_for_port(port)
    assert get(port, "/")[:2] == (200, b"bare")
    # log.screen = True and engine.autoreload.on = True, set in the file, win over
    # production's defaults: the log is on screen and the reloader runs.
    assert "Bus STARTED" in child.output and "Autoreloader" in child.output
    with pytest.raises(ConnectionRefusedError):
        get(file_port, "/")


@pytest.mark.parametrize(("args", "message"), [
    (("run", "-b", "127.0.0.1"), r"-b/--bind: expected HOST:PORT, :PORT, \[IPv6\]:PORT or "
                                 r"unix:PATH, got '127\.0\.0\.1'"),
    (("check", "justaname"), r"APP: expected module:attr or /PREFIX=module:attr"),
    (("check", "--chdir", "/no/such/dir"), r"--chdir: cannot change to '/no/such/dir'"),
])
def test_bad_one_liner_input_is_one_line_and_exit_64(tmp_path: Path, args: tuple[str, ...],
                                                     message: str) -> None:
    done = run_command(tmp_path, *args)
    assert done.returncode == 64, done.stderr
    assert re.fullmatch(f"sitebus: error: {message}.*\n", done.stderr), done.stderr


def test_an_unquoted_string_in_a_config_says_strings_need_quotes(tmp_path: Path) -> None:
    (tmp_path / "site.conf").write_text("[global]\nserver.socket_host = localhost\n")
    done = run_command(tmp_path, "check", "-c", "site.conf")
    assert done.returncode == 78
    assert done.stderr == ('sitebus: error: server.socket_host: expected a Python value, got '
                           'localhost, which names nothing importable; strings need quotes: '
                           f'server.socket_host = "localhost" ({tmp_path}/site.conf, [global], '
                           'line 2)\n')
