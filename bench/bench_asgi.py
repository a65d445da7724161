"""ASGI benchmark: sitebus -w 2 beside uvicorn --workers 2 and gunicorn with uvicorn workers.

    python bench/bench_asgi.py [--rounds 3] [--seconds 5] [--only throughput|reload]

Throughput: requests per second of one raw ASGI hello world through wrk, 16 keep-alive
connections, for ``sitebus run hello:app -w 2 -e production``, ``uvicorn hello:app --workers
2`` and ``gunicorn -k uvicorn_worker.UvicornWorker -w 2``, all with access logs off (so
sitebus makes no request ids, as by default without an access log; and once more with
``log.request_id = True``, what an id per request costs, which the peers do not make). Every
round visits every server in turn (alternating rounds); each figure is the median, and the
CPU time per request (of each server's whole process tree) is the figure a loaded machine
leaves comparable.

Reload: sitebus -w 2 under 4 keep-alive clients with a websocket open, through 4 rolling
reloads (SIGUSR1): the requests that failed (an error, not a 200), and the close code the
websocket got (1001 expected; none means the connection was reset).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_servers import rounds_of_load  # noqa: E402
from bench.bench_workers import tree_cpu_seconds  # noqa: E402
from bench.env import median, reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, launched  # noqa: E402

HELLO = '''\
import os

BODY = ("%d Hello, world!" % os.getpid()).encode()


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
'''


@dataclass(frozen=True)
class Server:
    label: str
    kind: str

    def argv(self, port: int, workdir: str) -> list[str]:
        Path(workdir, "hello.py").write_text(HELLO)
        if self.kind == "uvicorn":
            return [sys.executable, "-m", "uvicorn", "hello:app", "--workers", "2",
                    "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                    "--log-level", "warning"]
        if self.kind == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker",
                    "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                    "hello:app"]
        extra: list[str] = []
        if self.kind == "sitebus-ids":
            Path(workdir, "ids.conf").write_text("[global]\nlog.request_id = True\n")
            extra = ["-c", "ids.conf"]
        return [sys.executable, "-m", "sitebus", "run", "hello:app", "-w", "2", "-b",
                f"127.0.0.1:{port}", "-e", "production", "--no-reload", *extra]


SERVERS = [
    Server("sitebus -w 2 (uvicorn)", "sitebus"),
    Server("sitebus -w 2, log.request_id = True", "sitebus-ids"),
    Server("uvicorn --workers 2", "uvicorn"),
    Server("gunicorn -k UvicornWorker -w 2", "gunicorn"),
]


@contextmanager
def running(server: Server, workdir: str | None = None
            ) -> Iterator[tuple[tuple[str, int], subprocess.Popen[bytes]]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        where = workdir or tmp
        with launched(server.argv(port, where), port, server.label, cwd=where) as process:
            yield ("127.0.0.1", port), process


def throughput(rounds: int, seconds: float) -> None:
    with ExitStack() as stack:
        live = {server: stack.enter_context(running(server)) for server in SERVERS}
        results = rounds_of_load({server: (address, process.pid)
                                  for server, (address, process) in live.items()},
                                 rounds, seconds, 16, cpu=tree_cpu_seconds)
    peers = [s for s in SERVERS if not s.kind.startswith("sitebus")]
    best_peer = max(median([r.requests_per_second for r in results[s]]) for s in peers)
    best_cpu = min(median([r.cpu_us_per_request for r in results[s]]) for s in peers)
    rows = []
    for server, found in results.items():
        rate = median([r.requests_per_second for r in found])
        rows.append([server.label, f"{rate:,.0f}",
                     " ".join(f"{r.requests_per_second:,.0f}" for r in found),
                     f"{median([r.p99_ms for r in found]):.1f}",
                     f"{median([r.cpu_us_per_request for r in found]):.0f}",
                     f"{median([r.cpu_us_per_request for r in found]) / best_cpu:.2f}x",
                     sum(r.errors for r in found), f"{rate / best_peer:.2f}x"])
    print(f"hello world (raw ASGI), wrk 16 keep-alive connections, {seconds:g} s x {rounds} "
          "alternating rounds, access logs off")
    print(table(["server", "req/s (median)", "rounds", "p99 ms", "CPU us/req",
                 "CPU vs leanest peer", "errors", "req/s vs best peer"], rows))


class KeepAliveClient(threading.Thread):
    """GETs / over one keep-alive connection, reconnecting only after Connection: close."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.pids: list[int] = []
        self.failures: list[str] = []

    def run(self) -> None:
        connection = None
        while not self.stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                if response.status == 200:
                    self.pids.append(int(body.split()[0]))
                else:
                    self.failures.append(str(response.status))
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except OSError as error:
                self.failures.append(repr(error))
                connection.close()
                connection = None
            self.stop.wait(0.002)


def reload(reloads: int = 4) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with running(SERVERS[0]) as ((_host, port), process):
        clients = [KeepAliveClient(port) for _ in range(4)]
        for client in clients:
            client.start()
        close_code: object = "still open"
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            ws.send("hi")
            ws.recv(timeout=10)
            for _ in range(reloads):
                old = {pid for client in clients for pid in client.pids[-20:]}
                os.kill(process.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    recent = {pid for client in clients for pid in client.pids[-5:]}
                    if recent and not recent & old:
                        break
                    time.sleep(0.05)
                time.sleep(0.5)
            try:
                ws.recv(timeout=10)
            except ConnectionClosed as closed:
                close_code = closed.rcvd.code if closed.rcvd is not None else "none (reset)"
        for client in clients:
            client.stop.set()
            client.join(30)
    answered = sum(len(client.pids) for client in clients)
    failures = [failure for client in clients for failure in client.failures]
    print(f"\nrolling reloads: {reloads} under 4 keep-alive clients: {answered} answered, "
          f"{len(failures)} failed {failures[:3]}; the websocket open across them was closed "
          f"with {close_code}")


def main() -> None:
    reexec_in_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--only", choices=["throughput", "reload"])
    args = parser.parse_args()
    if args.only in (None, "throughput"):
        throughput(args.rounds, args.seconds)
    if args.only in (None, "reload"):
        reload()


if __name__ == "__main__":
    main()
