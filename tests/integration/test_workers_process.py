"""A real site with pre-fork workers: serving, replacing, recycling, reloading, stopping.

Every test runs ``sitebus run`` with workers through the spawn fixture and synchronises on
what the site says: READY=1 on its notify socket, its status file (which lists the workers),
lines of its output. ``recorder`` (autouse, so set up before ``spawn`` and torn down after it)
records every worker and fails the test if one outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from sitebus.workers.supervision import CRASH_LIMIT
from tests.integration.sites import (
    ClientCrowd,
    SteadyClient,
    get,
    get_unix,
    ready_addresses,
    reloaded,
    sitebus,
)
from tests.integration.worker_sites import (
    PLUGIN_APP,
    WorkerRecorder,
    recorder_fixture,  # noqa: F401 (the fixture recorder, autouse)
    serving,
    site_config,
    start_site,
    wait_for_workers,
)
from tests.processes import python, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def get_or_error(port: int, path: str, outcome: list[Any]) -> None:
    """GET ``path``; append the status, or the error that ended the request."""
    try:
        outcome.append(get(port, path, timeout=60)[0])
    except OSError as error:
        outcome.append(error)


def stop(child: Any) -> None:
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0


def test_two_workers_serve_and_status_lists_them(spawn: Any, recorder: WorkerRecorder,
                                                 tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    pids = wait_for_workers(tmp_path, 2)
    answered: set[int] = set()

    def one_round() -> bool:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(serving(port, "/slow")[0]))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        answered.update(results)
        return answered == pids

    wait_until(one_round, 60, f"both workers {pids} to answer (so far {answered})")
    assert child.pid not in answered
    status = sitebus("status", "-p", "site.pid", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "workers:   2 (target 2)" in status.stdout
    for pid in pids:
        assert f"pid {pid}  age " in status.stdout
    assert status.stdout.count("MiB  requests ") == 2 and status.stdout.count(" ready") == 2
    stop(child)


def test_a_worker_killed_under_load_is_replaced(spawn: Any, recorder: WorkerRecorder,
                                                tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    first = wait_for_workers(tmp_path, 2)
    clients = [SteadyClient(port) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: all(len(c.answers) > 5 for c in clients), 30, "the clients to run")
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for_workers(tmp_path, 2, not_among={victim})
        (new,) = replaced - first
        served = sum(len(c.answers) for c in clients)
        wait_until(lambda: sum(len(c.answers) for c in clients) > served + 20, 30,
                   "requests after the replacement")
    finally:
        for client in clients:
            client.finish()
    errors = [e for c in clients for e in c.failures]
    assert len(errors) <= len(clients), errors  # at most the requests the victim had accepted
    assert f"Worker {victim} exited (killed by SIGKILL)" in child.output
    stop(child)


def test_a_hung_handler_gets_its_worker_replaced(spawn: Any, recorder: WorkerRecorder,
                                                 tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "server.worker_timeout = 2",
                             "server.shutdown_timeout = 1")
    before = wait_for_workers(tmp_path, 2)
    outcome: list[Any] = []
    spinner = threading.Thread(target=get_or_error, args=(port, "/spin", outcome), daemon=True)
    spinner.start()
    hung = int(child.wait_for_output(r"spinning in (\d+)").group(1))
    assert hung in before
    child.wait_for_output(rf"Replacing worker {hung}: a request has been running for \d+ s "
                          r"\(server.worker_timeout = 2\)", timeout=30)
    assert serving(port)[0] != 0  # the site answers meanwhile
    wait_for_workers(tmp_path, 2, not_among={hung})
    # Its stop is bounded by shutdown_timeout: the request is cut and the worker exits by
    # itself, or, when the spinning handler starves it of the GIL on a loaded machine, the
    # master kills it shutdown_timeout plus a grace after asking it to stop.
    child.wait_for_output(rf"Worker {hung} exited \((exit status 0|killed by SIGKILL)\)",
                          timeout=30)
    spinner.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)  # its connection was closed
    stop(child)


def test_max_requests_recycles_a_worker_without_failing_a_request(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "server.max_requests = 5", workers=1)
    (first,) = wait_for_workers(tmp_path, 1)
    pids: list[int] = []

    def replaced() -> bool:
        pids.append(serving(port)[0])  # raises on any failed request
        return pids[-1] != first

    wait_until(replaced, 60, "a new worker to answer")
    child.wait_for_output(rf"Replacing worker {first}: it served 5 requests")
    assert pids.count(first) >= 5
    wait_for_workers(tmp_path, 1, not_among={first})
    stop(child)


def test_max_rss_recycles_a_worker(spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, _port = start_site(spawn, recorder, tmp_path, "server.max_rss = 1",
                              "server.worker_timeout = 2", workers=1)
    first = int(child.wait_for_output(r"Worker (\d+) is ready").group(1))
    child.wait_for_output(rf"Replacing worker {first}: its memory reached \d+ MiB")
    child.wait_for_output(rf"Worker {first} exited \(exit status 0\)")
    stop(child)


def test_a_rolling_reload_under_a_steady_client_fails_no_request(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    current = wait_for_workers(tmp_path, 2)
    client = SteadyClient(port)
    crowd = ClientCrowd(port, clients=4)  # and clients that keep their connections
    client.start()
    crowd.start()
    in_flight: list[Any] = []
    slow = threading.Thread(target=get_or_error, args=(port, "/slow?2", in_flight))
    slow.start()
    child.wait_for_output("in handler")  # an old worker has it when the reloads begin
    try:
        for reload in range(3):
            seen = len(child.notify.messages)
            if reload == 1:
                result = sitebus("reload", "-p", "site.pid", cwd=tmp_path)
                assert result.returncode == 0, result.stderr
            else:
                child.send_signal(signal.SIGUSR1)
            child.notify.wait_for("RELOADING", "1", after=seen)
            ready_addresses(child, after=seen + 1)
            current = wait_for_workers(tmp_path, 2, not_among=current)
            client.more_answers(10)
            crowd.more_answers(10)
    finally:
        client.finish()
        crowd.finish()
        slow.join(60)
    assert client.failures == []
    assert crowd.failures == []
    assert in_flight == [200]
    assert set(client.pids[-5:]) <= current
    stop(child)


def test_a_negative_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    result = sitebus("run", "-w", "-1", cwd=tmp_path)
    assert result.returncode == 64
    assert "argument -w/--workers: expected a number of workers, 0 or more, got '-1'" \
        in result.stderr


def test_sigterm_under_load_loses_no_accepted_request(spawn: Any, recorder: WorkerRecorder,
                                                      tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "server.thread_pool = 4",
                             "server.shutdown_timeout = 20")
    wait_for_workers(tmp_path, 2)
    outcome: list[Any] = []
    threads = [threading.Thread(target=get_or_error, args=(port, f"/slow?1.{n}", outcome))
               for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: child.output.count("in handler") >= 8, 60, "8 requests in handlers")
    child.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert outcome == [200] * 8
    assert child.wait(60) == 0


def test_sigkill_of_the_master_leaves_no_worker(spawn: Any, recorder: WorkerRecorder,
                                                tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "server.shutdown_timeout = 1")
    pids = wait_for_workers(tmp_path, 2)
    # One worker has a handler that never returns: a graceful stop would wait for it forever.
    spinner = threading.Thread(target=get_or_error, args=(port, "/spin", []), daemon=True)
    spinner.start()
    child.wait_for_output("spinning in")
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    wait_until(lambda: not recorder.alive(), 30, f"workers {pids} to exit after their master")


def test_workers_that_cannot_import_the_app_stop_the_site_with_78(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    (tmp_path / "site.conf").write_text(site_config().replace("workers_app:app",
                                                              "no_such_module:app"))
    child = recorder.watch(spawn(python("-m", "sitebus", "run", "-c", "site.conf")))
    assert child.wait(60) == 78
    assert ("sitebus: error: tree.app: cannot import module 'no_such_module': "
            "ModuleNotFoundError: No module named 'no_such_module'") in child.output
    assert child.output.count("could not start") == CRASH_LIMIT  # no fork loop


def test_a_reload_of_broken_code_keeps_the_old_workers_serving(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    old = wait_for_workers(tmp_path, 2)
    app = tmp_path / "workers_app.py"
    app.write_text(app.read_text().replace("VERSION = 1", "VERSION = undefined_name"))
    result = sitebus("reload", "-p", "site.pid", cwd=tmp_path)
    assert result.returncode == 70
    assert "was called off" in result.stderr and "undefined_name" in result.stderr
    for _ in range(5):
        pid, version = serving(port)
        assert pid in old and version == 1
    status = sitebus("status", "-p", "site.pid", cwd=tmp_path)
    assert ("reload:    called off: tree.app: cannot import module 'workers_app': NameError: "
            "name 'undefined_name' is not defined") in status.stdout
    app.write_text(app.read_text().replace("VERSION = undefined_name", "VERSION = 2000"))
    result = sitebus("reload", "-p", "site.pid", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    new = wait_for_workers(tmp_path, 2, not_among=old)
    pid, version = serving(port)
    assert pid in new and version == 2000
    stop(child)


def test_autoreload_forks_fresh_workers_and_keeps_the_master(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "engine.autoreload.on = True", workers=1)
    (first,) = wait_for_workers(tmp_path, 1)
    app = tmp_path / "workers_app.py"
    child.wait_for_output(r"Autoreloader watching \d+ more files, imported by the workers")
    app.write_text(app.read_text().replace("VERSION = 1", "VERSION = 22"))
    wait_until(lambda: serving(port)[1] == 22, 30, "the new code to answer")
    assert "Reloading the workers because" in child.output and "Re-spawning" not in child.output
    app.write_text(app.read_text().replace("VERSION = 22", "VERSION = ("))
    child.wait_for_output(r"Not restarting: syntax error in .*workers_app\.py")
    app.write_text(app.read_text().replace("VERSION = (", "VERSION = undefined_name"))
    child.wait_for_output("Reload called off; the workers that served keep serving: tree.app: "
                          "cannot import module 'workers_app': NameError")
    assert serving(port)[1] == 22
    assert child.pid == int((tmp_path / "site.pid").read_text())
    stop(child)


def test_sigttin_and_sigttou_add_and_remove_a_worker(spawn: Any, recorder: WorkerRecorder,
                                                     tmp_path: Path) -> None:
    child, _port = start_site(spawn, recorder, tmp_path, workers=1)
    (first,) = wait_for_workers(tmp_path, 1)
    child.send_signal(signal.SIGTTIN)
    both = wait_for_workers(tmp_path, 2)
    assert first in both
    child.send_signal(signal.SIGTTOU)
    (left,) = wait_for_workers(tmp_path, 1)
    assert left in both
    stop(child)


def test_a_unix_socket_file_survives_worker_restarts(spawn: Any, recorder: WorkerRecorder,
                                                     tmp_path: Path) -> None:
    sock = tmp_path / "site.sock"
    child, _port = start_site(spawn, recorder, tmp_path, f"server.unix.socket_file = '{sock}'")
    pids = wait_for_workers(tmp_path, 2)
    os.kill(min(pids), signal.SIGKILL)
    pids = wait_for_workers(tmp_path, 2, not_among={min(pids)})
    seen = len(child.notify.messages)
    child.send_signal(signal.SIGUSR1)
    ready_addresses(child, after=seen + 1)
    wait_for_workers(tmp_path, 2, not_among=pids)
    assert get_unix(str(sock))[0] == 200
    stop(child)
    assert not sock.exists()


def test_a_restart_with_workers_refuses_no_connection(spawn: Any, recorder: WorkerRecorder,
                                                      tmp_path: Path) -> None:
    child, port = start_site(spawn, recorder, tmp_path)
    client = SteadyClient(port)
    crowd = ClientCrowd(port, clients=4)  # and clients that keep their connections
    client.start()
    crowd.start()
    try:
        for _restart in range(2):
            reloaded(child, signal.SIGUSR2)
            client.more_answers(10)
            crowd.more_answers(10)
    finally:
        client.finish()
        crowd.finish()
    assert client.failures == []
    assert crowd.failures == []
    assert child.pid == int((tmp_path / "site.pid").read_text())
    stop(child)


@pytest.mark.parametrize("preload", [False, True])
def test_app_plugins_run_in_each_worker_not_in_the_master(
        spawn: Any, recorder: WorkerRecorder, tmp_path: Path, preload: bool) -> None:
    child, _port = start_site(spawn, recorder, tmp_path, f"server.preload = {preload}",
                              app=PLUGIN_APP)
    pids = wait_for_workers(tmp_path, 2)
    stop(child)
    entries = (tmp_path / "pool.log").read_text().splitlines()
    assert sorted(entries) == sorted([f"start {pid}" for pid in pids]
                                     + [f"stop {pid}" for pid in pids])


def test_health_with_workers_answers_503_while_the_master_drains(
    spawn: Any, recorder: WorkerRecorder, tmp_path: Path
) -> None:
    child, port = start_site(spawn, recorder, tmp_path, "engine.health.on = True",
                             "engine.health.drain_delay = 8")
    pids = wait_for_workers(tmp_path, 2)
    status, body, _headers = get(port, "/health")
    assert status == 200 and json.loads(body)["pid"] in pids  # a worker answers, not the master
    child.send_signal(signal.SIGTERM)

    def probe_says_503() -> bool:
        return get(port, "/health")[0] == 503

    wait_until(probe_says_503, 8, "the workers' health endpoint to answer 503")
    assert get(port, "/")[0] == 200  # still serving while the balancer takes it out
    assert child.wait(60) == 0
