#!/bin/sh
# Run a command next to a journald of its own, in a private mount namespace (run under
# `unshare -m --propagation private`), then write what it logged as journal JSON.
#   journal_namespace.sh OUT IDENTIFIER COUNT COMMAND...
# Waits (bounded) until COUNT entries with SYSLOG_IDENTIFIER=IDENTIFIER are in the journal.
set -eu
out=$1 ident=$2 count=$3
shift 3
journald=/lib/systemd/systemd-journald
[ -x "$journald" ] || journald=/usr/lib/systemd/systemd-journald
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
"$journald" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
tries=0
until [ -S /run/systemd/journal/stdout ] && [ -S /run/systemd/journal/socket ]; do
    tries=$((tries + 1)); [ $tries -lt 300 ] || { echo "journald did not start" >&2; exit 1; }
    sleep 0.05
done
status=0
"$@" || status=$?
entries() { journalctl -D /run/log/journal -o json --no-pager "SYSLOG_IDENTIFIER=$ident"; }
tries=0
until [ "$(entries | wc -l)" -ge "$count" ]; do
    tries=$((tries + 1)); [ $tries -lt 300 ] || break
    sleep 0.05
done
entries > "$out"
exit $status
