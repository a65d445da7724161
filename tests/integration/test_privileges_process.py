"""DropPrivileges in real processes: bind a privileged port as root, then serve as nobody.

These need root (CI runs as root) and the user ``nobody``; they skip with a reason otherwise.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service_helpers import child_argv

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root"),
]


def user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"there is no user {name!r} on this system")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can write to (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sitebus-privileges-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def free_privileged_ports(count: int) -> list[int]:
    """Return ports below 1024 that are free on 127.0.0.1 right now."""
    found: list[int] = []
    for port in random.sample(range(600, 1024), 424):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.skip("no free privileged port on 127.0.0.1")


def ready_facts(child: Any) -> dict:
    return json.loads(child.wait_for_output(r"^READY (.*)$").group(1))


def test_bind_as_root_then_serve_as_nobody(spawn: Any, tmp_path: Path, shared_dir: Path) -> None:
    nobody = user("nobody")
    port, probe_port = free_privileged_ports(2)
    created = shared_dir / "made-after-the-drop.txt"
    child = spawn(child_argv(
        tmp_path, "--uid", "nobody", "--umask", "027", "--listen", str(port),
        "--probe-port", str(probe_port), "--create", str(created),
        "--facts", str(shared_dir / "facts.jsonl"),
    ))
    facts = ready_facts(child)

    assert f"bound 127.0.0.1:{port} as uid 0" in child.output
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        assert client.makefile().readline() == f"uid={nobody.pw_uid}\n"

    assert facts["uids"] == [nobody.pw_uid] * 3
    assert facts["gids"] == [nobody.pw_gid] * 3  # the user's primary group, not root's
    assert facts["groups"] == sorted(os.getgrouplist("nobody", nobody.pw_gid))
    assert facts["regain_root"] == "PermissionError"
    assert facts["probe"] == "EACCES"  # a second privileged port is out of reach now
    assert facts["umask"] == 0o027

    info = created.stat()
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o640  # 0o666 under the umask 027

    out = child.output
    group = grp.getgrgid(nobody.pw_gid).gr_name
    assert "Started as uid: 'root' gid: 'root'" in out
    assert f"Running as uid: 'nobody' gid: {group!r} groups: [{group!r}]" in out
    assert "umask old: 022, new: 027" in out
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0


def test_supplementary_groups_are_the_users(spawn: Any, tmp_path: Path) -> None:
    candidates = [
        entry for entry in pwd.getpwall()
        if entry.pw_uid != 0 and len(os.getgrouplist(entry.pw_name, entry.pw_gid)) > 1
    ]
    if not candidates:
        pytest.skip("no user on this system belongs to a supplementary group")
    target = candidates[0]
    child = spawn(child_argv(tmp_path, "--uid", target.pw_name, "--facts", "/dev/null"))
    facts = ready_facts(child)
    assert facts["uids"] == [target.pw_uid] * 3
    assert facts["groups"] == sorted(os.getgrouplist(target.pw_name, target.pw_gid))
    assert 0 not in facts["groups"]
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0


def test_changing_user_when_not_root_stops_with_77(spawn: Any, tmp_path: Path) -> None:
    user("nobody")
    child = spawn(child_argv(tmp_path, "--pre-drop", "nobody", "--uid", "root"))
    assert child.wait() == 77
    out = child.output
    assert "engine.drop_privileges.uid: cannot switch to uid 0: this process runs as uid" in out
    assert "Bus STARTED" not in out


def test_an_unknown_user_is_a_config_error_78(spawn: Any, tmp_path: Path) -> None:
    child = spawn(child_argv(tmp_path, "--uid", "no-such-user-here"))
    assert child.wait() == 78
    assert "config error: engine.drop_privileges.uid: no such user: 'no-such-user-here'" \
        in child.output


def test_a_pid_file_the_dropped_user_cannot_remove_is_left_with_a_warning(
    spawn: Any, tmp_path: Path, shared_dir: Path
) -> None:
    user("nobody")
    run = shared_dir / "run"
    run.mkdir(mode=0o755)  # root's, as /run is: nobody cannot remove files there
    pidfile = run / "site.pid"
    child = spawn(child_argv(tmp_path, "--pidfile", str(pidfile), "--uid", "nobody",
                             "--facts", str(shared_dir / "facts.jsonl")), name="site")
    ready_facts(child)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert f"Could not remove PID file {str(pidfile)!r}: Permission denied. `sitebus stop` " \
        "removes it" in child.output
    assert pidfile.read_text() == f"{child.pid}\n"
    again = spawn(child_argv(tmp_path, "--pidfile", str(pidfile), "--exit-when-ready"),
                  name="again")
    assert again.wait() == 0
    assert f"process {child.pid} is not running" in again.output
