"""Fixtures shared by every test; ``spawn`` is the one way to start a real process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitebus.bus import Bus, states
from tests.processes import Child, child_env


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def spawn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Start real processes in ``tmp_path``; reap every one of them at teardown.

    ``spawn(argv, env=None, name='child', stdin=None, pass_fds=(), new_session=False,
    notify=True)`` returns a Child. On failure, each child's argv, exit code and log are
    printed.
    """
    children: list[Child] = []

    def _spawn(
        argv: list[str],
        env: dict[str, str] | None = None,
        name: str | None = None,
        stdin: int | None = None,
        pass_fds: tuple[int, ...] = (),
        new_session: bool = False,
        notify: bool = True,
        cwd: Path | None = None,
    ) -> Child:
        child = Child(
            argv,
            cwd or tmp_path,
            child_env(env),
            name or f"child{len(children)}",
            stdin,
            pass_fds,
            new_session,
            notify,
        )
        children.append(child)
        return child

    yield _spawn
    for child in children:
        child.reap()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for child in children:
            print(child.describe())


@pytest.fixture
def bus() -> Iterator[Bus]:
    """A bus of the test's own, exited at teardown if the test left it running."""
    b = Bus()
    yield b
    if b.state is not states.EXITING:
        b.exit()


@pytest.fixture
def write_script(tmp_path: Path) -> Any:
    """Write a Python file in the test's directory and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_inherited_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("LISTEN_") or key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            monkeypatch.delenv(key)
