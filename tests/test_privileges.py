"""DropPrivileges: settings, the drop plan (tables), and what start does without dropping.

Dropping itself is irreversible, so it runs in child processes: see
tests/integration/test_privileges_process.py.
"""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from sitebus.bus import Bus
from sitebus.errors import ConfigError, NoPermissionError
from sitebus.process.privileges import (
    DropPrivileges,
    Plan,
    User,
    parse_umask,
    plan_drop,
    resolve_group,
    resolve_user,
)

ROOT = (0, 0, 0)
WWW = User(33, "www-data", 33)
ANON = User(4242, None, None)  # a uid without a passwd entry


@pytest.mark.parametrize(
    ("euid", "uids", "gids", "user", "gid", "plan"),
    [
        # nothing asked
        (0, ROOT, ROOT, None, None, None),
        # a user: its primary group and its supplementary groups
        (0, ROOT, ROOT, WWW, None, Plan(33, 33, "www-data", None)),
        (0, ROOT, ROOT, WWW, 100, Plan(33, 100, "www-data", None)),
        # a uid without a name: exactly the given group
        (0, ROOT, ROOT, ANON, 100, Plan(4242, 100, None, (100,))),
        # a group only: root's supplementary groups go
        (0, ROOT, ROOT, None, 100, Plan(None, 100, None, ())),
        # already there (after a restart, or asked for oneself): nothing to do, root or not
        (33, (33, 33, 33), (33, 33, 33), WWW, None, None),
        (0, ROOT, ROOT, User(0, "root", 0), None, None),
        (1000, (1000,) * 3, (1000,) * 3, None, 1000, None),
        # a saved id left behind still counts as a change
        (33, (33, 33, 0), (33, 33, 33), WWW, None, "NoPermissionError"),
    ],
)
def test_plan_drop(
    euid: int,
    uids: tuple[int, int, int],
    gids: tuple[int, int, int],
    user: User | None,
    gid: int | None,
    plan: Plan | str | None,
) -> None:
    if isinstance(plan, str):
        with pytest.raises(NoPermissionError):
            plan_drop(euid, uids, gids, user, gid)
    else:
        assert plan_drop(euid, uids, gids, user, gid) == plan


def test_plan_drop_when_not_root_names_the_setting() -> None:
    with pytest.raises(NoPermissionError) as error:
        plan_drop(1000, (1000,) * 3, (1000,) * 3, WWW, None)
    assert str(error.value) == (
        "engine.drop_privileges.uid: cannot switch to uid 33: this process runs as uid 1000, "
        "and only root can change its user or group; start the site as root, or leave "
        "engine.drop_privileges.uid and engine.drop_privileges.gid unset"
    )
    assert error.value.exit_code == 77
    with pytest.raises(NoPermissionError, match="^engine.drop_privileges.gid: .* gid 33"):
        plan_drop(1000, (1000,) * 3, (1000,) * 3, None, 33)


def test_plan_drop_needs_a_group_for_a_nameless_uid() -> None:
    with pytest.raises(ConfigError) as error:
        plan_drop(0, ROOT, ROOT, ANON, None)
    assert str(error.value) == (
        "engine.drop_privileges.uid: uid 4242 has no entry in the user database, so its group "
        "is unknown; set engine.drop_privileges.gid too"
    )


def test_resolve_user_by_name_and_number() -> None:
    root = User(0, pwd.getpwuid(0).pw_name, pwd.getpwuid(0).pw_gid)
    assert resolve_user(None) is None
    assert resolve_user(0) == root
    assert resolve_user("0") == root
    assert resolve_user(pwd.getpwuid(0).pw_name) == root
    unused = next(n for n in range(50000, 60000) if n not in {p.pw_uid for p in pwd.getpwall()})
    assert resolve_user(unused) == User(unused, None, None)


def test_resolve_group_by_name_and_number() -> None:
    name = grp.getgrgid(0).gr_name
    assert resolve_group(None) is None
    assert resolve_group(name) == 0
    assert resolve_group(" 0 ") == 0
    assert resolve_group(77777) == 77777


@pytest.mark.parametrize(
    ("function", "value", "message"),
    [
        (resolve_user, "no-such-user-here", "engine.drop_privileges.uid: no such user: "
                                            "'no-such-user-here'"),
        (resolve_user, -1, "engine.drop_privileges.uid: expected a uid from 0 to 4294967294, "
                           "got -1"),
        (resolve_user, True, "engine.drop_privileges.uid: expected a user name or uid number, "
                             "got True"),
        (resolve_user, 1.5, "engine.drop_privileges.uid: expected a user name or uid number, "
                            "got 1.5"),
        (resolve_user, "", "engine.drop_privileges.uid: expected a user name or uid number, "
                           "got ''"),
        (resolve_group, "no-such-group-here", "engine.drop_privileges.gid: no such group: "
                                              "'no-such-group-here'"),
        (resolve_group, 2**32, "engine.drop_privileges.gid: expected a gid from 0 to "
                               "4294967294, got 4294967296"),
        (resolve_group, ["staff"], "engine.drop_privileges.gid: expected a group name or gid "
                                   "number, got ['staff']"),
        (parse_umask, 0o1000, "engine.drop_privileges.umask: expected a mode from 0 to 0o777 "
                              "such as 0o022 or '027', got 512"),
        (parse_umask, "rwx", "engine.drop_privileges.umask: expected a mode from 0 to 0o777 "
                             "such as 0o022 or '027', got 'rwx'"),
        (parse_umask, "089", "engine.drop_privileges.umask: expected a mode from 0 to 0o777 "
                             "such as 0o022 or '027', got '089'"),
        (parse_umask, False, "engine.drop_privileges.umask: expected a mode from 0 to 0o777 "
                             "such as 0o022 or '027', got False"),
    ],
)
def test_bad_settings_are_config_errors(function: object, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        function(value)  # type: ignore[operator]
    assert str(error.value) == message
    assert error.value.exit_code == 78


@pytest.mark.parametrize(
    ("value", "mask"),
    [(None, None), (0, 0), (0o027, 0o027), ("027", 0o027), ("0o077", 0o077), (" 0022 ", 0o022)],
)
def test_parse_umask(value: object, mask: int | None) -> None:
    assert parse_umask(value) == mask


@pytest.fixture
def logged(bus: Bus) -> list[tuple[str, int]]:
    lines: list[tuple[str, int]] = []
    bus.subscribe("log", lambda msg, level: lines.append((msg, level)))
    return lines


def test_attributes_resolve_names_when_set(bus: Bus) -> None:
    plugin = DropPrivileges(bus, uid=str(os.getuid()), gid=grp.getgrgid(os.getgid()).gr_name)
    assert (plugin.uid, plugin.gid, plugin.umask) == (os.getuid(), os.getgid(), None)
    with pytest.raises(ConfigError, match=r"^engine\.drop_privileges\.uid: no such user"):
        plugin.uid = "no-such-user-here"
    assert plugin.uid == os.getuid()  # a refused value changes nothing
    with pytest.raises(ConfigError, match=r"^engine\.drop_privileges\.umask: "):
        DropPrivileges(bus, umask="0999")


def test_priority_is_77(bus: Bus) -> None:
    plugin = DropPrivileges(bus)
    plugin.subscribe()
    assert bus._priorities[("start", plugin.start)][0] == 77


def test_nothing_set_warns_like_the_reference(bus: Bus, logged: list[tuple[str, int]]) -> None:
    DropPrivileges(bus).subscribe()
    bus.start()
    assert ("uid/gid not set", 30) in logged
    assert ("umask not set", 30) in logged


def test_asking_for_the_current_user_changes_nothing(
    bus: Bus, logged: list[tuple[str, int]]
) -> None:
    before = (os.getresuid(), os.getresgid(), os.getgroups())
    plugin = DropPrivileges(bus, uid=os.getuid(), gid=os.getgid())
    plugin.subscribe()
    bus.start()
    assert (os.getresuid(), os.getresgid(), os.getgroups()) == before
    assert any(msg.startswith("Already running as uid: ") for msg, _ in logged)
    assert plugin.finalized
    bus.graceful()
    bus.stop()
    bus.start()  # finalized: the second start only reports
    assert sum(msg.startswith("Already running as") for msg, _ in logged) == 2


def test_the_umask_is_set_and_logged(bus: Bus, logged: list[tuple[str, int]]) -> None:
    previous = os.umask(0o022)
    try:
        DropPrivileges(bus, umask=0o027).subscribe()
        bus.start()
        assert os.umask(0o022) == 0o027
        assert ("umask old: 022, new: 027", 20) in logged
    finally:
        os.umask(previous)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks what a root process reports")
def test_a_drop_that_did_not_happen_is_caught() -> None:
    from sitebus.process.privileges import _verify

    with pytest.raises(NoPermissionError) as error:
        _verify(Plan(uid=4242, gid=4242, groups_of=None, groups=(4242,)))
    assert str(error.value) == (
        "engine.drop_privileges.uid: privileges were not dropped: gids are (0, 0, 0), "
        "expected 4242; uids are (0, 0, 0), expected 4242; the process could switch back to "
        "root; the process could switch back to group root"
    )
    assert (os.getresuid(), os.getresgid()) == (ROOT, ROOT)
