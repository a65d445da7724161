"""contrib/docker/Dockerfile built and run by a real Docker daemon, where one answers.

Skipped unless ``docker info`` answers (``DOCKER_HOST`` may name the daemon) and the base image
(``python:3.11-slim``: the Dockerfile's PYTHON_VERSION argument set to Debian 12's Python) is
there or can be pulled; where no registry can be reached,
``docker_base_image.sh`` beside this file makes a stand-in from Debian's packages. The build
context is the checkout trimmed as ``Dockerfile.dockerignore`` says; the build uses the host's
network (pip fetches the dependencies), the container none at all (--network none): every
request is made from inside it with ``docker exec``, as the HEALTHCHECK is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.test_container_process import build_context
from tests.processes import ROOT, wait_until
from tests.test_container import DOCKER as CONTRIB_DOCKER
from tests.test_container import site_settings

DOCKER = shutil.which("docker")
PYTHON_VERSION = "3.11"  # what docker_base_image.sh makes from Debian 12
BASE = f"python:{PYTHON_VERSION}-slim"

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def docker(*args: str, timeout: float = 120, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert DOCKER is not None
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          check=check, env=env)


def _daemon_and_base() -> str | None:
    """Return why the image cannot be built here, or None when it can."""
    if DOCKER is None:
        return "no docker client"
    try:
        if docker("info", timeout=20, check=False).returncode != 0:
            return "no Docker daemon answers (docker info)"
        if docker("image", "inspect", BASE, check=False).returncode != 0 and \
                docker("pull", BASE, timeout=180, check=False).returncode != 0:
            return f"no {BASE} image, and it cannot be pulled (see docker_base_image.sh)"
    except subprocess.TimeoutExpired:
        return "docker did not answer in time"
    return None


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Build the Dockerfile; yield the image's tag; remove it afterwards."""
    why = _daemon_and_base()
    if why is not None:
        pytest.skip(why)
    context = tmp_path_factory.mktemp("image") / "context"
    build_context(ROOT, context, CONTRIB_DOCKER / "Dockerfile.dockerignore")
    tag = f"sitebus-test-{uuid.uuid4().hex[:12]}"
    # The classic builder: it takes a local base image as it is (BuildKit needs buildx).
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    built = docker("build", "--network", "host", "--build-arg", f"PYTHON_VERSION={PYTHON_VERSION}",
                   "-f", "contrib/docker/Dockerfile", "-t", tag, str(context), timeout=480,
                   check=False, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """Run the image (no network; health checked every second); remove it afterwards."""
    name = f"sitebus-test-{uuid.uuid4().hex[:12]}"
    docker("run", "-d", "--name", name, "--network", "none", "--health-interval", "1s",
           image)
    yield name
    docker("rm", "-f", name, check=False)


def inspect(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(docker("inspect", name).stdout)[0]


def in_container(name: str, *argv: str) -> str:
    return docker("exec", name, *argv).stdout


def zombies(name: str) -> list[str]:
    # cat fails on a process that ends between the glob and the read: what it read is enough.
    states = in_container(name, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null || true")
    return [line for line in states.splitlines() if line.rsplit(")", 1)[1].split()[0] == "Z"]


def test_the_image_serves_as_pid1_reaps_and_stops_with_0(container: str) -> None:
    wait_until(lambda: inspect(container)["State"]["Health"]["Status"] == "healthy", 60,
               "the HEALTHCHECK to pass")
    fetch = ("import urllib.request as u; "
             "print(u.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode(), end='')")
    assert in_container(container, "python", "-c", fetch) == "Hello from sitebus in a container\n"
    assert in_container(container, "id", "-u").strip() == "10001"
    assert "sitebus" in in_container(container, "cat", "/proc/1/cmdline")
    # 50 orphans: each subshell exits at once, leaving its sleep to PID 1.
    in_container(container, "sh", "-c", "for i in $(seq 50); do (sleep 0.05 &); done")
    wait_until(lambda: not zombies(container), 10, "PID 1 to reap the orphans")
    settings = site_settings()
    budget = settings["engine.health.drain_delay"] + settings["server.shutdown_timeout"]
    began = time.monotonic()
    docker("stop", "-t", "60", container, timeout=90)
    took = time.monotonic() - began
    state = inspect(container)["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"]
    assert settings["engine.health.drain_delay"] <= took < budget, took
    logs = docker("logs", container)
    assert "Reaping orphaned processes, as PID 1." in logs.stderr + logs.stdout
    assert '"GET / HTTP/1.1" 200' in logs.stdout  # the access log, on stdout
    assert "Bus EXITED" in logs.stderr
