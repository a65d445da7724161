"""Sessions with the RAM and file stores: the cookie and its options, fixation protection,
forged and expired ids, regenerate, expire, locking modes, concurrency, cleanup monitors,
custom stores."""

from __future__ import annotations

import datetime
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import services.web as cherrypy
from services.web.lib import lockfile, sessioncleanup, sessions
from services.web.lib.sessions import FileSession, RamSession
from tests.processes import wait_until
from tests.web.sessions_helpers import (
    Clock,
    ClockedFileSession,
    ClockedRamSession,
    Counter,
    hammer,
    session_cookie,
    set_cookies,
)


@pytest.fixture(autouse=True)
def _fresh_sessions() -> Iterator[None]:
    RamSession.cache.clear()
    Clock.offset = datetime.timedelta(0)
    yield
    sessions.stop_cleanup()
    RamSession.cache.clear()
    Clock.offset = datetime.timedelta(0)


@pytest.fixture(params=["ram", "file"])
def store(request: Any, tmp_path: Path) -> dict[str, Any]:
    """The session config of each store, with a settable clock."""
    if request.param == "ram":
        return {"tools.sessions.storage_class": ClockedRamSession}
    return {"tools.sessions.storage_class": ClockedFileSession,
            "tools.sessions.storage_path": str(tmp_path)}


def mount(web: Any, store: dict[str, Any], **extra: Any) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True, **store, **extra}})


def test_a_session_follows_its_cookie(web: Any, store: dict[str, Any]) -> None:
    mount(web, store)
    web.getPage("/")
    web.assertBody("1")
    sid = session_cookie(web)
    assert len(sid) == 40
    cookie = [("Cookie", f"session_id={sid}")]
    web.getPage("/", headers=cookie)
    web.assertBody("2")
    assert session_cookie(web) == sid
    web.getPage("/")  # no cookie: a new session
    web.assertBody("1")
    assert session_cookie(web) != sid
    web.getPage("/peek", headers=cookie)
    web.assertBody("2")


@pytest.mark.parametrize("forged", [
    "0" * 40,                       # well formed, unknown
    "../../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "a" * 5000,
    "abc def",
    "abc\\x00def",
    "",
])
def test_forged_ids_are_replaced(web: Any, store: dict[str, Any], forged: str,
                                 tmp_path: Path) -> None:
    mount(web, store)
    web.getPage("/", headers=[("Cookie", f'session_id="{forged}"')])
    web.assertStatus(200)
    web.assertBody("1")
    sid = session_cookie(web)
    assert sid != forged and len(sid) == 40
    outside = [p.name for p in tmp_path.parent.iterdir() if "passwd" in p.name]
    assert outside == []


def test_an_unknown_id_is_replaced_on_every_request_if_nothing_is_saved(
        web: Any, store: dict[str, Any]) -> None:
    mount(web, store)
    web.getPage("/nothing")
    first = session_cookie(web)
    web.getPage("/nothing", headers=[("Cookie", f"session_id={first}")])
    assert session_cookie(web) != first  # never saved, so never known


def test_expired_ids_are_replaced(web: Any, store: dict[str, Any]) -> None:
    mount(web, store, **{"tools.sessions.timeout": 1})
    web.getPage("/")
    sid = session_cookie(web)
    Clock.offset = datetime.timedelta(seconds=59)
    web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
    web.assertBody("2")  # still alive (and saved again)
    Clock.offset = datetime.timedelta(seconds=59 + 61)
    web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
    web.assertBody("1")
    assert session_cookie(web) != sid


def test_regenerate_keeps_data_under_a_new_id(web: Any, store: dict[str, Any]) -> None:
    mount(web, store)
    web.getPage("/")
    web.getPage("/", headers=[("Cookie", f"session_id={session_cookie(web)}")])
    old = session_cookie(web)
    web.getPage("/regen", headers=[("Cookie", f"session_id={old}")])
    new = session_cookie(web)
    assert web.body.decode() == new != old
    web.getPage("/peek", headers=[("Cookie", f"session_id={new}")])
    web.assertBody("2")
    web.getPage("/peek", headers=[("Cookie", f"session_id={old}")])
    web.assertBody("0")  # the old id is gone


def test_expire_expires_the_cookie(web: Any, store: dict[str, Any]) -> None:
    mount(web, store)
    web.getPage("/expire")
    morsel = set_cookies(web.headers)["session_id"]
    assert morsel["max-age"] == "0"
    expires = datetime.datetime.strptime(morsel["expires"], "%a, %d %b %Y %H:%M:%S GMT")
    assert expires.replace(tzinfo=datetime.timezone.utc) < datetime.datetime.now(
        datetime.timezone.utc)


def test_cookie_options(web: Any) -> None:
    web.mount(Counter(), "", {"/": {
        "tools.sessions.on": True, "tools.sessions.name": "my_app_sid",
        "tools.sessions.timeout": 30, "tools.sessions.domain": "example.com",
        "tools.sessions.secure": True, "tools.sessions.httponly": True,
        "tools.sessions.path": "/app"}})
    web.getPage("/")
    header = next(v for k, v in web.headers if k.lower() == "set-cookie")
    morsel = set_cookies(web.headers)["my_app_sid"]
    assert morsel["max-age"] == "1800"
    assert morsel["domain"] == "example.com"
    assert morsel["path"] == "/app"
    assert "Secure" in header and "HttpOnly" in header
    web.getPage("/", headers=[("Cookie", f"my_app_sid={morsel.value}")])
    web.assertBody("2")


def test_non_persistent_cookies_and_path_header(web: Any) -> None:
    web.mount(Counter(), "", {"/": {
        "tools.sessions.on": True, "tools.sessions.persistent": False,
        "tools.sessions.path_header": "X-Script-Name"}})
    web.getPage("/", headers=[("X-Script-Name", "/proxied")])
    morsel = set_cookies(web.headers)["session_id"]
    assert morsel["max-age"] == "" and morsel["expires"] == ""
    assert morsel["path"] == "/proxied"
    header = next(v for k, v in web.headers if k.lower() == "set-cookie")
    assert "Secure" not in header and "HttpOnly" not in header


def test_two_apps_with_distinct_names_keep_their_sessions(web: Any) -> None:
    web.mount(Counter(), "/a", {"/": {"tools.sessions.on": True,
                                      "tools.sessions.name": "a_sid"}})
    web.mount(Counter(), "/b", {"/": {"tools.sessions.on": True,
                                      "tools.sessions.name": "b_sid"}})
    web.getPage("/a/")
    a = session_cookie(web, "a_sid")
    web.getPage("/b/")
    b = session_cookie(web, "b_sid")
    both = [("Cookie", f"a_sid={a}; b_sid={b}")]
    web.getPage("/a/", headers=both)
    web.assertBody("2")
    web.getPage("/b/", headers=both)
    web.assertBody("2")


# -- locking ----------------------------------------------------------------------------------


def test_implicit_locking_serialises_concurrent_requests(web: Any,
                                                         store: dict[str, Any]) -> None:
    mount(web, store)
    web.getPage("/")
    cookie = f"session_id={session_cookie(web)}"
    results = hammer(web.PORT, [(web.PORT, "/slow")] * 40, cookie)
    assert sorted(int(r) for r in results) == list(range(2, 42))
    web.getPage("/peek", headers=[("Cookie", cookie)])
    web.assertBody("41")


def test_locking_modes(web: Any, store: dict[str, Any]) -> None:
    mount(web, store, **{"tools.sessions.locking": "explicit"})
    web.getPage("/locked")
    web.assertBody("False")
    web.getPage("/lock_explicitly")
    web.assertBody("False True")
    cookie = [("Cookie", f"session_id={session_cookie(web)}")]
    web.getPage("/lock_explicitly", headers=cookie)  # released at the end of the last one
    web.assertBody("False True")
    mount(web, store, **{"tools.sessions.locking": "early"})
    web.getPage("/locked")
    web.assertBody("True")
    mount(web, store, **{"tools.sessions.locking": "implicit"})
    web.getPage("/locked")
    web.assertBody("True")


def test_an_unknown_locking_mode_is_a_clear_error(web: Any) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.locking": "sometimes"}})
    web.getPage("/")
    web.assertStatus(500)
    web.assertInBody("tools.sessions.locking: expected 'implicit', 'early'")


def test_the_lock_is_released_when_the_handler_fails(web: Any, store: dict[str, Any]) -> None:
    class Failing(Counter):
        @cherrypy.expose
        def fail(self) -> str:
            cherrypy.session["count"] = 99
            raise ValueError("boom")

    web.mount(Failing(), "", {"/": {"tools.sessions.on": True, **store}})
    web.getPage("/")
    cookie = [("Cookie", f"session_id={session_cookie(web)}")]
    web.getPage("/fail", headers=cookie)
    web.assertStatus(500)
    web.getPage("/", headers=cookie)  # would hang if the lock had been kept
    web.assertStatus(200)


# -- the file store ---------------------------------------------------------------------------


def test_file_store_layout(web: Any, tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession,
                                    "tools.sessions.storage_path": str(tmp_path)}})
    web.getPage("/")
    sid = session_cookie(web)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"session-{sid}"]  # the lock file went with the lock
    data, expiration = pickle.loads((tmp_path / f"session-{sid}").read_bytes())
    assert data == {"count": 1}
    assert expiration > datetime.datetime.now() + datetime.timedelta(minutes=59)
    assert (tmp_path / f"session-{sid}").stat().st_mode & 0o077 == 0


def test_a_damaged_session_file_is_a_new_session(web: Any, tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession,
                                    "tools.sessions.storage_path": str(tmp_path)}})
    web.getPage("/")
    sid = session_cookie(web)
    (tmp_path / f"session-{sid}").write_bytes(b"\x80\x04garbage")
    web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
    web.assertBody("1")
    assert session_cookie(web) != sid


@pytest.mark.parametrize("setting, message", [
    ({}, "tools.sessions.storage_path: expected the directory"),
    ({"tools.sessions.storage_path": "/no/such/dir"}, "no such directory"),
    ({"tools.sessions.storage_path": "TMP", "tools.sessions.lock_timeout": "soon"},
     "tools.sessions.lock_timeout: expected seconds"),
])
def test_file_store_settings_are_checked(web: Any, tmp_path: Path, setting: dict[str, Any],
                                         message: str) -> None:
    if setting.get("tools.sessions.storage_path") == "TMP":
        setting = {**setting, "tools.sessions.storage_path": str(tmp_path)}
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession, **setting}})
    web.getPage("/")
    web.assertStatus(500)
    web.assertInBody(message)


def test_a_held_file_lock_times_out(web: Any, tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession,
                                    "tools.sessions.storage_path": str(tmp_path),
                                    "tools.sessions.lock_timeout": 0.3}})
    web.getPage("/")
    sid = session_cookie(web)
    held = lockfile.LockFile(str(tmp_path / f"session-{sid}.lock"))
    try:
        web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
        web.assertStatus(500)
        web.assertInBody("LockTimeout")
    finally:
        held.release()
    web.getPage("/", headers=[("Cookie", f"session_id={sid}")])
    web.assertBody("2")


def test_a_blocked_request_proceeds_when_the_lock_is_released(web: Any,
                                                              tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession,
                                    "tools.sessions.storage_path": str(tmp_path)}})
    web.getPage("/")
    sid = session_cookie(web)
    held = lockfile.LockFile(str(tmp_path / f"session-{sid}.lock"))
    results: list[list[str]] = []
    thread = threading.Thread(target=lambda: results.append(
        hammer(web.PORT, [(web.PORT, "/")], f"session_id={sid}", 1)))
    thread.start()
    try:
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the lock, without a timeout
    finally:
        held.remove()
        held.release()
    thread.join(30)
    assert results == [["2"]]


def test_file_cleanup_removes_expired_sessions_and_orphan_locks(tmp_path: Path) -> None:
    live = FileSession(None, storage_path=str(tmp_path))
    live["x"] = 1
    live.save()
    old = FileSession(None, storage_path=str(tmp_path))
    old["x"] = 2
    old._save(datetime.datetime.now() - datetime.timedelta(seconds=1))
    (tmp_path / "session-orphan.lock").write_text("12345")
    busy = FileSession(None, storage_path=str(tmp_path))
    busy._save(datetime.datetime.now() - datetime.timedelta(seconds=1))
    busy.acquire_lock()
    try:
        assert len(live) == 3  # as RamSession: the sessions stored, lock files not counted
        live.cleaner().clean_up()
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([f"session-{live.id}", f"session-{busy.id}",
                                f"session-{busy.id}.lock"])
    finally:
        busy.release_lock()
    live.cleaner().clean_up()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"session-{live.id}"]
    assert len(live) == 1


def test_ram_cleanup_removes_expired_sessions() -> None:
    keep = RamSession()
    keep["a"] = 1
    keep.save()
    gone = RamSession()
    gone["a"] = 1
    gone._save(datetime.datetime.now() - datetime.timedelta(seconds=1))
    assert len(keep) == 2
    keep.cleaner().clean_up()
    assert list(RamSession.cache) == [keep.id]


# -- the cleanup monitor ----------------------------------------------------------------------


def test_cleanup_runs_as_a_monitor_on_the_bus(web: Any, tmp_path: Path) -> None:
    from sitebus.site.container import bus

    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": FileSession,
                                    "tools.sessions.storage_path": str(tmp_path),
                                    "tools.sessions.clean_freq": 5}})
    web.getPage("/")
    web.getPage("/")
    monitors = list(sessioncleanup._cleaners.values())
    assert len(monitors) == 1
    monitor = monitors[0]
    assert FileSession.clean_thread is monitor
    assert monitor.frequency == 300
    assert monitor.stop in bus.listeners["stop"] and monitor.start in bus.listeners["start"]
    assert monitor.thread is not None and monitor.thread.is_alive()
    began = time.monotonic()
    monitor.stop()  # what the bus's stop does: the thread ends at once, mid-wait
    assert time.monotonic() - began < 5
    assert monitor.thread is None


def test_cleanup_monitor_cleans_at_its_frequency(web: Any) -> None:
    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": ClockedRamSession,
                                    "tools.sessions.clean_freq": 0.001}})
    web.getPage("/")
    sid = session_cookie(web)
    assert sid in RamSession.cache
    Clock.offset = datetime.timedelta(hours=2)
    wait_until(lambda: sid not in RamSession.cache, 30, "the monitor to clean the session")


def test_no_monitor_without_clean_freq_or_clean_up(web: Any) -> None:
    class Plain(sessions.Session):
        store: dict[str, Any] = {}

        def _exists(self) -> bool:
            return self.id in self.store

        def _load(self) -> Any:
            return self.store.get(self.id)  # type: ignore[arg-type]

        def _save(self, expiration_time: datetime.datetime) -> None:
            self.store[self.id] = (self._data, expiration_time)  # type: ignore[index]

        def _delete(self) -> None:
            self.store.pop(self.id, None)  # type: ignore[arg-type]

        def acquire_lock(self) -> None:
            self.locked = True

        def release_lock(self) -> None:
            self.locked = False

    web.mount(Counter(), "", {"/": {"tools.sessions.on": True,
                                    "tools.sessions.storage_class": Plain}})
    web.getPage("/")
    web.assertBody("1")
    web.getPage("/", headers=[("Cookie", f"session_id={session_cookie(web)}")])
    web.assertBody("2")  # a custom store works
    assert sessioncleanup._cleaners == {}  # it has no clean_up of its own
    web.mount(Counter(), "/ram", {"/": {"tools.sessions.on": True,
                                        "tools.sessions.clean_freq": 0}})
    web.getPage("/ram/")
    assert sessioncleanup._cleaners == {}


def test_storage_class_by_dotted_name_and_deprecated_storage_type(web: Any,
                                                                  tmp_path: Path) -> None:
    web.mount(Counter(), "", {"/": {
        "tools.sessions.on": True,
        "tools.sessions.storage_class": "services.web.lib.sessions.FileSession",
        "tools.sessions.storage_path": str(tmp_path)}})
    web.getPage("/")
    assert any(p.name.startswith("session-") for p in tmp_path.iterdir())
    with pytest.warns(DeprecationWarning, match="storage_type is deprecated"):
        sessions._storage_class("file", None)
    assert sessions._storage_class(None, None) is RamSession


def test_keyed_locks_forget_released_keys() -> None:
    locks = sessions.KeyedLocks()
    assert locks.acquire("a")
    assert locks.acquire("a")  # re-entrant
    locks.release("a")
    locks.release("a")
    assert dict(locks) == {}
    assert locks.acquire("b")
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(locks.acquire("b", 0.05)))
    thread.start()
    thread.join(10)
    assert other == [False]
    locks.release("b")
    assert dict(locks) == {}


def test_session_ids_from_clients_must_look_like_ours() -> None:
    for bad in ("../x", "a b", "x" * 129, "", "é"):
        session = RamSession(bad)
        assert session.missing and session.id != bad
