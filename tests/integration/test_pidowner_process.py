"""The control commands signal nothing but the site: stale, forged and tampered PID files.

The tests with a privilege drop need root and the user ``nobody``; they skip otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dropped import (
    alive,
    dropped_site,
    needs_root,
    nobody,
    shared_dir_fixture,  # noqa: F401 (the fixture shared_dir)
    sitebus,
)
from tests.integration.frontends import free_port
from tests.integration.sites import get, ready_addresses, run_site, tcp_port

pytestmark = pytest.mark.timeout(90)


def test_a_stale_file_naming_an_unrelated_process_signals_nothing(
    spawn: Any, tmp_path: Path
) -> None:
    victim = spawn(["sleep", "60"], name="victim", notify=False)
    pidfile = tmp_path / "site.pid"
    pidfile.write_text(f"{victim.pid}\n")
    for command in ("stop", "reload", "restart"):
        result = sitebus(command, "-p", "site.pid", "--timeout", "5", cwd=tmp_path)
        assert result.returncode == 69, (command, result.stderr)
        assert (f"names pid {victim.pid} ('sleep'), which does not hold the file's lock: a "
                "stale or forged PID file; nothing was signalled") in result.stderr
        assert "stopped" not in result.stdout
    status = sitebus("status", "-p", "site.pid", cwd=tmp_path)
    assert status.returncode == 4 and "not running" in status.stderr
    assert alive(victim.pid) and victim.popen.poll() is None
    assert pidfile.read_text() == f"{victim.pid}\n"


def test_a_copy_naming_the_site_is_not_the_sites_file(spawn: Any, tmp_path: Path) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n", "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    shutil.copy(tmp_path / "site.pid", tmp_path / "copy.pid")
    shutil.copy(tmp_path / "site.pid.status", tmp_path / "copy.pid.status")
    forged = sitebus("stop", "-p", "copy.pid", cwd=tmp_path)
    assert forged.returncode == 69 and "does not hold the file's lock" in forged.stderr
    assert get(port, "/")[0] == 200
    stop = sitebus("stop", "-p", "site.pid", cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == f"sitebus: stopped pid {child.pid}\n"
    assert child.wait() == 0


@needs_root
def test_the_dropped_user_cannot_turn_the_pid_file_against_root(
    spawn: Any, shared_dir: Path
) -> None:
    user = nobody()
    run = shared_dir / "run"
    run.mkdir()
    os.chown(run, user.pw_uid, user.pw_gid)  # as the README says: the site user's directory
    pidfile = run / "site.pid"
    victim = spawn(["sleep", "60"], name="victim", notify=False)
    port = free_port()
    site = dropped_site(spawn, shared_dir, pidfile, port, env={"TAMPER_VICTIM": str(victim.pid)})
    assert pidfile.read_text() == f"{site.pid}\n"
    assert pidfile.stat().st_uid == 0

    status, body, _ = get(port, "/tamper")
    found = json.loads(body)
    assert status == 200 and found["uid"] == user.pw_uid
    assert found["modes"] == [os.O_RDONLY]  # the lock's descriptor, and no writable one
    assert found["fd_writes"] == [9]  # EBADF
    assert found["fd_reopens"] == [13]  # EACCES: the file is root's, 0644
    assert found["path_write"] == 13
    assert found["replace"] == "done"  # the directory is nobody's: the name can be replaced...
    assert pidfile.read_text() == f"{victim.pid}\n"

    stop = sitebus("stop", "-p", str(pidfile), cwd=shared_dir)  # ...but root is not fooled
    assert stop.returncode == 69
    assert f"names pid {victim.pid} ('sleep'), which does not hold the file's lock" in stop.stderr
    assert alive(victim.pid) and victim.popen.poll() is None
    assert get(port, "/")[0] == 200  # the site serves on, untouched

    site.send_signal(signal.SIGTERM)
    assert site.wait() == 0
    assert f"PID file {str(pidfile)!r} no longer holds PID {site.pid}; left alone." in site.output


@needs_root
@pytest.mark.parametrize("owner", ["nobody", "root"])
def test_a_clean_stop_after_a_drop_leaves_no_pid_file(
    spawn: Any, shared_dir: Path, owner: str
) -> None:
    user = nobody()
    run = shared_dir / "run"
    run.mkdir()
    if owner == "nobody":
        os.chown(run, user.pw_uid, user.pw_gid)
    pidfile = run / "site.pid"
    site = dropped_site(spawn, shared_dir, pidfile, free_port())
    stop = sitebus("stop", "-p", str(pidfile), cwd=shared_dir)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == f"sitebus: stopped pid {site.pid}\n"
    assert site.wait() == 0
    assert not pidfile.exists()
    assert sorted(p.name for p in run.iterdir()) == []
    if owner == "nobody":
        assert f"PID file removed: {str(pidfile)!r}." in site.output
        assert stop.stderr == ""
    else:  # the site could not remove it; the stop, as root, did
        assert "Could not remove PID file" in site.output
        assert f"removed {pidfile}, which the site could not remove" in stop.stderr
