#!/usr/bin/env bash
# RSS of `metalbed up --no-provisioner` with 1 000 and 10 000 BMCs in one
# process, against OpenIPMI's ipmi_sim measured in the same run (one BMC per
# process) and VirtualBMC's documented ~24 MB per BMC (one Python process
# each; documented, not measured). Writes ci/bench/results-rss.md.
#
#   bash ci/bench/rss.sh                    # sizes 1000 10000, 20 ipmi_sim processes
#   SIZES="1000" IPMISIM_K=5 bash ci/bench/rss.sh
#
# Ports: --bmc-base-port 0 (ephemeral), so no fixed port range must be free.
# Needs: go, ipmitool, /usr/bin/python3; ipmi_sim (Debian openipmi) for the
# peer column; a file-descriptor limit above the largest size (one UDP
# socket per BMC).
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"1000 10000"}
IPMISIM_K=${IPMISIM_K:-20}
OUT=ci/bench/results-rss.md
work=$(mktemp -d)
pid=""
sim_pids=()
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -INT "$pid"; wait "$pid" || true; fi
  for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/metalbed" ./cmd/metalbed
# shellcheck source=ipmisim.sh
. ci/bench/ipmisim.sh

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
secs() { printf '%.2f' "$(echo "$2 - $1" | bc)"; }

# start N DIR: runs metalbed up in the background, waits for the ready line.
start() {
  local n=$1 dir=$2 t0
  : >"$work/out"
  t0=$(date +%s.%N)
  "$work/metalbed" up --nodes "$n" --no-provisioner --state-dir "$dir" --bmc-base-port 0 --redfish-addr 127.0.0.1:0 --web-addr 127.0.0.1:0 \
    >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 3000); do
    [ -s "$work/out" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/out" ] || { echo "not ready after 300 s" >&2; exit 1; }
  ready_s=$(secs "$t0" "$(date +%s.%N)")
}

# stop: SIGINT, wait, require exit 0.
stop() {
  local t0 rc=0
  t0=$(date +%s.%N)
  kill -INT "$pid"
  wait "$pid" || rc=$?
  stop_s=$(secs "$t0" "$(date +%s.%N)")
  pid=""
  [ "$rc" = 0 ] || { echo "metalbed up exited $rc" >&2; cat "$work/err" >&2; exit 1; }
}

# drive K DIR: ipmitool -C 17 power status on K BMCs spread over the inventory.
drive() {
  local k=$1 inv="$2/inventory.json" ok=0
  /usr/bin/python3 - "$inv" "$k" >"$work/targets" <<'PY'
import json, sys
nodes = json.load(open(sys.argv[1]))["nodes"]
k = int(sys.argv[2])
for n in nodes[:: max(1, len(nodes) // k)][:k]:
    print(n["bmc"]["address"], n["bmc"]["port"])
PY
  while read -r addr port; do
    if ipmitool -I lanplus -C 17 -H "$addr" -p "$port" -U admin -P password power status 2>/dev/null | grep -q "Chassis Power is"; then
      ok=$((ok + 1))
    fi
  done <"$work/targets"
  echo "$ok"
}

# measure_ipmi_sim K: OpenIPMI's ipmi_sim, one BMC per process as with vbmc.
# Starts K of them, checks each answers ipmitool -C 3, sums their RSS.
ipmisim_kb=""
ipmisim_answered=0
measure_ipmi_sim() {
  if ! command -v ipmi_sim >/dev/null; then
    echo "ipmi_sim not found (Debian package openipmi): peer not measured" >&2
    return
  fi
  local k=$1 total=0 i port
  for i in $(seq 0 $((k - 1))); do
    ipmisim_start "$work/ipmisim-$i" "sim$i"
    sim_pids+=("$IPMISIM_PID")
  done
  for i in $(seq 0 $((k - 1))); do
    port=$(cat "$work/ipmisim-$i/port")
    for _ in $(seq 1 50); do
      if ipmitool -I lanplus -C 3 -H 127.0.0.1 -p "$port" -U admin -P password power status 2>/dev/null | grep -q "Chassis Power is"; then
        ipmisim_answered=$((ipmisim_answered + 1))
        break
      fi
      sleep 0.1
    done
  done
  for p in "${sim_pids[@]}"; do total=$((total + $(kb VmRSS "$p"))); done
  for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  sim_pids=()
  ipmisim_kb=$((total / k))
  echo "ipmi_sim: $k processes, $ipmisim_answered answered, ${ipmisim_kb} kB RSS each" >&2
}

measure_ipmi_sim "$IPMISIM_K"

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
  vbmc_ratio=$(echo "$vbmc_mb * 1024 / $busy_rss" | bc)
  sim_cols="not measured | –"
  if [ -n "$ipmisim_kb" ]; then
    sim_cols="$(echo "$ipmisim_kb * $n / 1024" | bc) | $(echo "$ipmisim_kb * $n / $busy_rss" | bc)×"
  fi
  rows+="| $n | $(echo "scale=1; $idle_rss / 1024" | bc) | $(echo "scale=1; $busy_rss / 1024" | bc) | $(echo "scale=1; $hwm / 1024" | bc) | $per_bmc | $threads | $answered/50 | ${first_ready}s / ${restart_ready}s | ${first_stop}s | $sim_cols | ~$vbmc_mb | ${vbmc_ratio}× |"$'\n'
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
  echo "| BMCs | RSS idle (MB) | RSS after 50 sessions (MB) | peak RSS (MB) | KB per BMC | threads | BMCs answering | ready: first start / restart | stop (SIGINT → exit 0) | ipmi_sim × N (MB) | ipmi_sim / metalbed | vbmc, documented (MB) | vbmc / metalbed |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$rows"
  echo
  if [ -n "$ipmisim_kb" ]; then
    echo "OpenIPMI's \`ipmi_sim\` (a real peer; one BMC per process, like vbmc) was **measured in this run**:"
    echo "$IPMISIM_K processes side by side, $ipmisim_answered of them answered ipmitool -I lanplus -C 3 \`power status\`,"
    echo "mean RSS $ipmisim_kb KB per process. The ipmi_sim column is that figure × N (N processes were not started;"
    echo "that many would crowd a shared CI machine)."
    echo
  fi
  echo "VirtualBMC's ~24 MB per BMC (one Python process per BMC) is **documented, not measured here**"
  echo "(vbmc is not installed in CI); the vbmc column is 24 MB × N and the ratio divides it by metalbed's"
  echo "RSS after 50 sessions. Start-up includes creating every machine's state.json (fsync'd) and sparse"
  echo "disk.img on first start; a restart only reads them."
} >"$OUT"
echo "wrote $OUT" >&2
