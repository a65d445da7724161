"""Instructions per request, counted by callgrind: a figure the machine's noise leaves alone.

    python bench/bench_instructions.py [--requests 2000]

Each server runs the raw ASGI hello world of ``bench_asgi`` in one process under callgrind
(sitebus with and without request ids, ``uvicorn``, and gunicorn's ``UvicornWorker`` with one
worker, its arbiter counted too), access logs off. It is started twice: once answering a few
requests, once ``--requests`` more, each over one keep-alive connection; the difference of
the two totals divided by ``--requests`` is what one request costs, start-up and shutdown
cancelling out. Throughput rounds on a shared machine spread by 15 to 30%; these figures
repeat to well under 1%, so they show where the time goes and what a change saves. (sitebus's
pre-fork workers cannot run under valgrind 3.19, which lacks ``pidfd_open``: one process.)
Needs valgrind (``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_asgi import HELLO  # noqa: E402
from bench.env import reexec_in_venv, table  # noqa: E402
from bench.harness import free_port, launched  # noqa: E402

WARM_UP = 200
"""Requests both runs answer, so the difference holds only steady-state requests."""


@dataclass(frozen=True)
class Counted:
    label: str
    argv: tuple[str, ...]
    config: str = ""

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


SITEBUS = ("-m", "sitebus", "run", "hello:app", "-b", "127.0.0.1:{port}", "-e", "production",
           "--no-reload", "-c", "site.conf")

SERVERS = [
    Counted("sitebus (default: no access log, no ids)", SITEBUS, "[global]\n"),
    Counted("sitebus, log.request_id = True", SITEBUS, "[global]\nlog.request_id = True\n"),
    Counted("uvicorn", ("-m", "uvicorn", "hello:app", "--port", "{port}", "--no-access-log",
                        "--log-level", "warning")),
    Counted("gunicorn -k UvicornWorker -w 1", (
        "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "1", "--timeout", "600",
        "-b", "127.0.0.1:{port}", "--log-level", "warning", "hello:app")),
]


def ask(port: int, requests: int) -> None:
    """GET / ``requests`` times over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(requests):
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET / answered {response.status}")
    finally:
        connection.close()


def instructions(server: Counted, requests: int) -> int:
    """Instructions of the server's processes, from start to stop, having answered
    ``WARM_UP + requests`` requests."""
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "hello.py").write_text(HELLO)
        Path(workdir, "site.conf").write_text(server.config or "[global]\n")
        port = free_port()
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/out.%p",
                sys.executable, *server.command(port)]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        with launched(argv, port, server.label, cwd=workdir, env=env, settle=0.5,
                      timeout=120):
            ask(port, WARM_UP + requests)
        total = 0
        for out in Path(workdir).glob("out.*"):
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("summary:"):
                    total += int(line.split()[1])
        return total


def main() -> None:
    reexec_in_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_instructions: needs valgrind (apt-get install valgrind)")
    rows = []
    baseline: float | None = None
    for server in SERVERS:
        per_request = (instructions(server, args.requests) - instructions(server, 0)) \
            / args.requests
        if server.label == "uvicorn":
            baseline = per_request
        rows.append([server.label, per_request])
    print(f"instructions per request (callgrind), raw ASGI hello world, one keep-alive "
          f"connection, {args.requests} requests")
    print(table(["server", "instructions", "vs uvicorn"],
                [[label, f"{count:,.0f}", f"{count / baseline:.3f}x" if baseline else "-"]
                 for label, count in rows]))


if __name__ == "__main__":
    main()
