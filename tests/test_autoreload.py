"""The Autoreloader's decisions (tables) and the plugin in this process on a real Bus.

In this process a restart is only asked of the main thread (``call_in_main_thread``), which
pytest never hands to ``block()``; these tests watch for the ``Restarting because`` line. The
restarts themselves are tested in real processes (tests/integration/test_autoreload_process.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
import zipimport
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sitebus.bus import Bus
from sitebus.errors import ConfigError, UnavailableError
from sitebus.reload.autoreload import Autoreloader, check_settings, settle_delay, syntax_error
from sitebus.reload.watchers import choose_watcher, unavailable_reason, watchers
from sitebus.reload.watchlist import ImportNotifier, WatchedFiles, module_files, source_path

pytestmark = pytest.mark.timeout(60)

BASE = "/srv/site"


# -- which files ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("/srv/app/mod.py", "/srv/app/mod.py"),
        ("app/mod.py", "/srv/site/app/mod.py"),  # relative: against the start-up directory
        ("./app/../mod.py", "/srv/site/mod.py"),
        ("/srv/app/mod.pyc", "/srv/app/mod.py"),  # a sourceless module's legacy .pyc
        ("/srv/app/__pycache__/mod.cpython-311.pyc", "/srv/app/mod.py"),
        ("/srv/app/__pycache__/odd.pyc", "/srv/app/__pycache__/odd.py"),  # not PEP 3147
        ("/srv/app/ext.abi3.so", "/srv/app/ext.abi3.so"),
    ],
)
def test_source_path(filename: str, expected: str) -> None:
    assert source_path(filename, BASE) == expected


class LazyModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise ImportError(f"lazy {name} failed")


def fake_modules() -> dict[str, Any]:
    archive = zipimport.zipimporter.__new__(zipimport.zipimporter)
    archive.archive = "/srv/libs.zip"  # type: ignore[misc]
    return {
        "app": types.SimpleNamespace(__file__="/srv/app/__init__.py"),
        "app.views": types.SimpleNamespace(__file__="app/views.py"),
        "app.compiled": types.SimpleNamespace(__file__="/srv/app/compiled.pyc"),
        "zipped": types.SimpleNamespace(__file__="/srv/libs.zip/zipped.py", __loader__=archive),
        "cherrypy": types.SimpleNamespace(__file__="/usr/lib/cherrypy/__init__.py"),
        "sys": types.SimpleNamespace(),  # built in: no file
        "namespace": types.SimpleNamespace(__file__=None),
        "blocked": None,  # sys.modules[name] = None blocks an import
        "lazy": LazyModule("lazy"),
    }


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (".*", {"/srv/app/__init__.py", "/srv/site/app/views.py", "/srv/app/compiled.py",
                "/srv/libs.zip", "/usr/lib/cherrypy/__init__.py"}),
        # the reference's example: everything but cherrypy (module names, not paths)
        (r"^(?!cherrypy).+", {"/srv/app/__init__.py", "/srv/site/app/views.py",
                              "/srv/app/compiled.py", "/srv/libs.zip"}),
        (r"app\.", {"/srv/site/app/views.py", "/srv/app/compiled.py"}),
        ("views", set()),  # re.match anchors at the start of the name
        ("nothing", set()),
    ],
)
def test_module_files(match: str, expected: set[str]) -> None:
    assert module_files(fake_modules(), match, BASE) == expected


def test_sysfiles_has_this_test_module() -> None:
    reloader = Autoreloader(Bus())
    assert os.path.abspath(__file__) in reloader.sysfiles()
    reloader.match = r"^(?!tests\.).+"
    assert os.path.abspath(__file__) not in reloader.sysfiles()


# -- one save, one reload ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("first", "last", "now", "wait"),
    [
        (10.0, 10.0, 10.0, 0.05),  # one event: wait the quiet period
        (10.0, 10.0, 10.03, 0.02),
        (10.0, 10.0, 10.05, 0.0),  # quiet long enough: act
        (10.0, 10.04, 10.05, 0.04),  # a later event of the same save pushes it back
        (10.0, 10.999, 10.999, 0.001),  # never quiet: act 1 s after the first change
        (10.0, 12.0, 12.0, 0.0),
        (10.0, 10.0, 11.0, 0.0),  # long overdue
    ],
)
def test_settle_delay(first: float, last: float, now: float, wait: float) -> None:
    assert settle_delay(first, last, now, quiet=0.05) == pytest.approx(wait, abs=1e-9)


def test_settle_delay_with_a_quiet_period_past_the_cap_waits_the_quiet_period() -> None:
    assert settle_delay(0.0, 0.0, 0.0, quiet=2.0, longest=1.0) == 2.0
    assert settle_delay(0.0, 0.0, 0.0, quiet=0.0) == 0.0


# -- syntax check -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (b"VALUE = 1\n", None),
        (b"", None),
        (b"# -*- coding: latin-1 -*-\nNAME = '\xe9'\n", None),  # the encoding cookie counts
        (b"VALUE = (\n", "/srv/m.py, line 1: '(' was never closed"),
        (b"x = 1\ndef f(:\n    pass\n", "/srv/m.py, line 2: invalid syntax"),
        (b"if x:\nreturn\n", "/srv/m.py, line 2: expected an indented block after 'if' "
                             "statement on line 1"),
        (b"x = 1\x00\n", None),  # null bytes: the message depends on the Python version
    ],
)
def test_syntax_error(source: bytes, expected: str | None) -> None:
    found = syntax_error(source, "/srv/m.py")
    if b"\x00" in source:
        assert found is not None and found.startswith("/srv/m.py")
    else:
        assert found == expected


# -- settings ---------------------------------------------------------------------------------

GOOD = {"frequency": 1, "match": ".*", "files": set(), "quiet": 0.05, "watcher": "auto"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("frequency", -1, "engine.autoreload.frequency: expected a number of seconds, 0 or more"),
        ("frequency", "1", "got '1'"),
        ("frequency", True, "got True"),
        ("frequency", float("nan"), "got nan"),
        ("match", "(", "engine.autoreload.match: expected a regular expression, got '('"),
        ("match", 3, "engine.autoreload.match: expected a regular expression (a string), got 3"),
        ("files", {3}, "engine.autoreload.files: expected file names (strings or paths), got 3"),
        ("files", {""}, "got ''"),
        ("quiet", -0.1, "engine.autoreload.quiet: expected a number of seconds, 0 or more"),
        ("watcher", "fsevent", "engine.autoreload.watcher: expected one of 'auto', 'inotify', "
                               "'observer', 'polling', got 'fsevent'"),
    ],
)
def test_check_settings_names_the_setting_and_the_value(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_settings(**{**GOOD, key: value})
    assert message in str(caught.value)
    assert caught.value.exit_code == 78


def test_check_settings_accepts_good_values() -> None:
    check_settings(**GOOD)
    check_settings(**{**GOOD, "frequency": 0, "files": {"a.conf", Path("b.conf")}})


def test_subscribe_and_start_refuse_bad_settings_and_leave_nothing_running() -> None:
    bus = Bus()
    reloader = Autoreloader(bus, frequency=-1)
    with pytest.raises(ConfigError, match="engine.autoreload.frequency"):
        reloader.subscribe()
    assert reloader.start not in bus.listeners["start"]
    reloader.frequency = 1
    reloader.match = "["
    threads = threading.active_count()
    with pytest.raises(ConfigError, match="engine.autoreload.match"):
        reloader.start()
    assert reloader.thread is None
    assert threading.active_count() == threads


@pytest.mark.parametrize("value", ["site.conf", b"x", 3, Path("site.conf")])
def test_files_must_be_a_collection_of_names(value: Any) -> None:
    reloader = Autoreloader(Bus())
    with pytest.raises(ConfigError, match="engine.autoreload.files: expected a set of file names"):
        reloader.files = value


def test_files_set_tells_when_something_is_added() -> None:
    added = []
    files = WatchedFiles({"a"}, on_add=lambda: added.append(1))
    files.add("b")
    files.update(["c"], {"d"})
    files |= {"e"}
    assert files == {"a", "b", "c", "d", "e"}
    assert isinstance(files, WatchedFiles)
    assert len(added) == 3
    with pytest.raises(ConfigError):
        files.add(None)
    assert None not in files


def test_files_assigned_from_config_stay_watched_files() -> None:
    reloader = Autoreloader(Bus())
    reloader.files = ["site.conf", "other.conf"]
    assert isinstance(reloader.files, WatchedFiles)
    assert reloader.files == {"site.conf", "other.conf"}


# -- watcher registry -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("requested", "reasons", "expected"),
    [
        ("auto", {"inotify": None, "observer": None, "polling": None}, "inotify"),
        ("auto", {"inotify": "old watchdog", "observer": None, "polling": None}, "observer"),
        ("auto", {"inotify": "not Linux", "observer": "no native", "polling": None}, "polling"),
        ("polling", {"inotify": None, "observer": None, "polling": None}, "polling"),
    ],
)
def test_choose_watcher(requested: str, reasons: dict[str, str | None], expected: str) -> None:
    assert choose_watcher(requested, reasons.__getitem__) == expected


def test_choose_watcher_asks_only_about_the_backends_it_needs() -> None:
    asked: list[str] = []

    def reason_of(name: str) -> str | None:
        asked.append(name)
        return None

    assert choose_watcher("auto", reason_of) == "inotify"
    assert choose_watcher("polling", reason_of) == "polling"
    assert asked == ["inotify", "polling"]  # asking imports: 'observer' costs 25 ms


def test_choose_watcher_explains_an_unavailable_backend() -> None:
    reasons = {"inotify": "inotify needs Linux, this is darwin", "observer": None, "polling": None}
    with pytest.raises(UnavailableError) as caught:
        choose_watcher("inotify", reasons.__getitem__)
    assert str(caught.value) == (
        "engine.autoreload.watcher: 'inotify' cannot run here: inotify needs Linux, this is "
        "darwin; available here: 'observer', 'polling'")
    assert caught.value.exit_code == 69
    with pytest.raises(UnavailableError, match="no file watcher can run here"):
        choose_watcher("auto", {"inotify": "a", "observer": "b", "polling": "c"}.__getitem__)
    with pytest.raises(ConfigError, match="got 'nfs'"):
        choose_watcher("nfs", reasons.__getitem__)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_every_backend_runs_here_and_auto_is_inotify() -> None:
    assert [unavailable_reason(name) for name in watchers] == [None, None, None]
    assert choose_watcher("auto") == "inotify"


# -- the plugin in this process ---------------------------------------------------------------

class Recorder:
    """A log listener that lets a test wait for a line."""

    def __init__(self, bus: Bus) -> None:
        self.lines: list[tuple[str, int]] = []
        self.changed = threading.Condition()
        bus.subscribe("log", self)

    def __call__(self, msg: str, level: int) -> None:
        with self.changed:
            self.lines.append((msg, level))
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 15) -> tuple[str, int]:
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((line for line in self.lines if text in line[0]), None), timeout)
        assert found, f"no log line with {text!r} in {timeout} s: {self.lines}"
        return found

    def count(self, text: str) -> int:
        return sum(text in msg for msg, _ in self.lines)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Any]:
    """Start an Autoreloader on a real Bus with the given backend; exit the bus afterwards."""
    buses: list[Bus] = []

    def _start(watcher: str = "auto", files: tuple[Path, ...] = (), **settings: Any) -> Any:
        bus = Bus()
        buses.append(bus)
        recorder = Recorder(bus)
        reloader = Autoreloader(bus, frequency=settings.pop("frequency", 1))
        reloader.watcher = watcher
        reloader.match = r"^(?!).*"  # no modules: only the files given
        for name, value in settings.items():
            setattr(reloader, name, value)
        reloader.files.update(str(f) for f in files)
        reloader.subscribe()
        bus.start()
        return bus, reloader, recorder

    yield _start
    for bus in buses:
        bus.exit()


@pytest.mark.parametrize("watcher", ["inotify", "observer", "polling"])
def test_each_backend_sees_a_change(running: Any, tmp_path: Path, watcher: str) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text("[global]\n")
    _bus, reloader, log = running(watcher, (conf,), frequency=0.05)
    assert reloader.mtimes == {str(conf): conf.stat().st_mtime}
    conf.write_text("[global]\nx = 1\n")
    log.wait_for(f"Restarting because {conf} changed.")


def test_a_bad_python_file_blocks_the_restart_until_it_compiles(
    running: Any, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("A = 1\n")
    bad.write_text("B = 1\n")
    _bus, _reloader, log = running("inotify", (good, bad))
    bad.write_text("B = (\n")
    message, level = log.wait_for("Not restarting: syntax error in")
    assert (message, level) == (f"Not restarting: syntax error in {bad}, line 1: "
                                "'(' was never closed", 40)
    good.write_text("A = 2\n")  # a restart now would bring up a process that cannot import bad
    with log.changed:
        log.changed.wait_for(lambda: log.count("Not restarting") == 2, 15)
    assert log.count("Restarting because") == 0
    bad.write_text("B = 2\n")
    log.wait_for(f"Restarting because {bad} changed.")


def test_run_checks_now_and_works_without_start(tmp_path: Path) -> None:
    bus = Bus()
    log = Recorder(bus)
    conf = tmp_path / "site.conf"
    conf.write_text("a")
    reloader = Autoreloader(bus)
    reloader.match = r"^(?!).*"
    reloader.files.add(str(conf))
    reloader.run()  # first look: records the mtime
    assert log.count("Restarting") == 0
    os.utime(conf, (1, 1))
    reloader.run()
    log.wait_for(f"Restarting because {conf} changed.")


def test_stop_ends_every_thread_at_once_and_removes_the_import_hook(
    running: Any, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    bus, reloader, log = running("inotify", (), match=".*")
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} == {"Autoreloader", "Autoreloader inotify"}
    assert isinstance(sys.meta_path[0], ImportNotifier)
    t0 = time.monotonic()
    bus.stop()
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in started)
    assert elapsed < 2  # generous: it takes a few milliseconds
    assert not any(isinstance(f, ImportNotifier) for f in sys.meta_path)
    assert reloader.thread is None
    assert log.count("Stopped thread 'Autoreloader'.") == 1


@pytest.mark.parametrize("watcher", ["observer", "polling"])
def test_observer_backends_stop_their_threads(running: Any, tmp_path: Path, watcher: str) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text("")
    before = set(threading.enumerate())
    bus, _reloader, _log = running(watcher, (conf,), frequency=0.05)
    started = set(threading.enumerate()) - before
    assert len(started) >= 2
    bus.stop()
    assert not any(t.is_alive() for t in started)


def test_frequency_0_turns_it_off(running: Any) -> None:
    before = threading.active_count()
    _bus, reloader, _log = running("inotify", (), frequency=0)
    assert reloader.thread is None
    assert threading.active_count() == before


def test_a_module_imported_after_start_is_watched(
    running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "lazy_pkg_for_autoreload"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "mod.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _bus, reloader, log = running("inotify", (), match="lazy_pkg_for_autoreload")
    assert reloader.mtimes == {}
    try:
        import lazy_pkg_for_autoreload.mod  # noqa: F401

        log.wait_for(f"Autoreloader watching {module}.")
        module.write_text("VALUE = 2\n")
        log.wait_for(f"Restarting because {module} changed.")
    finally:
        for name in ("lazy_pkg_for_autoreload", "lazy_pkg_for_autoreload.mod"):
            sys.modules.pop(name, None)


def test_a_file_added_after_start_is_watched(running: Any, tmp_path: Path) -> None:
    template = tmp_path / "page.html"
    template.write_text("<p>1</p>")
    _bus, reloader, log = running("inotify", ())
    reloader.files.add(str(template))
    log.wait_for(f"Autoreloader watching {template}.")
    template.unlink()
    log.wait_for(f"Restarting because {template} changed.")



def test_graceful_acts_on_a_change_made_while_the_watcher_was_down(
    running: Any, tmp_path: Path
) -> None:
    conf = tmp_path / "site.conf"
    conf.write_text("1")
    _bus, reloader, log = running("inotify", (conf,))
    reloader.stop()
    os.utime(conf, (1, 1))  # unseen: nothing watches now
    reloader.graceful()
    log.wait_for(f"Restarting because {conf} changed.")
    assert reloader.thread is not None


def test_a_symlinked_file_is_watched_where_it_points(running: Any, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "settings.conf"
    target.write_text("1")
    link = tmp_path / "site.conf"
    link.symlink_to(target)
    _bus, reloader, log = running("inotify", (link,))
    assert reloader.mtimes == {str(link): target.stat().st_mtime}
    target.write_text("2")
    log.wait_for(f"Restarting because {link} changed.")


def test_after_lost_events_every_watched_file_is_checked(tmp_path: Path) -> None:
    bus = Bus()
    log = Recorder(bus)
    same, changed = tmp_path / "a.conf", tmp_path / "b.conf"
    same.write_text("1")
    changed.write_text("1")
    reloader = Autoreloader(bus)
    reloader.match = r"^(?!).*"
    reloader.files.update([str(same), str(changed)])
    reloader.run()  # not started: no watcher, so no event can tell of the change below
    os.utime(changed, (1, 1))
    # What the plugin's thread does after the watcher reported IN_Q_OVERFLOW:
    reloader._settle([], set(), rescan=False, verify=True)
    assert ("Autoreloader: the kernel dropped file events; checking every watched file.",
            30) in log.lines
    assert [msg for msg, _ in log.lines if msg.startswith("Restarting")] == [
        f"Restarting because {changed} changed."]


def test_inotify_events_are_parsed_from_the_kernel_struct() -> None:
    import struct

    from sitebus.reload.watchers import IN_IGNORED, IN_MODIFY, parse_events

    def event(wd: int, mask: int, name: bytes, padded: int) -> bytes:
        return struct.pack("iIII", wd, mask, 0, padded) + name.ljust(padded, b"\0")

    data = event(1, IN_MODIFY, b"app.py", 16) + event(2, IN_IGNORED, b"", 0) + event(1, 2, b"x", 4)
    assert parse_events(data) == [(1, IN_MODIFY, b"app.py"), (2, IN_IGNORED, b""), (1, 2, b"x")]
    assert parse_events(b"") == []
    assert parse_events(data[:10]) == []  # a partial header is no event


def test_inotify_descriptors_are_closed_on_stop_and_not_inherited(tmp_path: Path) -> None:
    from sitebus.reload.watchers import InotifyWatcher

    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    before = open_fds()
    seen: list[str] = []
    watcher = InotifyWatcher(seen.append, lambda: None, 1.0)
    watcher.start()
    watcher.watch(str(tmp_path))
    new = open_fds() - before
    assert new and not any(os.get_inheritable(int(fd)) for fd in new if fd.isdigit()
                           and os.path.exists(f"/proc/self/fd/{fd}"))
    (tmp_path / "a.txt").write_text("x")
    deadline = time.monotonic() + 5
    while str(tmp_path / "a.txt") not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert str(tmp_path / "a.txt") in seen
    watcher.stop()
    assert open_fds() - before == set()
