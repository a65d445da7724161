"""The bus in real processes: block, signals, exit codes, the atexit warning, re-execution."""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.processes import python

CHILD = Path(__file__).with_name("bus_child.py")

pytestmark = pytest.mark.timeout(60)


def generations(workdir: Path) -> list[dict[str, str]]:
    lines = (workdir / "generations.txt").read_text().splitlines()
    return [dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", line)) for line in lines]


@pytest.fixture
def child_script(tmp_path: Path) -> Path:
    target = tmp_path / "bus_child.py"
    shutil.copy(CHILD, target)
    return target


def test_sigterm_stops_a_blocked_bus_with_exit_0(spawn: Any, child_script: Path) -> None:
    child = spawn(python(str(child_script), "block"))
    child.notify.wait_for("READY", "1")
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    out = child.output
    assert "ENGINE Caught signal SIGTERM." in out
    assert out.index("Bus STOPPING") < out.index("Bus EXITING") < out.index("exit listener ran")
    assert "block returned in generation 0" in out
    assert re.search(r"^\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] ENGINE Bus STARTED$", out, re.M)


def test_ctrl_c_interrupts_block_at_once(spawn: Any, child_script: Path) -> None:
    child = spawn(python(str(child_script), "block"))
    child.notify.wait_for("READY", "1")
    child.send_signal(signal.SIGINT)
    assert child.wait() == 0
    assert "Keyboard Interrupt: shutting down bus" in child.output
    assert "exit listener ran" in child.output


def test_sigusr1_is_graceful_and_the_bus_keeps_running(spawn: Any, child_script: Path) -> None:
    child = spawn(python(str(child_script), "block"))
    child.notify.wait_for("READY", "1")
    child.send_signal(signal.SIGUSR1)
    child.notify.wait_for("GRACEFUL", "1")
    assert child.popen.poll() is None
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert "Bus graceful" in child.output


def test_failed_start_ends_the_process_with_70(spawn: Any, child_script: Path) -> None:
    child = spawn(python(str(child_script), "failstart"))
    assert child.wait() == 70
    out = child.output
    assert "Shutting down due to error in start listener:" in out
    assert "address already in use (on purpose)" in out
    assert "exit listener ran" in out  # nothing left half running
    assert "Traceback" in out  # the uncaught error is still shown


def test_failed_exit_ends_the_process_with_70(spawn: Any, child_script: Path) -> None:
    child = spawn(python(str(child_script), "failexit"))
    child.notify.wait_for("READY", "1")
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 70
    assert "exit listener failed (on purpose)" in child.output


def test_main_thread_ending_without_block_warns_and_exits_the_bus(
    spawn: Any, child_script: Path
) -> None:
    child = spawn(python(str(child_script), "noblock"))
    assert child.wait() == 0
    out = child.output
    assert "main thread ended with the bus STARTED: exiting the bus now" in out
    assert out.index("main thread returning") < out.index("exit listener ran")


def test_a_stopped_bus_is_exited_quietly_when_the_main_thread_ends(
    spawn: Any, child_script: Path
) -> None:
    child = spawn(python(str(child_script), "stopped"))
    assert child.wait() == 0
    out = child.output
    assert out.index("main thread returning") < out.index("exit listener ran")
    assert "Warning" not in out and "main thread ended" not in out


def _check_restart(child: Any, workdir: Path) -> None:
    first = child.notify.wait_for("GENERATION", "0")
    child.notify.wait_for("GENERATION", "1", after=child.notify.messages.index(first) + 1)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    gens = generations(workdir)
    assert [g["gen"] for g in gens] == ["0", "1"]
    assert gens[0]["pid"] == gens[1]["pid"] == str(child.pid)
    assert gens[1]["cwd"] == str(workdir)  # back in the start-up directory
    assert gens[1]["fds"] == gens[0]["fds"]  # the stray descriptor was not inherited
    assert "Re-spawning" in child.output


def test_restart_reexecutes_a_script_in_place(
    spawn: Any, child_script: Path, tmp_path: Path
) -> None:
    child = spawn(python("bus_child.py", "restart"))
    _check_restart(child, tmp_path)


def test_restart_reexecutes_python_dash_m(spawn: Any, tmp_path: Path) -> None:
    package = tmp_path / "childpkg"
    package.mkdir()
    shutil.copy(CHILD, package / "__main__.py")
    (package / "__init__.py").write_text("")
    child = spawn(python("-m", "childpkg", "restart"))
    _check_restart(child, tmp_path)


def test_restart_reexecutes_a_console_script(spawn: Any, tmp_path: Path) -> None:
    # What pip writes for an entry point: a file whose shebang names the interpreter.
    shutil.copy(CHILD, tmp_path / "bus_child.py")
    script = tmp_path / "bin" / "bus-child"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
        "from bus_child import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    child = spawn([str(script), "restart"])
    _check_restart(child, tmp_path)


def test_sighup_without_a_terminal_restarts(spawn: Any, child_script: Path, tmp_path: Path) -> None:
    child = spawn(python(str(child_script), "block"))
    child.notify.wait_for("GENERATION", "0")
    child.send_signal(signal.SIGHUP)
    child.notify.wait_for("GENERATION", "1")
    assert "SIGHUP caught with no terminal attached. Restarting." in child.output
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert [g["pid"] for g in generations(tmp_path)] == [str(child.pid)] * 2


def test_sighup_on_a_terminal_exits(spawn: Any, child_script: Path, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        child = spawn(python(str(child_script), "block"), stdin=terminal)
        child.notify.wait_for("READY", "1")
        child.send_signal(signal.SIGHUP)
        assert child.wait() == 0
    finally:
        os.close(controller)
        os.close(terminal)
    assert "SIGHUP caught on a terminal. Exiting." in child.output
    assert len(generations(tmp_path)) == 1
