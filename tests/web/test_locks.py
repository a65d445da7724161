"""lib.lockfile and lib.locking, and file sessions shared by worker processes."""

from __future__ import annotations

import datetime
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.web.lib import lockfile, locking, sessions
from services.web.test.webtest import openURL
from tests.processes import python
from tests.web.sessions_helpers import hammer


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    yield
    sessions.stop_cleanup()


HOLD = """
import signal, sys
from services.web.lib import lockfile
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
lock = lockfile.LockFile(sys.argv[1])
print("locked", flush=True)
signal.sigwait([signal.SIGUSR1])
lock.remove()
lock.release()
print("released", flush=True)
signal.sigwait([signal.SIGUSR1])
"""


def test_timers() -> None:
    assert not locking.NeverExpires().expired()
    assert locking.NeverExpires().remaining() is None
    assert locking.Timer.after(0).expired()
    timer = locking.Timer.after(datetime.timedelta(hours=1))
    assert not timer.expired() and 3500 < (timer.remaining() or 0) <= 3600
    checker = locking.LockChecker("abc", 0)
    with pytest.raises(locking.LockTimeout, match="Timeout acquiring lock for abc"):
        checker.expired()
    assert not locking.LockChecker("abc", None).expired()
    assert locking.seconds(datetime.timedelta(seconds=3)) == 3.0
    assert locking.seconds(None) is None


def test_lock_files_exclude_threads_of_one_process(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    first = lockfile.LockFile(path)
    assert Path(path).read_text() == str(os.getpid())
    with pytest.raises(lockfile.LockError, match="Unable to lock"):
        lockfile.LockFile(path)
    got: list[lockfile.SystemLockFile] = []
    waiter = threading.Thread(target=lambda: got.append(lockfile.LockFile(path, block=True)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()  # blocked in the kernel
    first.remove()  # removed while held: the waiter must not keep the old file's lock
    first.release()
    waiter.join(30)
    assert len(got) == 1
    assert os.path.exists(path)  # the waiter locked the file now at the path
    with pytest.raises(lockfile.LockError):
        lockfile.LockFile(path)
    got[0].release()
    lockfile.LockFile(path).release()


def test_lock_files_exclude_processes(spawn: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "p.lock")
    child = spawn(python("-c", HOLD, path))
    child.wait_for_output("^locked$", timeout=30)
    with pytest.raises(lockfile.LockError):
        lockfile.LockFile(path)
    child.send_signal(signal.SIGUSR1)
    child.wait_for_output("^released$", timeout=30)
    mine = lockfile.LockFile(path)
    mine.release()


def test_unlock_errors(tmp_path: Path) -> None:
    lock = lockfile.LockFile(str(tmp_path / "u.lock"))
    lock.release()
    lock.release()  # a second release does nothing
    assert issubclass(lockfile.UnlockError, lockfile.LockError)
    assert str(lockfile.UnlockError("p")) == "Unable to unlock 'p'"
    with pytest.raises(lockfile.LockError):
        lockfile.LockFile(str(tmp_path / "no" / "dir.lock"))


def test_file_session_lock_waits_for_another_process(spawn: Any, tmp_path: Path) -> None:
    session = sessions.FileSession(None, storage_path=str(tmp_path), lock_timeout=60)
    session["a"] = 1
    session.save()
    child = spawn(python("-c", HOLD, str(tmp_path / f"session-{session.id}.lock")))
    child.wait_for_output("^locked$", timeout=30)
    other = sessions.FileSession(session.id, storage_path=str(tmp_path), lock_timeout=0.2)
    began = time.monotonic()
    with pytest.raises(locking.LockTimeout):
        other.acquire_lock()
    assert time.monotonic() - began >= 0.2
    waiter = threading.Thread(target=lambda: (session.acquire_lock(), session.release_lock()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive()
    child.send_signal(signal.SIGUSR1)
    waiter.join(30)
    assert not waiter.is_alive()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_file_sessions_are_shared_safely_by_worker_processes(spawn: Any,
                                                             tmp_path: Path) -> None:
    storage = tmp_path / "sessions"
    storage.mkdir()
    ports = []
    for name in ("worker1", "worker2"):
        child = spawn(python("-m", "tests.web.session_worker", str(storage)), name=name)
        match = child.wait_for_output(r"Serving on http://127\.0\.0\.1:(\d+)", timeout=60)
        child.wait_for_output(r"Bus STARTED", timeout=60)
        ports.append(int(match.group(1)))
    status, headers, body = openURL("/", port=ports[0])
    assert body == b"1"
    cookie = next(v for k, v in headers if k.lower() == "set-cookie").split(";")[0]
    targets = [(ports[i % 2], "/slow") for i in range(60)]
    results = hammer(ports[0], targets, cookie, workers=12)
    assert sorted(int(r) for r in results) == list(range(2, 62))
    _, _, body = openURL("/peek", headers=[("Cookie", cookie)], port=ports[1])
    assert body == b"61"
    leftovers = [p.name for p in storage.iterdir() if not re.fullmatch(r"session-\w+", p.name)]
    assert leftovers == []  # no lock files, no temporary files
