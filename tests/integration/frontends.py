"""Helpers for the cluster tests: sitebus instances behind a real nginx or HAProxy, sharing a
real memcached, and a client that keeps asking.

nginx and HAProxy run contrib's files as written, with only the addresses and paths replaced
(``contrib_nginx``, ``contrib_haproxy``); around them the tests write the little a packaged
server's main config gives (nginx's ``events``/``http``, HAProxy's ``global``), all in the
test's directory, as the current user, on 127.0.0.1 or UNIX sockets. Every process is started
with ``spawn``, so it is reaped whatever happens; readiness is a port or socket that answers.
"""

from __future__ import annotations

import http.client
import os
import pwd
import re
import shutil
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sites import UnixHTTPConnection, ready_addresses, tcp_port
from tests.processes import Child, python, wait_until

CONTRIB = Path(__file__).resolve().parent.parent.parent / "contrib"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                      else None)
MEMCACHED = shutil.which("memcached")

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed "
                                 "(apt-get install nginx)")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed "
                                   "(apt-get install haproxy)")
needs_memcached = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed "
                                     "(apt-get install memcached)")

SERVER_NAME = "www.example.com"

APP = '''\
"""A services.web app that says which process answered, and what it knows of the client."""

import json
import os

import services.web as cherrypy


class Root:
    @cherrypy.expose
    def index(self):
        return str(os.getpid())

    @cherrypy.expose
    def login(self, user):
        cherrypy.session["user"] = user
        return f"{os.getpid()} {user}"

    @cherrypy.expose
    def whoami(self):
        return f"{os.getpid()} {cherrypy.session.get('user')}"

    @cherrypy.expose
    def client(self):
        request = cherrypy.request
        return json.dumps({"pid": os.getpid(), "ip": request.remote.ip, "base": request.base})


root = Root()
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- sitebus instances ---------------------------------------------------------------------------


@dataclass
class Instance:
    """One ``sitebus run`` of the cluster's site, in a directory of its own."""

    child: Child
    workdir: Path
    socket_file: Path | None
    port: int | None = None

    @property
    def upstream(self) -> str:
        """Its address as nginx's upstream (and HAProxy's server line) writes it."""
        if self.socket_file is not None:
            return f"unix:{self.socket_file}"
        return f"127.0.0.1:{self.port}"

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        if self.socket_file is not None:
            return UnixHTTPConnection(str(self.socket_file), timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """Ask this instance directly (not through the front)."""
        connection = self.connection()
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def instance_config(socket_file: Path | None, memcached: str | None = None,
                    extra: str = "") -> str:
    listen = (f"server.socket_file = {str(socket_file)!r}\n" if socket_file is not None
              else "server.socket_port = 0\n")
    app_config = "[/]\ntools.proxy.on = True\n"
    if memcached is not None:
        app_config += ("tools.sessions.on = True\n"
                       "tools.sessions.storage_class = "
                       "services.web.lib.memcachedsession.MemcachedSession\n"
                       f"tools.sessions.servers = [{memcached!r}]\n")
    return ("[global]\n" + listen + "engine.autoreload.on = False\n"
            "engine.health.on = True\n" + extra + "tree.app = '', 'clusterapp:root'\n\n"
            + app_config)


def start_instance(spawn: Any, tmp_path: Path, name: str, unix: bool = False,
                   memcached: str | None = None, extra: str = "",
                   args: tuple[str, ...] = (), wait_ready: bool = True,
                   run: str = "") -> Instance:
    """Start an instance in ``tmp_path/name`` and wait for READY=1 (if ``wait_ready``).

    ``run`` tells apart the log and notify socket of a later instance in the same directory.
    """
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    (workdir / "clusterapp.py").write_text(APP)
    socket_file = workdir / "site.sock" if unix else None
    (workdir / "site.conf").write_text(instance_config(socket_file, memcached, extra))
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf", *args), name=name + run,
                  cwd=workdir)
    instance = Instance(child, workdir, socket_file)
    if wait_ready:
        addresses = ready_addresses(child)
        if not unix:
            instance.port = tcp_port(addresses)
    return instance


# -- memcached -----------------------------------------------------------------------------------


def start_memcached(spawn: Any, tmp_path: Path) -> str:
    """Start a memcached of the test's own on 127.0.0.1 and return its 'host:port'."""
    assert MEMCACHED is not None
    port_file = tmp_path / "memcached.ports"
    argv = [MEMCACHED, "-U", "0", "-m", "16", "-t", "2", "-l", "127.0.0.1", "-p", "-1"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root without it
    child = spawn(argv, name="memcached", notify=False,
                  env={"MEMCACHED_PORT_FILENAME": str(port_file)})

    def reported() -> str | None:
        if child.popen.poll() is not None:
            raise AssertionError(f"memcached exited:\n{child.output}")
        text = port_file.read_text() if port_file.exists() else ""
        return text if "TCP INET:" in text else None

    text = str(wait_until(reported, 30, "memcached's port file"))
    port = int(text.split("TCP INET:")[1].split()[0])
    child.wait_for_port(port)
    return f"127.0.0.1:{port}"


# -- nginx ---------------------------------------------------------------------------------------


@dataclass
class Front:
    """A balancer in front of the instances: its child and where it listens."""

    child: Child
    port: int
    tls_port: int | None = None
    ca: Any = None


def contrib_nginx(upstreams: list[str], port: int, tls_port: int, workdir: Path) -> str:
    """contrib/nginx/sitebus.conf with this test's addresses and paths, nothing else."""
    text = (CONTRIB / "nginx" / "sitebus.conf").read_text()
    servers = re.findall(r"^    server 127\.0\.0\.1:808\d;$", text, re.MULTILINE)
    assert len(servers) == 2, servers
    replaced = "\n".join(f"    server {address};" for address in upstreams)
    text = text.replace("\n".join(servers), replaced)
    for old, new in (("listen 80;", f"listen 127.0.0.1:{port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
                     ("/etc/ssl/certs/www.example.com.pem", str(workdir / "cert.pem")),
                     ("/etc/ssl/private/www.example.com.key", str(workdir / "key.pem")),
                     ("/var/log/nginx", str(workdir)),
                     ("/srv/sitebus", str(workdir))):
        assert old in text, old
        text = text.replace(old, new)
    return text


def nginx_main_config(workdir: Path, include: Path) -> str:
    """What Debian's nginx.conf gives, in the test's directory and as the current user."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return (f"user {user};\n" if os.geteuid() == 0 else "") + f"""\
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    access_log off;
    gzip on;
    include {include};
}}
"""


def start_nginx(spawn: Any, tmp_path: Path, instances: list[Instance]) -> Front:
    """Run nginx (not as a daemon) on contrib's file in front of ``instances``."""
    import trustme

    assert NGINX is not None
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert(SERVER_NAME)
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    port, tls_port = free_port(), free_port()
    site = workdir / "sitebus.conf"
    site.write_text(contrib_nginx([i.upstream for i in instances], port, tls_port, workdir))
    main = workdir / "nginx.conf"
    main.write_text(nginx_main_config(workdir, site))
    child = spawn([NGINX, "-p", str(workdir), "-c", str(main), "-e", str(workdir / "error.log"),
                   "-g", "daemon off;"], name="nginx", notify=False)
    child.wait_for_port(port)
    child.wait_for_port(tls_port)
    return Front(child, port, tls_port, ca)


# -- HAProxy -------------------------------------------------------------------------------------


def contrib_haproxy(upstreams: list[str], port: int) -> str:
    """contrib/haproxy/sitebus.cfg with this test's addresses, nothing else."""
    text = (CONTRIB / "haproxy" / "sitebus.cfg").read_text()
    for n, address in zip((8081, 8082), upstreams, strict=True):
        old = f"server s{n} 127.0.0.1:{n}"
        assert old in text, old
        where = address[len("unix:"):] if address.startswith("unix:") else address
        text = text.replace(old, f"server s{n} {where}")
    assert "    bind :80\n" in text
    return text.replace("    bind :80\n", f"    bind 127.0.0.1:{port}\n")


HAPROXY_GLOBAL = """\
global
    log stderr format raw local0 info

defaults
    log global
    option httplog
"""


def start_haproxy(spawn: Any, tmp_path: Path, instances: list[Instance]) -> Front:
    """Run HAProxy in the foreground on contrib's file in front of ``instances``."""
    assert HAPROXY is not None
    workdir = tmp_path / "haproxy"
    workdir.mkdir()
    port = free_port()
    (workdir / "global.cfg").write_text(HAPROXY_GLOBAL)
    (workdir / "sitebus.cfg").write_text(contrib_haproxy([i.upstream for i in instances], port))
    child = spawn([HAPROXY, "-db", "-f", str(workdir / "global.cfg"),
                   "-f", str(workdir / "sitebus.cfg")], name="haproxy", notify=False)
    child.wait_for_port(port)
    return Front(child, port)


# -- clients -------------------------------------------------------------------------------------


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 30,
        source: str | None = None, tls: ssl.SSLContext | None = None
        ) -> tuple[int, bytes, http.client.HTTPResponse]:
    """GET ``path`` from a front on a connection of its own (from ``source``, over TLS)."""
    address = (source, 0) if source else None
    connection: http.client.HTTPConnection
    if tls is not None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                                 source_address=address, context=tls)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                                source_address=address)
    try:
        connection.request("GET", path, headers={"Host": SERVER_NAME, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read(), response
    finally:
        connection.close()
