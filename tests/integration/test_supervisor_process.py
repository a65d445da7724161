"""A real supervisord runs a site from contrib/supervisor/sitebus.conf, driven with
supervisorctl: start, status, signal HUP (a restart in place that refuses no connection),
restart, stop within stopwaitsecs, and nothing left behind."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.sites import APPS, ClientCrowd, SteadyClient, get
from tests.integration.systemd_helpers import free_port
from tests.processes import Child, python, wait_until

pytest.importorskip("supervisor", reason="supervisor is not installed (pip install supervisor)")

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CONTRIB = Path(__file__).resolve().parent.parent.parent / "contrib" / "supervisor" / "sitebus.conf"
STATUS = re.compile(r"^sitebus\s+(?P<state>[A-Z]+)\s*(?:pid (?P<pid>\d+),)?", re.MULTILINE)


def sitebus_command(tmp_path: Path) -> Path:
    """The installed `sitebus` console script, or the same thing as a two-line script."""
    installed = Path(sys.executable).with_name("sitebus")
    if installed.exists():
        return installed
    script = tmp_path / "bin" / "sitebus"
    script.parent.mkdir(exist_ok=True)
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m sitebus "$@"\n')
    script.chmod(0o755)
    return script


def adapt(section: str, tmp_path: Path) -> str:
    """contrib's program section with this machine's paths (and the test's account)."""
    replacements = {
        "/opt/sitebus/bin/sitebus": str(sitebus_command(tmp_path)),
        "/etc/sitebus/site.conf": str(tmp_path / "site.conf"),
        "/var/lib/sitebus": str(tmp_path / "lib"),
        "/var/log/sitebus": str(tmp_path / "log"),
        "user=www-data": f"user={getpass.getuser()}",  # the one account a test may run as
    }
    for old, new in replacements.items():
        assert old in section, old
        section = section.replace(old, new)
    return section


class Supervisor:
    """supervisord in the foreground (a Child) and supervisorctl against it."""

    def __init__(self, child: Child, config: Path, site_log: Path) -> None:
        self.child = child
        self.config = config
        self.site_log = site_log

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(python("-m", "supervisor.supervisorctl", "-c", str(self.config),
                                     *args), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def status(self) -> tuple[str, int | None]:
        """Return the program's state (RUNNING, STOPPED...) and its pid."""
        output = self.ctl("status", "sitebus").stdout
        found = STATUS.search(output)
        if found is None:
            return output.strip(), None
        return found["state"], int(found["pid"]) if found["pid"] else None

    def wait_for(self, state: str, timeout: float = 30) -> int | None:
        """Poll ``supervisorctl status`` until the program is in ``state``; return its pid."""
        seen: list[Any] = []

        def reached() -> bool:
            seen[:] = [self.status()]
            return seen[0][0] == state

        try:
            wait_until(reached, timeout, f"supervisorctl status to say {state}")
        except AssertionError:
            raise AssertionError(f"still {seen[0]} after {timeout} s:\n"
                                 f"{self.site_log.read_text(errors='replace')}") from None
        return seen[0][1]  # type: ignore[no-any-return]

    def site_output(self) -> str:
        return self.site_log.read_text(errors="replace") if self.site_log.exists() else ""


def session_members(sid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.pid != os.getpid():
                members.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return members


@pytest.fixture
def supervisor(spawn: Any, tmp_path: Path) -> Iterator[Supervisor]:
    """supervisord with contrib's program section, in a session of its own.

    Teardown kills supervisord first (so it restarts nothing), then whatever is left of its
    session: the site runs in a process group of its own, out of reach of the spawn fixture.
    """
    for directory in ("lib", "log"):
        (tmp_path / directory).mkdir()
    (tmp_path / "lib" / "apps.py").write_text(APPS)  # the site's working directory
    program = tmp_path / "sitebus.conf"
    program.write_text(adapt(CONTRIB.read_text(), tmp_path))
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[unix_http_server]\nfile={tmp_path}/supervisor.sock\n"
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\n"
        f"pidfile={tmp_path}/supervisord.pid\nchildlogdir={tmp_path}/log\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{tmp_path}/supervisor.sock\n"
        f"[include]\nfiles={program}\n"
    )
    child = spawn(python("-m", "supervisor.supervisord", "-c", str(config)),
                  name="supervisord-output", notify=False, new_session=True)
    try:
        yield Supervisor(child, config, tmp_path / "log" / "site.log")
    finally:
        left = session_members(child.pid)
        for process in sorted(left, key=lambda p: p.pid != child.pid):  # supervisord first
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=10)


def test_supervisord_runs_the_contrib_site(supervisor: Supervisor, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "site.conf").write_text(
        "[global]\n"
        f"server.socket_port = {port}\n"
        "log.screen = True\n"  # supervisord keeps stdout; wins over -e production's False
        "engine.autoreload.on = False\n"
        "tree.bare = '/bare', 'apps:hello'\n"
    )
    # autostart=true: supervisord starts it; RUNNING once it has lived startsecs (3 s).
    first = psutil.Process(supervisor.wait_for("RUNNING"))
    assert first.cwd() == str(tmp_path / "lib")  # directory=, as the section says
    assert get(port, "/bare/")[:2] == (200, b"bare wsgi /bare /")

    # signal HUP: a restart in place, same pid, the socket kept; a client sending all along
    # sees no refused connection and no error.
    client = SteadyClient(port, "/bare/")
    crowd = ClientCrowd(port, "/bare/", clients=8)  # clients that keep their connections
    client.start()
    crowd.start()
    try:
        client.more_answers(1, "the client's first answer")
        crowd.more_answers(10, "the kept-alive clients' first answers")
        result = supervisor.ctl("signal", "HUP", "sitebus")
        assert result.returncode == 0 and "sitebus: signalled" in result.stdout, result
        wait_until(lambda: supervisor.site_output().count("Bus STARTED") == 2, 30,
                   "the re-executed site to start")
        client.more_answers(4, "answers from the new image")
        crowd.more_answers(10, "kept-alive clients answered by the new image")
    finally:
        client.finish()
        crowd.finish()
    assert client.failures == []
    assert crowd.failures == []
    assert "SIGHUP caught with no terminal attached. Restarting." in supervisor.site_output()
    assert supervisor.status() == ("RUNNING", first.pid)

    # restart: stop (SIGTERM, drained, exit 0), then start: a new process.
    result = supervisor.ctl("restart", "sitebus")
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == ["sitebus: stopped", "sitebus: started"], result
    second = psutil.Process(supervisor.wait_for("RUNNING"))
    assert second.pid != first.pid and not first.is_running()
    assert get(port, "/bare/again")[:2] == (200, b"bare wsgi /bare /again")

    # stop: SIGTERM, and the site exits 0 well within stopwaitsecs (no SIGKILL).
    stopwaitsecs = int(re.search(r"^stopwaitsecs=(\d+)$", CONTRIB.read_text(), re.M)[1])
    began = time.monotonic()
    result = supervisor.ctl("stop", "sitebus", timeout=stopwaitsecs + 30)
    took = time.monotonic() - began
    assert result.returncode == 0 and result.stdout.strip() == "sitebus: stopped", result
    assert took < stopwaitsecs, took
    assert supervisor.wait_for("STOPPED") is None
    log = (tmp_path / "supervisord.log").read_text()
    assert "stopped: sitebus (exit status 0)" in log, log
    assert "SIGKILL" not in log

    # start again from STOPPED, then supervisord's own shutdown stops the site too.
    result = supervisor.ctl("start", "sitebus")
    assert result.returncode == 0 and result.stdout.strip() == "sitebus: started", result
    third = psutil.Process(supervisor.wait_for("RUNNING"))
    assert get(port, "/bare/third")[:2] == (200, b"bare wsgi /bare /third")
    assert supervisor.ctl("shutdown").returncode == 0
    assert supervisor.child.wait(60) == 0
    assert (tmp_path / "supervisord.log").read_text().count("(exit status 0)") == 3

    # Nothing left behind: no sitebus process, nothing else in supervisord's session.
    site_conf = str(tmp_path / "site.conf")
    left = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if site_conf in (process.info["cmdline"] or []):
            left.append(process.info)
    assert left == []
    assert not any(process.is_running() for process in (first, second, third))
    assert session_members(supervisor.child.pid) == []
