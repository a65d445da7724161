#!/bin/sh
# Run a command next to a journald of its own, in a private mount namespace (run under
# `unshare -m --propagation private`), then write what it logged as journal JSON.
#   journal_namespace.sh OUT IDENTIFIER UNTIL COMMAND...
# Waits (bounded) until the journal holds UNTIL entries with SYSLOG_IDENTIFIER=IDENTIFIER, or,
# when UNTIL is FIELD=VALUE, one such entry that also matches it (journald handles its socket
# in order, so every entry sent before that one is in by then).
set -eu
out=$1 ident=$2 until=$3
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
entries() { journalctl -D /run/log/journal -o json --no-pager "SYSLOG_IDENTIFIER=$ident" "$@"; }
case $until in
    *=*) match=$until count=1 ;;
    *) match= count=$until ;;
esac
tries=0
until [ "$(entries ${match:+"$match"} | wc -l)" -ge "$count" ]; do
    tries=$((tries + 1)); [ $tries -lt 300 ] || break
    sleep 0.05
done
entries > "$out"
exit $status
