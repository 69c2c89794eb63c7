#!/usr/bin/env bash
# Stops the daemons ci/libvirt/start.sh started — only the PIDs it recorded,
# and only while each PID still runs the program it was recorded as.
set -euo pipefail
pidfile=${METALBED_LIBVIRT_PIDFILE:-/run/metalbed-libvirt.pids}
[ -f "$pidfile" ] || exit 0
while read -r name pid; do
  [ -n "$pid" ] || continue
  if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
done <"$pidfile"
rm -f "$pidfile"
