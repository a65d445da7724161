"""Helpers for the site-service process tests: facts files, lock probes, detached processes."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
from pathlib import Path

from tests.processes import Timeout, python

CHILD = Path(__file__).with_name("services_child.py")


def child_argv(workdir: Path, *options: str) -> list[str]:
    """Copy the child program into ``workdir`` and return the argv that runs it."""
    script = workdir / "services_child.py"
    if not script.exists():
        shutil.copy(CHILD, script)
    return python(str(script), *options)


def read_facts(path: Path) -> list[dict]:
    """Return the facts each process image recorded, in order."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def is_locked(path: Path) -> bool:
    """Return True if another open file holds an exclusive flock on ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    """Wait until ``pid`` (not necessarily our child) has exited, blocking on a pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            raise Timeout(f"process {pid} still running after {timeout:.1f} s")
    finally:
        os.close(pidfd)
