#!/usr/bin/env bash
# Stops the Ironic services ci/ironic/start.sh started, by their PIDs only.
# Usage: ci/ironic/stop.sh PIDFILE
# A PID whose process is gone, or is no longer an Ironic service (the PID was
# reused), is skipped. SIGTERM first, SIGKILL after 15 s.
set -euo pipefail
pidfile=${1:?usage: ci/ironic/stop.sh PIDFILE}
[ -r "$pidfile" ] || { echo "ironic/stop.sh: $pidfile: no such file" >&2; exit 1; }

ours() { # pid: still running and an Ironic service (ironic-api, ironic-conductor, ironic)
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qE '/usr/bin/ironic(-api|-conductor)?( |$)'
}

pids=()
while read -r pid; do
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  if ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
done <"$pidfile"

for _ in $(seq 150); do
  left=()
  for pid in "${pids[@]}"; do
    ours "$pid" && left+=("$pid")
  done
  [ ${#left[@]} -eq 0 ] && break
  sleep 0.1
done
for pid in "${pids[@]}"; do
  if ours "$pid"; then
    echo "ironic/stop.sh: $pid still running after 15 s, SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$pidfile"
