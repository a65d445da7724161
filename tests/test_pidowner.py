"""Which process the control commands may signal: owner_verdict, holds_flock, find_site."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from sitebus.process.pidowner import find_site, holds_flock, owner_verdict

PATH = "/run/site/site.pid"


@pytest.mark.parametrize(
    ("contents", "running", "holds", "program", "named", "kind", "words"),
    [
        (None, False, None, None, False, "absent", f"{PATH} does not exist"),
        ("junk\n", False, None, None, False, "stale", "holds no process id ('junk\\n')"),
        ("42\n", False, None, None, False, "gone", "pid 42 from /run/site/site.pid is gone"),
        ("42\n", True, False, "sleep", False, "stale",
         "names pid 42 ('sleep'), which does not hold the file's lock"),
        ("42\n", True, False, "sitebus", True, "stale", "does not hold the file's lock"),
        ("42\n", True, None, "sitebus", True, "unknown", "cannot tell whether pid 42"),
        ("42\n", True, True, "bash", False, "foreign", "but is not a sitebus site"),
        ("42\n", True, True, None, False, "foreign", "pid 42 holds the lock"),
        ("42\n", True, True, "sitebus", False, "site", "is the site of"),
        ("42\n", True, True, "myapp", True, "site", "is the site of"),  # a script, with status
    ],
)
def test_owner_verdict(contents: str | None, running: bool, holds: bool | None,
                       program: str | None, named: bool, kind: str, words: str) -> None:
    verdict = owner_verdict(PATH, contents, running, holds, program, named)
    assert verdict.kind == kind
    assert words in verdict.message
    if kind != "site":
        assert verdict.exit_code != 0 and verdict.status_code != 0
        assert kind in ("absent", "gone") or "nothing was signalled" in verdict.message


@pytest.mark.parametrize(("text", "locked"), [
    ("pos:\t0\nflags:\t02100000\nmnt_id:\t27\nino:\t5\n", False),
    ("pos:\t0\nlock:\t1: FLOCK  ADVISORY  WRITE 13152 fe:00:5 0 EOF\n", True),
    ("pos:\t0\nlock:\t1: FLOCK  ADVISORY  READ 13152 fe:00:5 0 EOF\n", False),
    ("pos:\t0\nlock:\t1: POSIX  ADVISORY  WRITE 13152 fe:00:5 0 EOF\n", False),
])
def test_holds_flock(text: str, locked: bool) -> None:
    assert holds_flock(text) is locked


def test_find_site_sees_this_process_lock_but_no_site(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    assert find_site(str(pidfile)).verdict.kind == "stale"  # nobody locks it
    fd = os.open(pidfile, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert find_site(str(pidfile)).verdict.kind == "foreign"  # pytest is not a site
        (tmp_path / "x.pid.status").write_text(f'{{"pid": {os.getpid()}}}')
        found = find_site(str(pidfile))
        assert found.verdict.kind == "site" and found.pidfd is not None
        found.close()
        copy = tmp_path / "copy.pid"
        copy.write_text(f"{os.getpid()}\n")  # names us, but we lock another inode
        (tmp_path / "copy.pid.status").write_text(f'{{"pid": {os.getpid()}}}')
        assert find_site(str(copy)).verdict.kind == "stale"
    finally:
        os.close(fd)
    assert find_site(str(tmp_path / "none.pid")).verdict.kind == "absent"
