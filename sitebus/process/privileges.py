"""DropPrivileges: start as root (to bind port 80), then serve as an unprivileged user.

Its start listener runs at priority 77, after the servers (75) have bound their ports, so a
site binds a privileged port as root and serves as, say, ``nobody``. It runs once per process
image (``finalized``): a graceful reload or a stop/start does not redo it, and after a
restart the new image finds itself already running as the target user and changes nothing.

Settings are resolved when they are set, so a config with an unknown user fails while it is
read: ``uid`` and ``gid`` take names or numbers (the attributes read back as numbers, as the
reference's do), ``umask`` an int such as ``0o027`` or an octal string such as ``'027'``.

Beyond the reference:

- The groups follow the user: with ``uid`` alone the gid is the user's primary group (the
  reference kept gid 0, root's group), and the supplementary groups become the user's
  (``initgroups``) instead of being emptied; with ``gid`` alone they are emptied, so root's
  groups do not linger.
- Asking to change user or group when not root is an error (77), not a silent no-op.
  Asking for the user the process already runs as is fine.
- The drop is verified: real, effective and saved ids must all be the target's, and switching
  back to root must fail; otherwise start fails and the site stops.

``plan_drop`` decides what to do from plain values; ``DropPrivileges.start`` makes the calls.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from sitebus.bus import Bus
from sitebus.errors import ConfigError, NoPermissionError
from sitebus.plugins import SimplePlugin

__all__ = ["DropPrivileges", "User", "Plan", "plan_drop", "resolve_user", "resolve_group",
           "parse_umask"]

UID_KEY = "engine.drop_privileges.uid"
GID_KEY = "engine.drop_privileges.gid"
UMASK_KEY = "engine.drop_privileges.umask"

MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


@dataclass(frozen=True)
class User:
    """A target user: its uid, and its name and primary group when the user database has them."""

    uid: int
    name: str | None
    gid: int | None


@dataclass(frozen=True)
class Plan:
    """The calls that drop privileges; None fields are left as they are."""

    uid: int | None
    gid: int | None
    groups_of: str | None  # initgroups() for this user name...
    groups: tuple[int, ...] | None  # ...or setgroups() to exactly these


def _number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def resolve_user(value: object) -> User | None:
    """Return the user a ``uid`` setting names (a name or a number), or raise ConfigError."""
    if value is None:
        return None
    number = _number(value)
    if number is not None:
        if not 0 <= number <= MAX_ID:
            raise ConfigError(f"expected a uid from 0 to {MAX_ID}, got {value!r}",
                              key=UID_KEY, value=value)
        try:
            entry = pwd.getpwuid(number)
        except KeyError:
            return User(number, None, None)
        return User(number, entry.pw_name, entry.pw_gid)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a user name or uid number, got {value!r}",
                          key=UID_KEY, value=value)
    try:
        entry = pwd.getpwnam(value.strip())
    except KeyError:
        raise ConfigError(f"no such user: {value!r}", key=UID_KEY, value=value) from None
    return User(entry.pw_uid, entry.pw_name, entry.pw_gid)


def resolve_group(value: object) -> int | None:
    """Return the gid a ``gid`` setting names (a name or a number), or raise ConfigError."""
    if value is None:
        return None
    number = _number(value)
    if number is not None:
        if not 0 <= number <= MAX_ID:
            raise ConfigError(f"expected a gid from 0 to {MAX_ID}, got {value!r}",
                              key=GID_KEY, value=value)
        return number
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a group name or gid number, got {value!r}",
                          key=GID_KEY, value=value)
    try:
        return grp.getgrnam(value.strip()).gr_gid
    except KeyError:
        raise ConfigError(f"no such group: {value!r}", key=GID_KEY, value=value) from None


def parse_umask(value: object) -> int | None:
    """Return the umask a setting gives (an int, or an octal string), or raise ConfigError."""
    if value is None:
        return None
    mask: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        mask = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if text and all(c in "01234567" for c in text):
            mask = int(text, 8)
    if mask is None or not 0 <= mask <= 0o777:
        raise ConfigError(
            f"expected a mode from 0 to 0o777 such as 0o022 or '027', got {value!r}",
            key=UMASK_KEY,
            value=value,
        )
    return mask


def plan_drop(
    euid: int,
    uids: tuple[int, int, int],
    gids: tuple[int, int, int],
    user: User | None,
    gid: int | None,
) -> Plan | None:
    """Decide how to become ``user`` / ``gid`` from the current ids; None when nothing changes.

    ``uids`` and ``gids`` are the real, effective and saved ids. Raises NoPermissionError
    when a change is needed and the process is not root, ConfigError when the target group
    cannot be known.
    """
    if user is None and gid is None:
        return None
    target_gid = gid if gid is not None else (user.gid if user is not None else None)
    if user is not None and target_gid is None:
        raise ConfigError(
            f"uid {user.uid} has no entry in the user database, so its group is unknown; "
            f"set {GID_KEY} too",
            key=UID_KEY,
            value=user.uid,
        )
    uid_changes = user is not None and any(u != user.uid for u in uids)
    gid_changes = target_gid is not None and any(g != target_gid for g in gids)
    if not (uid_changes or gid_changes):
        return None
    if euid != 0:
        key = UID_KEY if uid_changes else GID_KEY
        wanted = f"uid {user.uid}" if uid_changes and user is not None else f"gid {target_gid}"
        raise NoPermissionError(
            f"{key}: cannot switch to {wanted}: this process runs as uid {euid}, and only "
            "root can change its user or group; start the site as root, or leave "
            f"{UID_KEY} and {GID_KEY} unset"
        )
    if user is None:
        return Plan(uid=None, gid=target_gid, groups_of=None, groups=())
    if user.name is not None:
        return Plan(uid=user.uid, gid=target_gid, groups_of=user.name, groups=None)
    assert target_gid is not None
    return Plan(uid=user.uid, gid=target_gid, groups_of=None, groups=(target_gid,))


def _user_name(uid: int) -> str | int:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid


def _group_name(gid: int) -> str | int:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return gid


def _current_ids() -> str:
    """The reference's wording of the current ids: ``uid: 'nobody' gid: 'nogroup'``."""
    return f"uid: {_user_name(os.getuid())!r} gid: {_group_name(os.getgid())!r}"


def _apply(plan: Plan) -> None:
    """Make the calls of ``plan``: groups first and the uid last, while still root."""
    if plan.groups_of is not None:
        assert plan.gid is not None
        os.initgroups(plan.groups_of, plan.gid)
    elif plan.groups is not None:
        os.setgroups(list(plan.groups))
    if plan.gid is not None:
        os.setresgid(plan.gid, plan.gid, plan.gid)
    if plan.uid is not None:
        os.setresuid(plan.uid, plan.uid, plan.uid)


def _verify(plan: Plan) -> None:
    """Raise NoPermissionError unless the ids are the plan's and root cannot be regained."""
    problems = []
    if plan.gid is not None and os.getresgid() != (plan.gid,) * 3:
        problems.append(f"gids are {os.getresgid()}, expected {plan.gid}")
    if plan.uid is not None and os.getresuid() != (plan.uid,) * 3:
        problems.append(f"uids are {os.getresuid()}, expected {plan.uid}")
    if plan.uid is not None and plan.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            problems.append("the process could switch back to root")
        if plan.gid != 0:
            try:
                os.setgid(0)
            except PermissionError:
                pass
            else:
                problems.append("the process could switch back to group root")
    if problems:
        raise NoPermissionError(f"{UID_KEY}: privileges were not dropped: {'; '.join(problems)}")


class DropPrivileges(SimplePlugin):
    """Drop privileges: switch user, group and supplementary groups, and set the umask."""

    finalized: bool
    """True once this process image has dropped privileges (or had nothing to drop)."""

    def __init__(
        self, bus: Bus, umask: object = None, uid: object = None, gid: object = None
    ) -> None:
        super().__init__(bus)
        self.finalized = False
        self._user: User | None = None
        self._gid: int | None = None
        self._umask: int | None = None
        self.uid = uid
        self.gid = gid
        self.umask = umask

    @property
    def uid(self) -> int | None:
        """The uid under which to run; set it to a user name or number."""
        return None if self._user is None else self._user.uid

    @uid.setter
    def uid(self, value: object) -> None:
        self._user = resolve_user(value)

    @property
    def gid(self) -> int | None:
        """The gid under which to run; set it to a group name or number."""
        return self._gid

    @gid.setter
    def gid(self, value: object) -> None:
        self._gid = resolve_group(value)

    @property
    def umask(self) -> int | None:
        """The umask set when privileges drop (e.g. 0o027: no access for others)."""
        return self._umask

    @umask.setter
    def umask(self, value: object) -> None:
        self._umask = parse_umask(value)

    def start(self) -> None:
        """Switch to the configured user and group, then set the umask; once per image."""
        if self.finalized:
            if self._user is not None or self._gid is not None:
                self.bus.log(f"Already running as {_current_ids()}")
            if self._umask is not None:
                self.bus.log(f"umask already set to: {self._umask:03o}")
            return

        plan = plan_drop(os.geteuid(), os.getresuid(), os.getresgid(), self._user, self._gid)
        if self._user is None and self._gid is None:
            self.bus.log("uid/gid not set", level=30)
        elif plan is None:
            self.bus.log(f"Already running as {_current_ids()}")
        else:
            self.bus.log(f"Started as {_current_ids()}")
            _apply(plan)
            _verify(plan)
            groups = [_group_name(g) for g in os.getgroups()]
            self.bus.log(f"Running as {_current_ids()} groups: {groups!r}")

        if self._umask is None:
            self.bus.log("umask not set", level=30)
        else:
            old = os.umask(self._umask)
            self.bus.log(f"umask old: {old:03o}, new: {self._umask:03o}")
        self.finalized = True

    start.priority = 77  # type: ignore[attr-defined]
