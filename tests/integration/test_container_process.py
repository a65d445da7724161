"""sitebus as PID 1 of a real PID namespace, as in a container: orphans reaped with and without
workers, the app's own subprocesses keep their exit status, signals as outside a container, a
crashed worker replaced, a rolling reload and a stop that lose no request."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.containers import (
    UNSHARE_ARGV,
    Container,
    KeepAlive,
    can_unshare,
    children_of,
    fetch_many,
    needs_pid_namespace,
    ns_pid,
    run_as_pid1,
    site_config,
    state_of,
    write_orphan_app,
)
from tests.integration.sites import SteadyClient, get, ready_addresses, run_site, tcp_port
from tests.integration.worker_sites import wait_for_workers
from tests.processes import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture
def pid1(spawn: Any, tmp_path: Path) -> Iterator[Any]:
    """Start sites as PID 1 (``pid1(config, *args)``); kill every namespace left at teardown."""
    if not can_unshare():
        pytest.skip("needs root and unshare --pid (util-linux)")
    started: list[Container] = []

    def start(config: str, *args: str) -> tuple[Container, int]:
        container = run_as_pid1(spawn, tmp_path, config, "-p", "site.pid", *args)
        started.append(container)
        return container, tcp_port(ready_addresses(container.child))

    yield start
    for container in started:
        container.kill()


def stop(container: Container, signum: int = signal.SIGTERM) -> float:
    """Signal PID 1 to stop; assert it exits 0 and return how long it took."""
    began = time.monotonic()
    container.signal(signum)
    assert container.wait(60) == 0
    return time.monotonic() - began


def no_zombies_left(container: Container) -> None:
    wait_until(lambda: not container.zombies(), 10, "PID 1 to reap every orphan")


def test_as_pid1_with_two_workers_1000_orphaning_requests_leave_no_zombie(
        pid1: Any, tmp_path: Path) -> None:
    container, port = pid1(site_config())
    workers = wait_for_workers(tmp_path, 2)
    most = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            most[0] = max(most[0], len(container.zombies()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        statuses = fetch_many(port, "/orphan", 1000, connections=4)
    finally:
        done.set()
        sampler.join()
    assert statuses == [200] * 1000
    no_zombies_left(container)
    print(f"most zombies seen at once: {most[0]}")
    assert wait_for_workers(tmp_path, 2) == workers  # no worker was taken for an orphan
    assert "exited (" not in container.child.output
    stop(container)


def test_as_pid1_without_workers_orphans_go_and_subprocess_keeps_its_exit_status(
        pid1: Any) -> None:
    container, port = pid1(site_config(workers=0))
    assert fetch_many(port, "/orphan", 200, connections=2) == [200] * 200
    codes = [get(port, f"/exit?{n}")[1] for n in (0, 1, 7, 255)]
    assert codes == [b"0", b"1", b"7", b"255"]
    # A child the app waits for long after it exited: the reaper looked, and left it alone.
    assert get(port, "/late")[1] == b"3"
    no_zombies_left(container)
    stop(container)


def test_as_pid1_with_the_reaper_off_orphans_stay_zombies(pid1: Any, tmp_path: Path) -> None:
    container, port = pid1(site_config("engine.reaper.on = False"))
    wait_for_workers(tmp_path, 2)
    assert fetch_many(port, "/orphan", 20, connections=1) == [200] * 20
    wait_until(lambda: len(container.zombies()) == 20, 10, "20 zombies under PID 1")
    stop(container)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_as_pid1_exits_0_within_drain_delay_plus_shutdown_timeout(
        pid1: Any, tmp_path: Path, workers: int) -> None:
    container, port = pid1(site_config("engine.health.on = True",
                                       "engine.health.drain_delay = 1",
                                       "server.shutdown_timeout = 2", workers=workers))
    if workers:
        wait_for_workers(tmp_path, workers)
    fetch = KeepAlive()
    client = SteadyClient(port, "/orphan", fetch=fetch)
    client.start()
    try:
        client.more_answers(20)
        took = stop(container)
    finally:
        client.finish()
        fetch.close()
    # The drain delay, then a prompt stop: within drain_delay + shutdown_timeout, plus a few
    # seconds of slack for a loaded machine (the figure itself is measured, not asserted).
    assert 1 <= took < 1 + 2 + 3, f"took {took:.2f} s"
    assert "Bus EXITED" in container.child.output


@pytest.mark.parametrize("workers", [0, 2])
def test_sigint_as_pid1_stops_the_site(pid1: Any, tmp_path: Path, workers: int) -> None:
    container, port = pid1(site_config(workers=workers))
    assert get(port)[0] == 200
    stop(container, signal.SIGINT)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR2])
def test_sighup_and_sigusr2_as_pid1_restart_in_place(pid1: Any, tmp_path: Path,
                                                     signum: int) -> None:
    container, port = pid1(site_config())
    old = wait_for_workers(tmp_path, 2)
    for _ in range(2):
        seen = len(container.child.notify.messages)  # type: ignore[union-attr]
        container.signal(signum)
        assert tcp_port(ready_addresses(container.child, after=seen + 1)) == port
        old = wait_for_workers(tmp_path, 2, not_among=old)
        assert state_of(container.init) not in ("Z", "gone") and ns_pid(container.init) == 1
        assert get(port, "/exit?5")[1] == b"5"
    assert container.child.output.count("Re-spawning") == 2
    stop(container)


def test_a_killed_worker_as_pid1_is_noticed_and_replaced(pid1: Any, tmp_path: Path) -> None:
    container, port = pid1(site_config())
    first = wait_for_workers(tmp_path, 2)
    victim = min(first)
    os.kill(container.host_pid(victim), signal.SIGKILL)
    replaced = wait_for_workers(tmp_path, 2, not_among={victim})
    assert len(replaced - first) == 1
    container.child.wait_for_output(rf"Worker {victim} exited \(killed by SIGKILL\)")
    assert fetch_many(port, "/orphan", 50, connections=2) == [200] * 50
    no_zombies_left(container)
    stop(container)


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_rolling_reload_as_pid1_under_a_steady_client_fails_no_request(
        pid1: Any, tmp_path: Path, keep_alive: bool) -> None:
    container, port = pid1(site_config())
    current = wait_for_workers(tmp_path, 2)
    fetch = KeepAlive()
    client = SteadyClient(port, "/orphan", fetch=fetch if keep_alive else get)
    client.start()
    try:
        client.more_answers(10)
        for _ in range(3):
            seen = len(container.child.notify.messages)  # type: ignore[union-attr]
            container.signal(signal.SIGUSR1)
            container.child.notify.wait_for("RELOADING", "1", after=seen)  # type: ignore[union-attr]
            ready_addresses(container.child, after=seen + 1)
            current = wait_for_workers(tmp_path, 2, not_among=current)
            client.more_answers(10)
    finally:
        client.finish()
        fetch.close()
    print(f"{len(client.answers)} answers over {fetch.connections} connections, "
          f"{fetch.retried} sent again after an idle close")
    assert client.failures == []
    assert set(client.pids[-5:]) <= current
    no_zombies_left(container)
    stop(container)


def build_context(checkout: Path, into: Path, ignore_file: Path) -> None:
    """Copy ``checkout`` to ``into`` as docker would send it: without what the ignore file
    lists (``name`` at the root, ``**/name`` at any depth)."""
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(directory: str, names: list[str]) -> set[str]:
        at_root = Path(directory) == checkout
        return {name for name in names for pattern in patterns
                if fnmatch.fnmatch(name, pattern.removeprefix("**/"))
                and (at_root or pattern.startswith("**/"))}

    shutil.copytree(checkout, into, ignore=ignored)


@needs_pid_namespace
@pytest.mark.timeout(300)
def test_the_image_built_and_run_as_written_without_docker(spawn: Any, tmp_path: Path) -> None:
    """The Dockerfile's steps outside Docker: its build context, its virtualenv and pip
    install of the checkout (offline: the dependencies come from this machine's Python), then
    its CMD as PID 1 with its ENV, WORKDIR, site.conf and app (only the address changed to a
    loopback one), and its HEALTHCHECK, which follows the drain on STOPSIGNAL."""
    from tests.processes import ROOT
    from tests.test_container import DOCKER, one

    build_context(ROOT, tmp_path / "src", DOCKER / "Dockerfile.dockerignore")
    assert not (tmp_path / "src" / ".git").exists() and (tmp_path / "src" / "sitebus").is_dir()
    assert not (tmp_path / "src" / "tests").exists()
    venv = tmp_path / "opt" / "sitebus"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", str(tmp_path / "src")], check=True, timeout=240,
                   cwd=tmp_path, env=without_pythonpath())
    config = (DOCKER / "site.conf").read_text()
    for written, here in (('server.socket_host = "0.0.0.0"', 'server.socket_host = "127.0.0.1"'),
                          ("server.socket_port = 8080", "server.socket_port = 0")):
        assert written in config
        config = config.replace(written, here)
    (tmp_path / "site.conf").write_text(config)
    workdir = tmp_path / "srv" / "site"
    workdir.mkdir(parents=True)
    shutil.copy(DOCKER / "hello.py", workdir / "hello.py")
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": "",
           "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    assert one("ENV").startswith("PATH=/opt/sitebus/bin:$PATH PYTHONUNBUFFERED=1 "
                                 "PYTHONDONTWRITEBYTECODE=1")
    cmd = [str(tmp_path / "site.conf") if arg == "/etc/sitebus/site.conf" else arg
           for arg in json.loads(one("CMD"))]
    child = spawn([*UNSHARE_ARGV, *cmd], name="image", env=env, cwd=workdir)
    container = Container(child)
    try:
        port = tcp_port(ready_addresses(child))
        assert os.readlink(f"/proc/{container.init}/cwd") == str(workdir)
        with open(f"/proc/{container.init}/cmdline", "rb") as cmdline:
            assert str(venv / "bin" / "sitebus").encode() in cmdline.read()  # the console script
        healthcheck = json.loads(one("HEALTHCHECK").partition(" CMD ")[2])
        assert healthcheck[:2] == ["python", "/opt/sitebus/healthcheck.py"]
        shutil.copy(DOCKER / "healthcheck.py", venv / "healthcheck.py")  # the COPY
        check = [str(venv / "bin" / "python"), str(venv / "healthcheck.py"),
                 healthcheck[2].replace(":8080/", f":{port}/")]

        def run_healthcheck() -> subprocess.CompletedProcess[str]:
            return subprocess.run(check, capture_output=True, text=True, timeout=30,
                                  env=without_pythonpath())

        healthy = run_healthcheck()
        assert healthy.returncode == 0 and healthy.stdout.endswith(": 200\n"), healthy
        assert get(port)[1] == b"Hello from sitebus in a container\n"
        began = time.monotonic()
        container.signal(getattr(signal, one("STOPSIGNAL")))

        def unhealthy() -> subprocess.CompletedProcess[str] | None:
            result = run_healthcheck()
            return result if result.returncode == 1 else None

        draining: Any = wait_until(unhealthy, 10, "the health check to fail as the site drains")
        assert draining.stdout.endswith(": 503\n"), draining
        assert get(port)[1] == b"Hello from sitebus in a container\n"  # still serving
        assert container.wait(60) == 0
        took = time.monotonic() - began
        settings = {line.split("=")[0].strip(): line.split("=")[1].strip()
                    for line in config.splitlines() if "=" in line and not line.startswith("#")}
        drain = float(settings["engine.health.drain_delay"])
        assert drain <= took < drain + float(settings["server.shutdown_timeout"]), took
        assert "Reaping orphaned processes, as PID 1." in child.output
    finally:
        container.kill()


def without_pythonpath() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_engine_reaper_on_makes_an_ordinary_site_a_subreaper(spawn: Any, tmp_path: Path) -> None:
    """Not PID 1: with engine.reaper.on the orphans of the workers' children come to the
    master (a child subreaper), which reaps them."""
    write_orphan_app(tmp_path)
    child = run_site(spawn, tmp_path, site_config("engine.reaper.on = True"), "-p", "site.pid")
    port = tcp_port(ready_addresses(child))
    wait_for_workers(tmp_path, 2)
    assert "Reaping orphaned processes, as a child subreaper." in child.output
    lingering = int(get(port, "/linger")[1])
    try:
        assert lingering in children_of(child.pid)  # re-parented to the master, not to init
    finally:
        os.kill(lingering, signal.SIGKILL)
    assert fetch_many(port, "/orphan", 100, connections=2) == [200] * 100
    wait_until(lambda: not [p for p in children_of(child.pid) if state_of(p) == "Z"], 10,
               "the master to reap every orphan")
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0
