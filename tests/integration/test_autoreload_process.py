"""The Autoreloader in real processes: edits, saves by rename, bursts, syntax errors, deletions.

The child (autoreload_child.py) imports ``watched_mod`` from its directory and reports each
generation with its ``VALUE``. Exactly one restart per save is shown without waiting for
something not to happen: the first READY after a save comes from generation 1 and carries the
value of the save's last write. A second restart would need events that reach generation 1,
and it started watching only after it had read the finished file.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import python

CHILD = Path(__file__).with_name("autoreload_child.py")

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    shutil.copy(CHILD, tmp_path / "autoreload_child.py")
    (tmp_path / "watched_mod.py").write_text("VALUE = 1\n")
    return tmp_path


def start(spawn: Any, *args: str) -> Any:
    child = spawn(python("autoreload_child.py", *args))
    ready = child.notify.wait_for("GENERATION", "0")
    assert ready["VALUE"] == "1"
    return child


def next_generation(child: Any) -> dict[str, str]:
    """Return the first READY after generation 0's."""
    first = child.notify.wait_for("GENERATION", "0")
    return child.notify.wait_for("READY", "1", after=child.notify.messages.index(first) + 1)


def finish(child: Any, site: Path, generations: int) -> str:
    """Stop the child; check how many generations ran; return its output."""
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    lines = (site / "generations.txt").read_text().splitlines()
    assert [re.match(r"gen=(\d+)", line)[1] for line in lines] == [  # type: ignore[index]
        str(n) for n in range(generations)
    ]
    assert len({re.search(r"pid=(\d+)", line)[1] for line in lines}) == 1  # type: ignore[index]
    out: str = child.output
    assert out.count("Restarting because") == generations - 1
    return out


def test_editing_a_module_in_place_restarts_once(spawn: Any, site: Path) -> None:
    child = start(spawn)
    (site / "watched_mod.py").write_text("VALUE = 2\n")  # same length: stale bytecode must not win
    assert next_generation(child) == {"READY": "1", "GENERATION": "1", "VALUE": "2"}
    out = finish(child, site, 2)
    assert f"Restarting because {site / 'watched_mod.py'} changed." in out


def test_saving_by_rename_restarts_once(spawn: Any, site: Path) -> None:
    child = start(spawn)
    temporary = site / ".watched_mod.py.swp"
    temporary.write_text("VALUE = 3\n")
    os.replace(temporary, site / "watched_mod.py")
    ready = next_generation(child)
    assert (ready["GENERATION"], ready["VALUE"]) == ("1", "3")
    finish(child, site, 2)


def test_an_editor_save_with_backup_and_chmod_restarts_once(spawn: Any, site: Path) -> None:
    # vim's default: rename the original to a backup, write a new file, copy the mode, fsync.
    child = start(spawn)
    module = site / "watched_mod.py"
    os.replace(module, site / "watched_mod.py~")
    with open(module, "w") as new:
        new.write("VALUE = 4\n")
        new.flush()
        os.fsync(new.fileno())
    os.chmod(module, 0o644)
    (site / "watched_mod.py~").unlink()
    ready = next_generation(child)
    assert (ready["GENERATION"], ready["VALUE"]) == ("1", "4")
    finish(child, site, 2)


def test_a_burst_of_writes_restarts_once(spawn: Any, site: Path) -> None:
    child = start(spawn)
    with open(site / "watched_mod.py", "w") as module:  # truncates
        for piece in ("VALUE", " = ", "12", "34", "\n"):
            module.write(piece)
            module.flush()
            os.fsync(module.fileno())
    ready = next_generation(child)
    assert (ready["GENERATION"], ready["VALUE"]) == ("1", "1234")
    out = finish(child, site, 2)
    assert "syntax error" not in out


def test_a_syntax_error_is_logged_and_the_site_keeps_running(spawn: Any, site: Path) -> None:
    child = start(spawn)
    module = site / "watched_mod.py"
    module.write_text("VALUE = (\n")
    child.wait_for_output(
        rf"ENGINE Not restarting: syntax error in {re.escape(str(module))}, line 1: "
        r"'\(' was never closed")
    child.send_signal(signal.SIGUSR1)  # the running bus still answers
    child.notify.wait_for("GRACEFUL", "1")
    assert "READY=1" not in str(child.notify.messages[1:])
    module.write_text("VALUE = 5\n")  # fixed: the next save is tried again
    ready = next_generation(child)
    assert (ready["GENERATION"], ready["VALUE"]) == ("1", "5")
    out = finish(child, site, 2)
    assert out.count("Not restarting: syntax error") == 1


def test_a_file_added_to_files_triggers(spawn: Any, site: Path) -> None:
    conf = site / "site.conf"
    conf.write_text("[global]\n")
    child = start(spawn, "--file", "site.conf")  # relative: against the start-up directory
    conf.write_text("[global]\nserver.socket_port = 8081\n")
    assert next_generation(child)["GENERATION"] == "1"
    out = finish(child, site, 2)
    assert f"Restarting because {conf} changed." in out


def test_deleting_a_watched_file_triggers(spawn: Any, site: Path) -> None:
    extra = site / "extra.txt"
    extra.write_text("data")
    child = start(spawn, "--file", str(extra))
    extra.unlink()
    assert next_generation(child)["GENERATION"] == "1"
    out = finish(child, site, 2)
    assert f"Restarting because {extra} changed." in out


def test_a_module_imported_lazily_from_a_new_directory_is_watched(
    spawn: Any, site: Path
) -> None:
    package = site / "lazypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("VALUE = 1\n")
    child = start(spawn)
    child.send_signal(signal.SIGUSR2)
    child.notify.wait_for("LAZY", "1")
    child.wait_for_output(rf"Autoreloader watching {re.escape(str(package / 'mod.py'))}\.$")
    (package / "mod.py").write_text("VALUE = 2\n")
    assert next_generation(child)["GENERATION"] == "1"
    finish(child, site, 2)


def test_the_polling_watcher_works_where_events_do_not(spawn: Any, site: Path) -> None:
    child = start(spawn, "--watcher", "polling", "--frequency", "0.1")
    assert "(polling)" in child.output
    (site / "watched_mod.py").write_text("VALUE = 6\n")
    ready = next_generation(child)
    assert (ready["GENERATION"], ready["VALUE"]) == ("1", "6")
    finish(child, site, 2)


def context_switches(pid: int) -> int:
    """Return the context switches of every thread of ``pid`` so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as status:
            for line in status:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def test_idle_makes_no_wakeups(spawn: Any, site: Path) -> None:
    child = start(spawn)
    assert "(inotify)" in child.output
    # A measurement, not a synchronisation: first let start-up end (bytecode writes, late
    # imports), until two looks half a second apart agree, then count over a window.
    deadline = time.monotonic() + 15
    previous = context_switches(child.pid)
    while True:
        time.sleep(0.5)
        now = context_switches(child.pid)
        if now == previous:
            break
        assert time.monotonic() < deadline, "the child never went idle"
        previous = now
    window = 3.0
    time.sleep(window)
    switches = context_switches(child.pid) - now
    assert switches <= 2, f"{switches} context switches in {window} s of idling"
    finish(child, site, 1)
