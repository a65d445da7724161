"""sitebus as PID 1 beside sitebus as an ordinary process: does reaping cost anything?

    python bench/bench_container.py [--rounds 3] [--seconds 3]

The same site (``-w 2 -e production``) runs twice at once: as an ordinary child of this
script, and as PID 1 of a new PID namespace (``unshare --pid --fork --mount-proc``, root), where
it reaps orphans (``engine.reaper``). Two loads through wrk, every round visiting both sites in
turn: hello world through 16 keep-alive connections, and /orphan through 4, a handler that
shells out and leaves a background child behind (a zombie per request unless reaped). Figures
are medians of the rounds; the zombies column counts what is left under PID 1 a second after
the load (the ordinary site's orphans go to the host's init, so it has none of its own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_servers import Result, load_python, load_wrk  # noqa: E402
from bench.env import ROOT, median, table  # noqa: E402
from bench.harness import free_port, reap, stop, wait_for_port  # noqa: E402

APP = '''\
import subprocess


def app(environ, start_response):
    if environ["PATH_INFO"] == "/orphan":
        subprocess.run(["sh", "-c", "sleep 0.01 &"], check=True)
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [body]
'''

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


@contextmanager
def running(as_pid1: bool) -> Iterator[tuple[tuple[str, int], int]]:
    """Run the site; yield its address and the host pid of its master once it answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "app.py").write_text(APP)
        Path(workdir, "site.conf").write_text(
            f'[global]\nenvironment = "production"\nserver.socket_port = {port}\n'
            'tree.app = "", "app:app"\n')
        argv = [sys.executable, "-m", "sitebus", "run", "-c", "site.conf", "-w", "2"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([*UNSHARE, *argv] if as_pid1 else argv, cwd=workdir, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, process, "PID 1" if as_pid1 else "ordinary")
            time.sleep(1)  # every worker up, not just the first
            master = _children(process.pid)[0] if as_pid1 else process.pid
            yield ("127.0.0.1", port), master
        finally:
            if as_pid1:
                os.kill(_children(process.pid)[0], signal.SIGTERM)
                reap(process)
            else:
                stop(process)


def _children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(name))
    return found


def zombies(master: int) -> int:
    count = 0
    for pid in _children(master):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                count += stat.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            pass
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    options = parser.parse_args()
    if shutil.which("unshare") is None or os.geteuid() != 0:
        sys.exit("needs root and unshare (util-linux)")
    load = load_wrk if shutil.which("wrk") else load_python
    loads = {"hello, 16 keep-alive": ("/", 16), "/orphan, 4 keep-alive": ("/orphan", 4)}
    results: dict[tuple[str, bool], list[Result]] = {}
    left: dict[bool, list[int]] = {False: [], True: []}
    with ExitStack() as stack:
        sites = {pid1: stack.enter_context(running(pid1)) for pid1 in (False, True)}
        for address, _master in sites.values():
            load(address, 16, 1, False, "/")  # warm up
        for _ in range(options.rounds):
            for name, (path, connections) in loads.items():
                for pid1, (address, master) in sites.items():
                    result = load(address, connections, options.seconds, False, path)
                    results.setdefault((name, pid1), []).append(result)
                    if path == "/orphan":
                        time.sleep(1)  # the reaper's interval, twice, and then some
                        left[pid1].append(zombies(master))
    rows = []
    for name in loads:
        plain = median([r.requests_per_second for r in results[(name, False)]])
        pid1 = median([r.requests_per_second for r in results[(name, True)]])
        errors = sum(r.errors for pid in (False, True) for r in results[(name, pid)])
        rows.append([name, f"{plain:,.0f}", f"{pid1:,.0f}", f"{pid1 / plain:.2f}", errors])
    print(table(["load", "ordinary req/s", "PID 1 req/s", "ratio", "errors"], rows))
    print(f"zombies under PID 1 a second after each /orphan round: {left[True]}")


if __name__ == "__main__":
    main()
