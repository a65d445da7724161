"""systemd integration: socket activation, the notify protocol, the watchdog and journald.

One module per concern: ``activation`` (the sockets systemd passes), ``protocol`` (notify
datagrams, the file-descriptor store, the watchdog interval), ``notifier`` (SystemdNotifier,
the bus plugin) and ``journal`` (journald logging). Their public names are all here.

Decisions are pure functions of plain values (the environment as a mapping, a pid, a stat
result); the system calls live in the few functions that need them. systemd-python (the
``systemd`` extra) is used when installed and never required, except for journald logging.
"""

from sitebus.systemd.activation import (
    Claim,
    assign_listeners,
    check_fdname,
    hand_over_listeners,
    listen_environ,
    listen_fds,
    parse_listen_fds,
    passed_by_systemd,
)
from sitebus.systemd.journal import journal_stream_matches, log_to_journal
from sitebus.systemd.notifier import SystemdNotifier
from sitebus.systemd.protocol import (
    fdstore_enabled,
    monotonic_usec,
    notify,
    notify_address,
    notify_message,
    store_fds,
    watchdog_interval,
)

__all__ = [
    "Claim",
    "SystemdNotifier",
    "assign_listeners",
    "check_fdname",
    "fdstore_enabled",
    "hand_over_listeners",
    "journal_stream_matches",
    "listen_environ",
    "listen_fds",
    "log_to_journal",
    "monotonic_usec",
    "notify",
    "notify_address",
    "notify_message",
    "parse_listen_fds",
    "passed_by_systemd",
    "store_fds",
    "watchdog_interval",
]
