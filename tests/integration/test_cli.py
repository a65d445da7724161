"""`sitebus` itself: a site of several frameworks on several listeners, errors, control."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.frontends import NGINX, free_port, needs_nginx, nginx_main_config
from tests.integration.sites import get, get_unix, ready_addresses, run_site, tcp_port
from tests.processes import ROOT, child_env, python, wait_until

pytestmark = pytest.mark.timeout(120)

FLASK_APP = '''\
from flask import Flask
app = Flask(__name__)

@app.route("/")
def index():
    return "flask says hello"

@app.route("/item/<int:n>")
def item(n):
    return f"flask item {n}"
'''

BOTTLE_APP = '''\
import bottle
app = bottle.Bottle()

@app.route("/")
def index():
    return "bottle says hello"
'''

DJANGO_SITE = '''\
"""A whole Django project in one module: settings, urls and the WSGI application."""
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite")
SECRET_KEY = "test only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "djsite"
INSTALLED_APPS = []
MIDDLEWARE = []
USE_TZ = True

from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse("django says hello at " + request.path)


urlpatterns = [path("", hello), path("page/", hello)]

from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
'''

WEB_APP = '''\
import services.web as cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return "services.web says hello"


root = Root()
'''


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def run_command(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(python("-m", "sitebus", *args), cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_three_frameworks_and_a_bare_app_on_tcp_unix_tls_and_ipv6(
    spawn: Any, tmp_path: Path
) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("bottle")
    pytest.importorskip("django")
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    (tmp_path / "flask_app.py").write_text(FLASK_APP)
    (tmp_path / "bottle_app.py").write_text(BOTTLE_APP)
    (tmp_path / "djsite.py").write_text(DJANGO_SITE)
    (tmp_path / "webapp.py").write_text(WEB_APP)
    ipv6 = ipv6_available()
    config = f'''[global]
server.socket_port = 0
server.unix.socket_file = "{tmp_path}/site.sock"
server.tls.socket_port = 0
server.tls.ssl_certificate = "{tmp_path}/server.pem"
{'server.v6.socket_host = "::1"' if ipv6 else ''}
{'server.v6.socket_port = 0' if ipv6 else ''}
engine.autoreload.on = False
log.access_file = "access.log"
tree.flask = "/flask", "flask_app:app"
tree.bottle = "/bottle", "bottle_app:app"
tree.django = "/django", "djsite:application"
tree.bare = "/bare", "apps:hello"
tree.web = "/web", "webapp:root"
'''
    child = run_site(spawn, tmp_path, config)
    addresses = ready_addresses(child)
    assert len(addresses) == (4 if ipv6 else 3)
    plain = int(re.search(r"Serving on http://127\.0\.0\.1:(\d+)", child.output).group(1))
    secure = int(re.search(r"Serving on https://127\.0\.0\.1:(\d+)", child.output).group(1))

    expected = {
        "/flask/": b"flask says hello",
        "/flask/item/7": b"flask item 7",
        "/bottle/": b"bottle says hello",
        "/django/page/": b"django says hello at /django/page/",
        "/bare/x/y": b"bare wsgi /bare /x/y",
        "/web/": b"services.web says hello",
    }
    for path, body in expected.items():
        assert get(plain, path)[:2] == (200, body), path
    assert get_unix(str(tmp_path / "site.sock"), "/flask/") == (200, b"flask says hello")
    context = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode())
    with socket.create_connection(("127.0.0.1", secure), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /bottle/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"bottle says hello")
    if ipv6:
        v6 = int(re.search(r"Serving on http://\[::1\]:(\d+)", child.output).group(1))
        assert get(v6, "/bare/", host="::1")[:2] == (200, b"bare wsgi /bare /")
    assert get(plain, "/nothing-here")[0] == 404

    child.send_signal(15)
    assert child.wait() == 0
    access = (tmp_path / "access.log").read_text().splitlines()
    assert len(access) >= len(expected) + 3
    assert any(re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /django/page/ HTTP/1\.1" 200 \d+ '
                            r'"-" "[^"]*" \d+ [0-9a-f]{12}-[0-9a-f]+', line) for line in access)
    assert not (tmp_path / "site.sock").exists()


def test_nothing_mounted_serves_the_default_site(spawn: Any, tmp_path: Path) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n")
    port = tcp_port(ready_addresses(child))
    status, body, headers = get(port, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"sitebus is running" in body and f"127.0.0.1:{port}".encode() in body
    assert b"sitebus run -c site.conf" in body


def test_check_with_no_config_names_the_default_address(tmp_path: Path) -> None:
    result = run_command("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "serving on http://127.0.0.1:8080" in result.stdout


def test_a_port_in_use_exits_69_and_leaves_nothing(spawn: Any, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        child = run_site(spawn, tmp_path, f"[global]\nserver.socket_port = {port}\n"
                                          f"server.unix.socket_file = '{tmp_path}/s.sock'\n",
                         "-p", "site.pid")
        assert child.wait() == 69
    out = child.output
    assert f"sitebus: error: [Errno 98] cannot listen on 127.0.0.1:{port}: the address is " \
           "already in use" in out
    assert "Traceback" not in out  # one clear error, not a stack
    assert not (tmp_path / "site.pid").exists()
    assert not (tmp_path / "site.pid.status").exists()
    assert not (tmp_path / "s.sock").exists()


@pytest.mark.parametrize(
    "config, message",
    [
        ("[global]\nserver.socket_host = localhost\n",
         r"server\.socket_host: expected a Python value, got localhost, which names nothing "
         r"importable; strings need quotes: .* \(.*site\.conf, \[global\], line 2\)"),
        ("[global]\nserver.socket_prot = 80\n",
         r"server\.socket_prot: unknown setting .*\(.*site\.conf, \[global\], line 2\)"),
        ("[global]\n\nserver.socket_port = 'eighty'\n",
         r"server\.socket_port: expected an integer from 0 to 65535, got 'eighty'"),
        ("[global]\nengine.pidfil.on = True\n",
         r"engine\.pidfil: unknown engine plugin \(did you mean 'pidfile'\?\)"),
        ("[global]\nlog.access_file = '/no/such/dir/access.log'\n",
         r"log\.access_file: cannot open '/no/such/dir/access\.log' for appending"),
        ("[global]\ntree.blog = '/blog', 'no_such_module:app'\n",
         r"tree\.blog: cannot import module 'no_such_module': ModuleNotFoundError: No module "
         r"named 'no_such_module'"),
        ("[global]\nenvironment = 'prod'\n",
         r"environment: unknown environment 'prod'; expected one of development, embedded, "
         r"production"),
        ("server.socket_port = 80\n", r"not a valid config file: File contains no section"),
    ],
)
def test_a_bad_config_is_one_clear_error_with_exit_78(
    spawn: Any, tmp_path: Path, config: str, message: str
) -> None:
    child = run_site(spawn, tmp_path, config, "-p", "site.pid")
    code = child.wait()
    out = child.output
    assert code in (78, 73), out
    errors = [line for line in out.splitlines() if line.startswith("sitebus: error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), out
    assert "Bus STARTING" not in out  # nothing was started
    assert not (tmp_path / "site.pid").exists()


def test_check_exits_78_for_a_bad_config_and_0_for_a_good_one(tmp_path: Path) -> None:
    (tmp_path / "apps.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "good.conf").write_text("[global]\ntree.a = '/a', 'apps:app'\n"
                                        "server.socket_port = 8123\n")
    (tmp_path / "bad.conf").write_text("[global]\nserver.thread_pool = 0\n")
    good = run_command("check", "-c", "good.conf", cwd=tmp_path)
    assert good.returncode == 0 and "apps mounted at '/a'" in good.stdout
    assert "http://127.0.0.1:8123" in good.stdout
    bad = run_command("check", "-c", "bad.conf", cwd=tmp_path)
    assert bad.returncode == 78
    assert "server.thread_pool: expected a positive integer, got 0" in bad.stderr
    missing = run_command("check", "-i", "no_such_module", cwd=tmp_path)
    assert missing.returncode == 78
    assert "cannot import 'no_such_module'" in missing.stderr


@pytest.mark.parametrize("args", [["run", "--no-such-flag"], ["run", "-f", "-s"], ["frobnicate"]])
def test_usage_errors_exit_64(tmp_path: Path, args: list[str]) -> None:
    result = run_command(*args, cwd=tmp_path)
    assert result.returncode == 64
    assert "usage: sitebus" in result.stderr


def test_help_everywhere(tmp_path: Path) -> None:
    for command in ([], ["run"], ["check"], ["stop"], ["restart"], ["reload"], ["status"]):
        result = run_command(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "usage: sitebus" in result.stdout, command


def test_control_commands_against_a_running_site(spawn: Any, tmp_path: Path) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      "log.access_file = 'access.log'\n"
                                      "tree.bare = '/bare', 'apps:hello'\n", "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    assert (tmp_path / "site.pid").read_text().strip() == str(child.pid)

    status = run_command("status", "-p", "site.pid", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "state:     STARTED" in status.stdout and f"pid:       {child.pid}" in status.stdout
    assert f"http://127.0.0.1:{port}" in status.stdout
    info = json.loads(run_command("status", "-p", "site.pid", "--json", cwd=tmp_path).stdout)
    assert info["pid"] == child.pid and info["state"] == "STARTED"
    assert f"127.0.0.1:{port}" in info["listeners"] and info["threads"] >= 2
    assert info["rss"] > 1_000_000 and info["uptime"] >= 0

    get(port, "/bare/")
    (tmp_path / "access.log").rename(tmp_path / "access.log.1")
    reload = run_command("reload", "-p", "site.pid", cwd=tmp_path)
    assert reload.returncode == 0, reload.stderr
    get(port, "/bare/after-reload")
    # The access line is written once the response is sent, so it may follow the answer.
    log = tmp_path / "access.log"
    wait_until(lambda: log.exists() and "after-reload" in log.read_text(), 10,
               "the access line in the reopened log")  # reopened on graceful
    assert "after-reload" not in (tmp_path / "access.log.1").read_text()

    restart = run_command("restart", "-p", "site.pid", cwd=tmp_path)
    assert restart.returncode == 0, restart.stderr
    assert get(port, "/bare/")[0] == 200  # the same socket, served by the new image
    info = json.loads(run_command("status", "-p", "site.pid", "--json", cwd=tmp_path).stdout)
    assert info["pid"] == child.pid and info["restarts"] == 1 and info["reloads"] == 1

    stop = run_command("stop", "-p", "site.pid", cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert child.wait() == 0
    assert not (tmp_path / "site.pid").exists()
    gone = run_command("status", "-p", "site.pid", cwd=tmp_path)
    assert gone.returncode == 3 and "not running" in gone.stderr


def test_control_commands_find_the_pid_file_through_the_config(
    spawn: Any, tmp_path: Path
) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      f"engine.pidfile.pidfile = '{tmp_path}/x.pid'\n"
                                      "engine.pidfile.on = True\n")
    ready_addresses(child)
    stop = run_command("stop", "-c", "site.conf", cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert child.wait() == 0
    nowhere = run_command("stop", cwd=tmp_path)
    assert nowhere.returncode == 64 and "give its PID file with -p FILE" in nowhere.stderr


def test_python_dash_m_and_the_console_script_are_the_same_command() -> None:
    script = Path(sys.executable).with_name("sitebus")
    if not script.exists():
        pytest.skip("the sitebus console script is not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("sitebus ")


@pytest.mark.skipif(shutil.which("cgi-fcgi") is None, reason="needs cgi-fcgi (libfcgi-bin)")
def test_run_dash_f_serves_fastcgi_to_a_real_client(spawn: Any, tmp_path: Path) -> None:
    pytest.importorskip("flup")
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "tree.bare = '/bare', 'apps:hello'\n", "-f")
    port = int(child.wait_for_output(r"Serving on fcgi://127\.0\.0\.1:(\d+)").group(1))
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/bare/x",
               "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    client = spawn(["cgi-fcgi", "-bind", "-connect", f"127.0.0.1:{port}"], env=environ,
                   notify=False, name="cgi-fcgi")
    assert client.wait() == 0
    assert "Status: 200 OK" in client.output
    assert client.output.endswith("bare wsgi /bare /x")
    child.send_signal(15)
    assert child.wait() == 0


# nginx's scgi_params and fastcgi_params as Debian ships them (less the comments).
NGINX_PARAMS = {
    "scgi": """\
scgi_param REQUEST_METHOD $request_method;
scgi_param REQUEST_URI $request_uri;
scgi_param QUERY_STRING $query_string;
scgi_param CONTENT_TYPE $content_type;
scgi_param DOCUMENT_URI $document_uri;
scgi_param SCGI 1;
scgi_param SERVER_PROTOCOL $server_protocol;
scgi_param REQUEST_SCHEME $scheme;
scgi_param REMOTE_ADDR $remote_addr;
scgi_param REMOTE_PORT $remote_port;
scgi_param SERVER_PORT $server_port;
scgi_param SERVER_NAME $server_name;
scgi_param HTTP_HOST $host;
""",
    "fastcgi": """\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param REQUEST_SCHEME $scheme;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param REMOTE_PORT $remote_port;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
fastcgi_param HTTP_HOST $host;
fastcgi_param SCRIPT_NAME "";
""",  # the last line is README's advice: the stock SCRIPT_NAME is the whole path
}


@needs_nginx
@pytest.mark.parametrize(("flag", "protocol"), [("-s", "scgi"), ("-f", "fastcgi")])
def test_run_behind_nginx_over_scgi_and_fastcgi(spawn: Any, tmp_path: Path, flag: str,
                                                protocol: str) -> None:
    """``sitebus run -s`` or ``-f`` on a UNIX socket, behind a real nginx."""
    pytest.importorskip("flup")
    sock = tmp_path / "site.sock"
    child = run_site(spawn, tmp_path, f"[global]\nserver.socket_file = {str(sock)!r}\n"
                                      "engine.autoreload.on = False\n"
                                      "tree.bare = '/bare', 'apps:hello'\n", flag)
    ready_addresses(child)
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    port = free_port()
    site = workdir / "site.conf"
    site.write_text(f"server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
                    + "".join(f"        {line}\n" for line in NGINX_PARAMS[protocol].splitlines())
                    + f"        {protocol}_pass unix:{sock};\n    }}\n}}\n")
    main = workdir / "nginx.conf"
    main.write_text(nginx_main_config(workdir, site))
    nginx = spawn([NGINX, "-p", str(workdir), "-c", str(main), "-e", str(workdir / "error.log"),
                   "-g", "daemon off;"], name="nginx", notify=False)
    nginx.wait_for_port(port)

    status, body, _headers = get(port, "/bare/x%C3%A9?q=1")
    # PATH_INFO decoded as WSGI says (the UTF-8 bytes as latin-1 characters), as over HTTP;
    # the app writes its body back as UTF-8.
    path_info = "/" + "x\u00e9".encode().decode("latin-1")
    assert (status, body) == (200, ("bare wsgi /bare " + path_info).encode())
    assert get(port, "/elsewhere")[0] == 404  # the site's tree answers, through nginx

    nginx.send_signal(15)
    assert nginx.wait() == 0
    child.send_signal(15)
    assert child.wait() == 0
    assert not sock.exists()


def test_run_dash_d_returns_once_started_and_reports_a_failed_start(
    tmp_path: Path,
) -> None:
    (tmp_path / "apps.py").write_text("def hello(environ, start_response):\n"
                                      "    start_response('200 OK', [])\n"
                                      "    return [b'daemon says hello']\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "site.conf").write_text(f"[global]\nserver.socket_port = {port}\n"
                                        "engine.autoreload.on = False\n"
                                        "tree.bare = '', 'apps:hello'\n")
    try:
        started = run_command("run", "-d", "-c", "site.conf", "-p", "site.pid", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        pid = int((tmp_path / "site.pid").read_text())
        assert get(port, "/")[1] == b"daemon says hello"  # serving when the command returned

        # A second daemon on the same port must fail loudly, not exit 0 as CherryPy's does.
        second = run_command("run", "-d", "-c", "site.conf", "-p", "other.pid", cwd=tmp_path)
        assert second.returncode == 69
        assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" \
            in second.stderr
        assert not (tmp_path / "other.pid").exists()

        stopped = run_command("stop", "-p", "site.pid", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert not (tmp_path / "site.pid").exists()
    finally:
        if (tmp_path / "site.pid").exists():
            os.kill(int((tmp_path / "site.pid").read_text()), 9)
    import psutil

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_virtual_hosts_from_the_config(spawn: Any, tmp_path: Path) -> None:
    (tmp_path / "hosts.py").write_text(
        "def make(name):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [name.encode() + b' ' + environ['PATH_INFO'].encode()]\n"
        "    return app\n"
        "shop = make('shop')\nblog = make('blog')\n")
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "tree.shop = '', 'hosts:shop', 'shop.example.com'\n"
                                      "tree.blog = '', 'hosts:blog'\n")
    port = tcp_port(ready_addresses(child))
    assert get(port, "/x", headers={"Host": "shop.example.com"})[1] == b"shop /x"
    assert get(port, "/x", headers={"Host": "other.example.com"})[1] == b"blog /x"
