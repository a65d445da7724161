"""Request framework benchmark: hello-world requests/s, services.web beside CherryPy 18.

    python bench/bench_web.py [--rounds 3] [--seconds 5] [--connections 10]

Each contender serves the same handler (an exposed ``index`` returning "Hello world!") from a
process of its own, on cheroot with the same settings (10 worker threads, request queue 5,
timeout 10 s, 127.0.0.1), its engine started, logging to the screen off and tracebacks off
(the reference's production settings). Raw cheroot with a plain WSGI function is measured
too, as the ceiling. The client is ``wrk`` (HTTP/1.1 keep-alive, one thread,
``--connections`` connections). Rounds run the contenders in turn, so all see the same
machine; the figure is the median of the rounds. Target (issue 8): services.web at least
1.5x CherryPy's requests/s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.env import median, reexec_in_venv, table  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def measure(name: str, seconds: float, connections: int) -> float:
    """Start ``name``'s server, check it answers, run wrk against it, return requests/s."""
    port = free_port()
    program = PROGRAMS[name].replace("PORT", str(port))
    child = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            errors = child.stderr.read() if child.stderr else ""
            raise RuntimeError(f"{name} did not start: {errors}")
        wait_for_port(port)
        check = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                               timeout=10) if shutil.which("curl") else None
        if check is not None and check.stdout != b"Hello world!":
            raise RuntimeError(f"{name} answered {check.stdout!r}")
        # A short warm-up, then the measured run.
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s",
                        f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, check=True)
        match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
        if match is None or errors is not None:
            raise RuntimeError(f"wrk against {name}:\n{result.stdout}")
        return float(match.group(1))
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    rounds = max(3, args.rounds)

    results: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    for _ in range(rounds):
        for name in PROGRAMS:
            results[name].append(measure(name, args.seconds, args.connections))

    medians = {name: median(values) for name, values in results.items()}
    rows = [[name, f"{medians[name]:.0f}", " ".join(f"{v:.0f}" for v in results[name]),
             f"{medians[name] / medians['cherrypy']:.2f}x"] for name in PROGRAMS]
    print(f"hello world, requests/s (median of {rounds} rounds of {args.seconds:g} s; "
          f"wrk -t1 -c{args.connections}; cheroot with {THREADS} threads)")
    print(table(["server", "req/s", "per round", "vs cherrypy"], rows))
    ratio = medians["services.web"] / medians["cherrypy"]
    print(f"\nservices.web / cherrypy = {ratio:.2f} (target: at least 1.5)")


if __name__ == "__main__":
    reexec_in_venv()
    main()
