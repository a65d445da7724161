"""What every benchmark does with the servers it measures: pick a port, wait for it, stop it.

One copy, so that every script waits and stops the same way: a server that exits early is
reported by name, and one that ignores SIGTERM is killed rather than left behind.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str,
                  timeout: float = 30) -> None:
    """Wait until 127.0.0.1:``port`` accepts a connection; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:  # a benchmark harness: polling for the port is fine here
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer on port {port}") from None
            time.sleep(0.05)


def reap(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Wait for ``process`` to exit; kill it if it takes longer than ``timeout`` seconds."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Send SIGTERM to ``process`` and reap it."""
    process.send_signal(signal.SIGTERM)
    reap(process, timeout)


@contextmanager
def launched(argv: list[str], port: int, what: str, cwd: str | None = None,
            env: dict[str, str] | None = None, output: Any = subprocess.DEVNULL,
            settle: float = 1.0, timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server listening on ``port``; yield its process once it answers, then stop it.

    ``settle`` seconds after the first answer let every worker come up, not just the first;
    ``output`` takes its stdout and stderr; ``timeout`` is how long it may take to stop.
    """
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, what)
        time.sleep(settle)
        yield process
    finally:
        stop(process, timeout)
