"""Logs never lost silently, in real sites: a full disk, and logrotate after a privilege drop.

The logrotate tests need root, the user ``nobody`` and logrotate; they skip otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dropped import (
    dropped_site,
    needs_root,
    nobody,
    shared_dir_fixture,  # noqa: F401 (the fixture shared_dir)
    sitebus,
)
from tests.integration.frontends import free_port
from tests.integration.sites import get, ready_addresses, run_site, tcp_port
from tests.processes import ROOT, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_said_once_per_log_not_per_request(spawn: Any, tmp_path: Path) -> None:
    child = run_site(spawn, tmp_path, "[global]\nserver.socket_port = 0\n"
                                      "engine.autoreload.on = False\n"
                                      "log.error_file = '/dev/full'\n"
                                      "log.access_file = '/dev/full'\n"
                                      "tree.bare = '/bare', 'apps:hello'\n")
    port = tcp_port(ready_addresses(child))
    for n in range(50):
        assert get(port, f"/bare/{n}")[0] == 200
        assert get(port, "/missing")[0] == 404
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    out = child.output
    assert "Logging error" not in out and "Traceback" not in out
    said = [line for line in out.splitlines() if "cannot write the log file" in line]
    assert said == ["sitebus: cannot write the log file '/dev/full': OSError: [Errno 28] No "
                    "space left on device; records are lost until it works again (said once "
                    "per cause)"] * 2


def logged(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


@needs_root
def test_a_reopen_the_dropped_user_cannot_do_fails_the_reload_and_keeps_logging(
    spawn: Any, shared_dir: Path
) -> None:
    user = nobody()
    run = shared_dir / "run"
    run.mkdir()
    os.chown(run, user.pw_uid, user.pw_gid)
    logs = shared_dir / "log"
    logs.mkdir(mode=0o755)  # root's: nobody cannot create files there
    error_log = logs / "error.log"
    port = free_port()
    site = dropped_site(spawn, shared_dir, run / "site.pid", port,
                        config=f"log.error_file = '{error_log}'\n")
    rotated = logs / "error.log.1"
    error_log.rename(rotated)  # logrotate without `create`
    reload = sitebus("reload", "-p", str(run / "site.pid"), cwd=shared_dir)
    assert reload.returncode == 73, reload.stderr
    assert (f"reloaded but log.error_file: cannot reopen {str(error_log)!r}: Permission denied; "
            "still writing to the file opened before") in reload.stderr
    status = sitebus("status", "-p", str(run / "site.pid"), cwd=shared_dir)
    assert status.returncode == 0 and "logs:      log.error_file: cannot reopen" in status.stdout
    assert get(port, "/log")[0] == 200
    wait_until(lambda: logged(rotated, f"a record from the app, as uid {user.pw_uid}"), 10,
               "the app's record in the file still open")
    assert "ENGINE log.error_file: cannot reopen" in rotated.read_text()
    assert not error_log.exists()
    site.send_signal(signal.SIGTERM)
    assert site.wait() == 0


LOGROTATE = """\
{logs}/*.log {{
    create 0640 {user} {group}
    rotate 3
    missingok
    notifempty
    sharedscripts
    postrotate
        {python} -m sitebus reload -p {pidfile}
    endscript
}}
"""


@needs_root
@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate")
def test_the_readme_logrotate_block_works_after_a_drop(spawn: Any, shared_dir: Path) -> None:
    user = nobody()
    run = shared_dir / "run"
    run.mkdir()
    os.chown(run, user.pw_uid, user.pw_gid)
    logs = shared_dir / "log"
    logs.mkdir(mode=0o755)
    error_log = logs / "error.log"
    pidfile = run / "site.pid"
    port = free_port()
    site = dropped_site(spawn, shared_dir, pidfile, port,
                        config=f"log.error_file = '{error_log}'\n")
    group = subprocess.run(["id", "-gn", "nobody"], capture_output=True, text=True,
                           check=True).stdout.strip()
    conf = shared_dir / "logrotate.conf"
    conf.write_text(LOGROTATE.format(logs=logs, user="nobody", group=group,
                                     python=sys.executable, pidfile=pidfile))
    rotate = subprocess.run(["logrotate", "-f", "-s", str(shared_dir / "state"), str(conf)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert rotate.returncode == 0, rotate.stderr
    assert (logs / "error.log.1").exists() and error_log.stat().st_uid == user.pw_uid
    assert get(port, "/log")[0] == 200
    wait_until(lambda: logged(error_log, f"a record from the app, as uid {user.pw_uid}"), 10,
               "the app's record in the new file")
    assert "cannot reopen" not in site.output
    site.send_signal(signal.SIGTERM)
    assert site.wait() == 0
