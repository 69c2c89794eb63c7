#!/usr/bin/env bash
# RSS of `metalbed up` with 1 000 and 10 000 idle machines in one process,
# each with its IPMI BMC (its own UDP port) and a Redfish System (one
# service for all): machines only (--no-provisioner) and with the
# provisioner (API, DHCP, TFTP, HTTP, every port free). Against OpenIPMI's
# ipmi_sim measured in the same run (one BMC per process) and VirtualBMC's
# documented ~24 MB per BMC (one Python process each; documented, not
# measured). Also the goroutine count (from --pprof) and the start-up time,
# first start and restart. Writes ci/bench/results-rss.md.
#
#   bash ci/bench/rss.sh                    # sizes 1000 10000, 20 ipmi_sim processes
#   SIZES="1000" IPMISIM_K=5 bash ci/bench/rss.sh
#   MODES="machines" bash ci/bench/rss.sh   # machines only; "provisioner" for the other
#
# Ports: every port 0 (ephemeral), so no fixed port range must be free.
# Needs: go, ipmitool, curl, /usr/bin/python3; ipmi_sim (Debian openipmi)
# for the peer column; a file-descriptor limit above the largest size (one
# UDP socket per BMC).
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES=${SIZES:-"1000 10000"}
MODES=${MODES:-"machines provisioner"}
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

# start N DIR MODE: runs metalbed up in the background, waits for the ready
# line (the inventory is written and every BMC listens).
start() {
  local n=$1 dir=$2 mode=$3 t0 extra=(--no-provisioner)
  if [ "$mode" = provisioner ]; then
    extra=(--api-addr 127.0.0.1:0 --timeline-addr 127.0.0.1:0 --dhcp-addr 127.0.0.1:0 --tftp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0)
  fi
  : >"$work/out"
  t0=$(date +%s.%N)
  "$work/metalbed" up --nodes "$n" "${extra[@]}" --state-dir "$dir" --bmc-base-port 0 --redfish-addr 127.0.0.1:0 --web-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --pprof --log-level warn >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 3000); do
    grep -q "machines up" "$work/out" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "machines up" "$work/out" || { echo "not ready after 300 s" >&2; exit 1; }
  ready_s=$(secs "$t0" "$(date +%s.%N)")
}

# goroutines: the running process's goroutine count (its pprof endpoint).
goroutines() {
  local m
  for _ in $(seq 1 50); do
    m=$(grep -o 'metrics on http://[0-9.:]*' "$work/out" | cut -d' ' -f3) && [ -n "$m" ] && break
    sleep 0.1
  done
  curl -s "$m/debug/pprof/goroutine?debug=1" | awk 'NR == 1 {print $4}'
}

# redfish_systems: how many Systems the Redfish service lists.
redfish_systems() {
  local rf
  rf=$(grep -o 'Redfish https://[0-9.:]*' "$work/out" | cut -d' ' -f2)
  curl -sk -u admin:password "$rf/redfish/v1/Systems" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["Members@odata.count"])'
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
for mode in $MODES; do
for n in $SIZES; do
  dir="$work/state-$mode-$n"
  start "$n" "$dir" "$mode"
  first_ready=$ready_s
  sleep 5 # let the runtime settle after start-up
  idle_rss=$(kb VmRSS "$pid")
  gor=$(goroutines)
  systems=$(redfish_systems)
  answered=$(drive 50 "$dir")
  busy_rss=$(kb VmRSS "$pid")
  hwm=$(kb VmHWM "$pid")
  threads=$(kb Threads "$pid")
  stop
  first_stop=$stop_s
  start "$n" "$dir" "$mode" # restart on the same state
  restart_ready=$ready_s
  sleep 5
  restart_rss=$(kb VmRSS "$pid")
  stop
  per_machine=$((idle_rss / n))
  vbmc_mb=$((24 * n))
  vbmc_ratio=$(echo "$vbmc_mb * 1024 / $busy_rss" | bc)
  sim_cols="not measured | –"
  if [ -n "$ipmisim_kb" ]; then
    sim_cols="$(echo "$ipmisim_kb * $n / 1024" | bc) | $(echo "$ipmisim_kb * $n / $busy_rss" | bc)×"
  fi
  rows+="| $mode | $n | $(echo "scale=1; $idle_rss / 1024" | bc) | $(echo "scale=1; $restart_rss / 1024" | bc) | $(echo "scale=1; $busy_rss / 1024" | bc) | $(echo "scale=1; $hwm / 1024" | bc) | $per_machine | $gor | $threads | $answered/50 | $systems | ${first_ready}s / ${restart_ready}s | ${first_stop}s | $sim_cols | ~$vbmc_mb | ${vbmc_ratio}× |"$'\n'
  echo "$mode n=$n idle=${idle_rss}kB restart=${restart_rss}kB busy=${busy_rss}kB goroutines=$gor answered=$answered/50 systems=$systems ready=$first_ready restart=$restart_ready" >&2
done
done

{
  echo "# RSS of many idle machines and BMCs in one process"
  echo
  echo "Measured by \`bash ci/bench/rss.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -sr), $(go version | awk '{print $3}'); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
  echo "\`metalbed up --nodes N --bmc-base-port 0 --redfish-addr 127.0.0.1:0\`: N simulated machines, each with its own"
  echo "IPMI v2.0 BMC on its own UDP port and a Redfish System on the one Redfish service, all in one process;"
  echo "mode \"machines\" adds \`--no-provisioner\`, mode \"provisioner\" runs the provisioner beside them (API, DHCP,"
  echo "TFTP, HTTP; nothing enrolled). RSS is VmRSS from /proc: idle is 5 s after the ready line (first start, and"
  echo "again after a restart on the same state); \"after 50 sessions\" is after ipmitool -I lanplus -C 17"
  echo "\`power status\` against 50 BMCs spread over the fleet. Goroutines are counted idle, from --pprof;"
  echo "Redfish Systems is the Members@odata.count of GET /redfish/v1/Systems. Ready is process start to the"
  echo "ready line (inventory.json written, every BMC listening)."
  echo
  echo "| mode | machines | RSS idle (MB) | RSS idle after restart (MB) | RSS after 50 sessions (MB) | peak RSS (MB) | KB per machine, idle | goroutines, idle | threads | BMCs answering | Redfish Systems | ready: first start / restart | stop (SIGINT → exit 0) | ipmi_sim × N (MB) | ipmi_sim / metalbed | vbmc, documented (MB) | vbmc / metalbed |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
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
