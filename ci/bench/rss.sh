#!/usr/bin/env bash
# RSS of `metalbed up --no-provisioner` with 1 000 and 10 000 BMCs in one
# process, against VirtualBMC's documented ~24 MB per BMC (one Python
# process each). Writes ci/bench/results-rss.md.
#
#   bash ci/bench/rss.sh            # sizes 1000 10000
#   SIZES="1000" bash ci/bench/rss.sh
#
# Ports: --bmc-base-port 0 (ephemeral), so no fixed port range must be free.
# Needs: go, ipmitool (to check a few BMCs answer), a file-descriptor
# limit above the largest size (one UDP socket per BMC).
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"1000 10000"}
OUT=ci/bench/results-rss.md
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -INT "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/metalbed" ./cmd/metalbed

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }

# start N DIR: runs metalbed up in the background, waits for the ready line.
start() {
  local n=$1 dir=$2
  : >"$work/out"
  "$work/metalbed" up --nodes "$n" --no-provisioner --state-dir "$dir" --bmc-base-port 0 \
    >"$work/out" 2>"$work/err" &
  pid=$!
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 1 3000); do
    [ -s "$work/out" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/out" ] || { echo "not ready after 300 s" >&2; exit 1; }
  t1=$(date +%s.%N)
  ready_s=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
}

# stop: SIGINT, wait, require exit 0.
stop() {
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  kill -INT "$pid"
  wait "$pid" || rc=$?
  t1=$(date +%s.%N)
  pid=""
  stop_s=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
  [ "$rc" = 0 ] || { echo "metalbed up exited $rc" >&2; cat "$work/err" >&2; exit 1; }
}

# drive K: power status through ipmitool -C 17 on K BMCs spread over the inventory.
drive() {
  local k=$1 inv="$2/inventory.json"
  /usr/bin/python3 - "$inv" "$k" <<'EOF' >"$work/targets"
import json, sys
nodes = json.load(open(sys.argv[1]))["nodes"]
k = int(sys.argv[2])
for n in nodes[:: max(1, len(nodes) // k)][:k]:
    print(n["bmc"]["address"], n["bmc"]["port"])
EOF
  local ok=0
  while read -r addr port; do
    if ipmitool -I lanplus -C 17 -H "$addr" -p "$port" -U admin -P password power status 2>/dev/null | grep -q "Chassis Power is"; then
      ok=$((ok + 1))
    fi
  done <"$work/targets"
  echo "$ok"
}

rows=""
for n in $SIZES; do
  dir="$work/state-$n"
  start "$n" "$dir"
  first_ready=$ready_s
  sleep 2 # let the runtime settle after start-up
  idle_rss=$(kb VmRSS "$pid")
  answered=$(drive 50 "$dir")
  busy_rss=$(kb VmRSS "$pid")
  hwm=$(kb VmHWM "$pid")
  threads=$(kb Threads "$pid")
  stop
  first_stop=$stop_s
  start "$n" "$dir" # restart on the same state
  restart_ready=$ready_s
  stop
  per_bmc=$((busy_rss / n))
  vbmc_mb=$((24 * n))
  ratio=$(echo "scale=0; $vbmc_mb * 1024 / $busy_rss" | bc)
  rows+="| $n | $(echo "scale=1; $idle_rss/1024" | bc) | $(echo "scale=1; $busy_rss/1024" | bc) | $(echo "scale=1; $hwm/1024" | bc) | $per_bmc | $threads | $answered/50 | ${first_ready}s / ${restart_ready}s | ${first_stop}s | ~$vbmc_mb | ${ratio}× |"$'\n'
  echo "n=$n idle=${idle_rss}kB busy=${busy_rss}kB per_bmc=${per_bmc}kB answered=$answered/50 ready=$first_ready restart=$restart_ready" >&2
done

{
  echo "# RSS of many BMCs in one process"
  echo
  echo "Measured by \`bash ci/bench/rss.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -sr), $(go version | awk '{print $3}'))."
  echo "\`metalbed up --nodes N --no-provisioner --bmc-base-port 0\`: N simulated machines, each with its own"
  echo "IPMI v2.0 BMC on its own UDP port, all in one process. RSS is VmRSS from /proc; \"after 50 sessions\""
  echo "is after ipmitool -I lanplus -C 17 \`power status\` against 50 BMCs spread over the fleet."
  echo
  echo "| BMCs | RSS idle (MB) | RSS after 50 sessions (MB) | peak RSS (MB) | KB per BMC | threads | BMCs answering | ready: first start / restart | stop (SIGINT → exit 0) | vbmc, documented (MB) | vbmc / metalbed |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$rows"
  echo
  echo "VirtualBMC's figure (~24 MB per BMC: one Python process per BMC) is **documented, not measured here**"
  echo "(the figure the project brief and protocol notes cite for vbmc); the vbmc column is 24 MB × N and the"
  echo "ratio divides it by metalbed's RSS after 50 sessions. Startup includes creating every machine's"
  echo "state.json (fsync'd) and sparse disk.img on first start; a restart only reads them."
} >"$OUT"
echo "wrote $OUT" >&2
