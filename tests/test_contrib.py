"""contrib/: the systemd units pass systemd-analyze verify; the supervisord section parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
COMMAND = "/usr/bin/env sitebus run -e production"
INSTALLED = "/opt/sitebus/bin/sitebus"  # supervisord's section names the venv's program
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed "
                                   "(Debian package systemd)")


def verify(directory: Path, units: list[str]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", "--man=no", *[f"./{u}" for u in units]],
                          cwd=directory, capture_output=True, text=True, timeout=60)


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as shipped (a template is verified as an instance)."""
    for unit in (CONTRIB / "systemd").glob("*.s*"):
        (tmp_path / unit.name.replace("@.", "@demo.")).write_text(unit.read_text())
    return tmp_path


@needs_analyze
def test_systemd_units_pass_systemd_analyze_verify_as_shipped(units: Path) -> None:
    names = ["sitebus.service", "sitebus.socket", "sitebus@demo.service"]
    assert sorted(p.name for p in units.glob("sitebus*")) == sorted(names)
    result = verify(units, names)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


@needs_analyze
def test_systemd_analyze_verify_would_catch_a_mistake(units: Path) -> None:
    unit = units / "sitebus.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = verify(units, ["sitebus.service"])
    assert "Unknown key" in result.stderr and "NoNewPrivilege" in result.stderr


def test_units_run_sitebus_in_the_foreground_with_notify() -> None:
    for name in ("sitebus.service", "sitebus@.service"):
        text = (CONTRIB / "systemd" / name).read_text()
        assert "\nType=notify\n" in text
        assert "\nWatchdogSec=" in text and "\nFileDescriptorStoreMax=" in text
        # SIGTERM to the master only, so its workers serve on through the drain delay.
        assert "\nKillMode=mixed\n" in text
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert exec_start.startswith(f"ExecStart={COMMAND} -c /etc/sitebus/")  # production
        assert " -d" not in exec_start
        assert "\nEnvironment=PATH=/opt/sitebus/bin:" in text  # the virtualenv's sitebus first
    assert "/etc/sitebus/%i.conf" in (CONTRIB / "systemd" / "sitebus@.service").read_text()


def test_supervisor_program_section_parses_as_written(tmp_path: Path) -> None:
    options_module = pytest.importorskip("supervisor.options")
    section = (CONTRIB / "supervisor" / "sitebus.conf").read_text()
    assert "stdout_logfile=/var/log/sitebus/site.log" in section
    program_file = tmp_path / "sitebus.conf"  # the log directory of this machine's choosing
    program_file.write_text(section.replace("/var/log/sitebus", str(tmp_path)))
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\n"
        f"[include]\nfiles={program_file}\n"
    )
    options = options_module.ServerOptions()
    options.realize(args=["-c", str(config)])
    [group] = options.process_group_configs
    [program] = group.process_configs
    assert program.name == "sitebus"
    assert program.command == f"{INSTALLED} run -e production -c /etc/sitebus/site.conf"
    assert program.stopsignal == 15
    assert program.stopwaitsecs >= 30
    # SIGTERM to the master alone (it stops its workers after draining); SIGKILL to them all.
    assert not program.stopasgroup and program.killasgroup
    assert program.exitcodes == [0]
    assert program.redirect_stderr
