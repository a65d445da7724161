"""Request framework benchmark: hello-world requests/s, services.web beside CherryPy 18.

    python bench/bench_web.py [--rounds 3] [--seconds 5] [--connections 10]

Each contender serves the same handler (an exposed ``index`` returning "Hello world!") from a
process of its own, on cheroot with the same settings (10 worker threads, request queue 5,
timeout 10 s, 127.0.0.1), its engine started, logging to the screen off and tracebacks off
(the reference's production settings). Raw cheroot with a plain WSGI function is measured
too, as the ceiling. The client is ``wrk`` (HTTP/1.1 keep-alive, one thread,
``--connections`` connections). Rounds run the contenders in turn (in a rotating order), so
all see the same machine; the figures are the medians of the rounds: requests/s, and the
server process's CPU time per request (all its threads, from /proc), which a busy machine
disturbs less. Target (issue 8): services.web at least 1.5x CherryPy's requests/s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, stop, wait_for_port  # noqa: E402

THREADS = 10

PROGRAMS = {
    "services.web": f"""
import services.web as cherrypy

class Root:
    @cherrypy.expose
    def index(self):
        return "Hello world!"

cherrypy.config.update({{
    "log.screen": False,
    "request.show_tracebacks": False,
    "checker.on": False,
    "server.socket_host": "127.0.0.1",
    "server.socket_port": PORT,
    "server.thread_pool": {THREADS},
}})
cherrypy.tree.mount(Root())
cherrypy.server.subscribe()
cherrypy.engine.start()
print("ready", flush=True)
cherrypy.engine.block()
""",
    "cherrypy": f"""
import cherrypy

class Root:
    @cherrypy.expose
    def index(self):
        return "Hello world!"

cherrypy.config.update({{
    "environment": "production",
    "log.screen": False,
    "server.socket_host": "127.0.0.1",
    "server.socket_port": PORT,
    "server.thread_pool": {THREADS},
}})
cherrypy.tree.mount(Root())
cherrypy.engine.start()
print("ready", flush=True)
cherrypy.engine.block()
""",
    "raw cheroot": f"""
from cheroot import wsgi

def app(environ, start_response):
    body = b"Hello world!"
    start_response("200 OK", [("Content-Type", "text/html;charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]

server = wsgi.Server(("127.0.0.1", PORT), app, numthreads={THREADS}, request_queue_size=5,
                     timeout=10)
server.prepare()
print("ready", flush=True)
server.serve()
""",
}


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user and system) of every thread of ``pid`` so far."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def measure(name: str, seconds: float, connections: int) -> tuple[float, float]:
    """Start ``name``'s server, check it answers, run wrk against it.

    Return (requests/s, CPU microseconds per request).
    """
    port = free_port()
    program = PROGRAMS[name].replace("PORT", str(port))
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            errors = child.stderr.read() if child.stderr else ""
            raise RuntimeError(f"{name} did not start: {errors}")
        wait_for_port(port, child, name)
        check = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                               timeout=10) if shutil.which("curl") else None
        if check is not None and check.stdout != b"Hello world!":
            raise RuntimeError(f"{name} answered {check.stdout!r}")
        # A short warm-up, then the measured run.
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s",
                        f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
        cpu_before = cpu_seconds(child.pid)
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, check=True)
        cpu_used = cpu_seconds(child.pid) - cpu_before
        match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
        count = re.search(r"(\d+) requests in", result.stdout)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
        if match is None or count is None or errors is not None:
            raise RuntimeError(f"wrk against {name}:\n{result.stdout}")
        return float(match.group(1)), cpu_used / int(count.group(1)) * 1e6
    finally:
        stop(child, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    rounds = max(3, args.rounds)

    names = list(PROGRAMS)
    results: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for name in order:
            rps, us = measure(name, args.seconds, args.connections)
            results[name].append(rps)
            cpu[name].append(us)

    medians = {name: median(values) for name, values in results.items()}
    cpu_medians = {name: median(values) for name, values in cpu.items()}
    rows = [[name, f"{medians[name]:.0f}", " ".join(f"{v:.0f}" for v in results[name]),
             f"{medians[name] / medians['cherrypy']:.2f}x", f"{cpu_medians[name]:.0f}"]
            for name in names]
    print(f"hello world, requests/s (median of {rounds} rounds of {args.seconds:g} s; "
          f"wrk -t1 -c{args.connections}; cheroot with {THREADS} threads)")
    print(table(["server", "req/s", "per round", "vs cherrypy", "CPU us/req"], rows))
    ratio = medians["services.web"] / medians["cherrypy"]
    cpu_ratio = cpu_medians["cherrypy"] / cpu_medians["services.web"]
    print(f"\nservices.web / cherrypy = {ratio:.2f} in requests/s (target: at least 1.5), "
          f"{cpu_ratio:.2f} in CPU per request")


if __name__ == "__main__":
    reexec_in_venv()
    main()
