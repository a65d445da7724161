"""Sites that drop privileges to nobody, for the PID file and log tests (these need root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import sites
from tests.processes import python

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

TAMPER_APP = '''\
"""An app that, running as nobody, tries every way to change the site's PID file."""
import json
import logging
import os

PIDFILE = os.environ["TAMPER_PIDFILE"]
VICTIM = os.environ["TAMPER_VICTIM"]


def attempt(action):
    try:
        action()
    except OSError as error:
        return error.errno
    return "done"


def tamper():
    target = os.stat(PIDFILE)
    found = {"uid": os.getuid(), "modes": [], "fd_writes": [], "fd_reopens": []}
    for name in os.listdir("/proc/self/fd"):
        try:
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
            continue
        with open(f"/proc/self/fdinfo/{name}") as fdinfo:
            flags = int(fdinfo.read().split("flags:")[1].split()[0], 8)
        found["modes"].append(flags & os.O_ACCMODE)
        fd = int(name)
        found["fd_writes"].append(attempt(lambda: os.pwrite(fd, VICTIM.encode() + b"\\n", 0)))
        found["fd_reopens"].append(
            attempt(lambda: os.close(os.open(f"/proc/self/fd/{fd}", os.O_WRONLY))))
    found["path_write"] = attempt(lambda: open(PIDFILE, "r+").close())
    forged = PIDFILE + ".forged"

    def replace():
        with open(forged, "w") as handle:
            handle.write(VICTIM + "\\n")
        os.rename(forged, PIDFILE)

    found["replace"] = attempt(replace)
    return found


def app(environ, start_response):
    if environ["PATH_INFO"] == "/tamper":
        answer = tamper()
    elif environ["PATH_INFO"] == "/log":
        logging.getLogger("sitebus").error("a record from the app, as uid %d", os.getuid())
        answer = {"logged": True}
    else:
        answer = {"uid": os.getuid()}
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def sitebus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return sites.sitebus(*args, cwd=cwd, timeout=60)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(name="shared_dir")
def shared_dir_fixture() -> Iterator[Path]:
    """A directory every user can read (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sitebus-pidowner-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("there is no user 'nobody' on this system")


def dropped_site(spawn: Any, workdir: Path, pidfile: Path, port: int,
                 env: dict[str, str] | None = None, config: str = "") -> Any:
    """``sitebus run`` as root, dropping to nobody, serving the tamper app on ``port``."""
    (workdir / "tamper_app.py").write_text(TAMPER_APP)
    config = ("[global]\n" + config +
              f"server.socket_port = {port}\n"
              "engine.autoreload.on = False\n"
              "engine.drop_privileges.on = True\n"
              "engine.drop_privileges.uid = 'nobody'\n"
              "tree.app = '', 'tamper_app:app'\n")
    (workdir / "site.conf").write_text(config)
    child = spawn(python("-m", "sitebus", "run", "-c", "site.conf", "-p", str(pidfile)),
                  name="site", cwd=workdir, notify=False,
                  env={"TAMPER_PIDFILE": str(pidfile), "TAMPER_VICTIM": "1", **(env or {})})
    child.wait_for_port(port)
    child.wait_for_output(r"Bus STARTED")
    return child
