#!/usr/bin/env bash
# Real Ironic at scale (issue 18 items 2 and 5): a real Ironic 21.4
# (ci/ironic/start.sh: ironic-api + ironic-conductor, sqlite, JSON-RPC, the
# ipmi and redfish hardware types) drives N metalbed machines, for each N in
# NS. Per N, all fresh and on loopback with free ports:
#   - `metalbed netboot serve` as Ironic's DHCP/TFTP/HTTP (its dnsmasq),
#   - Ironic with [conductor] sync_power_state_interval = SYNC_INTERVAL,
#     force_power_state_during_sync = false (a node found in another power
#     state is recorded, not forced back),
#   - `metalbed up --no-provisioner --nodes N --netboot-dhcp ...` (simulated
#     machines; IPMI BMCs and plain-HTTP Redfish),
#   - P = min(N, PEER_MAX) OpenIPMI ipmi_sim processes (ci/bench/ipmisim.sh), the peer.
# Then ci/bench/ironic_scale.py measures, through Ironic's REST API:
#   enroll   N nodes (even: ipmi, cipher suite 3; odd: redfish) with a port each
#   manage   all N at once until manageable with a power state (Ironic
#            verifies every BMC), ipmitool runs and their peak concurrency
#   sync     every machine powered on behind Ironic's back (metalbed's
#            Redfish), until Ironic's periodic sync has recorded all N on;
#            and the span of the conductor's "Updating recorded state" lines
#   peer     P ipmi nodes on P of metalbed's BMCs and P on P ipmi_sim
#            processes (the main set in maintenance), each verified; then each
#            set alone out of maintenance for two sync cycles, timed from
#            the conductor's ipmitool log lines (first start to last end);
#            P = PEER_MAX (default N; 0 skips the comparison): at N = 300,
#            300 ipmi_sim processes are too heavy for a 2-core host
#   deploy   DEPLOY_MAX (default N) of the N at once: direct deploy, ipxe
#            boot, metalbed's deploy ramdisk and agent, a 32 MiB whole-disk
#            image over netboot serve's HTTP; how many reach active by TIMEOUT
# with the CPU seconds of metalbed up, Ironic (and its ipmitool children) and
# netboot serve over each phase, and metalbed up's peak RSS (VmHWM). Writes
# ci/bench/results-ironic-scale.md.
#
#   bash ci/bench/ironic-scale.sh                    # NS="10 50 200"
#   NS="20 100" DEPLOY_MAX=50 TIMEOUT=600 bash ci/bench/ironic-scale.sh
#   NS=300 PEER_MAX=50 DEPLOY_MAX=50 SYNC_INTERVAL=30 IRONIC_WORKERS_POOL=100 bash ci/bench/ironic-scale.sh
#   KEEP_LOGS=DIR keeps each N's conductor log as DIR/conductor-N.log
#
# Ironic's own knobs pass through to ci/ironic/start.sh as an operator would
# set them: IRONIC_WORKERS_POOL ([conductor] workers_pool_size, start.sh's
# default 16; Ironic's own is 100), IRONIC_SYNC_POWER_WORKERS ([conductor]
# sync_power_state_workers, default 8), IRONIC_MIN_COMMAND_INTERVAL ([ipmi]
# min_command_interval, default 1). The report records the values used.
#
# Needs ironic-api, ironic-conductor, python3-ironicclient, python3-sushy,
# ipmitool, openipmi (ipmi_sim), go; every process started is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."

NS=${NS:-"10 50 200"}
SYNC_INTERVAL=${SYNC_INTERVAL:-10}
DEPLOY_MAX=${DEPLOY_MAX:-0}
PEER_MAX=${PEER_MAX:-}
TIMEOUT=${TIMEOUT:-900}
# Leases (the agents listen on theirs, port 9999): a /24 of its own, apart
# from the 127.0.0.x ranges the scenario tests hand out.
DHCP_RANGE=${DHCP_RANGE:-127.0.91.10-127.0.91.250}
out=ci/bench/results-ironic-scale.md
for tool in ipmitool ipmi_sim ironic-conductor ironic-api baremetal; do
  command -v "$tool" >/dev/null || { echo "ironic-scale.sh: $tool missing (ci/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
ironic_pidfiles=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${ironic_pidfiles[@]}"; do [ -e "$p" ] && bash ci/ironic/stop.sh "$p" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=ipmisim.sh
. ci/bench/ipmisim.sh

free_port() { # tcp|udp
  /usr/bin/python3 -c 'import socket,sys; s=socket.socket(type=socket.SOCK_STREAM if sys.argv[1]=="tcp" else socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

# RESULTS: the JSON-lines file the figures go to (default a temporary one);
# an existing one is appended to, and the report covers every line.
results=${RESULTS:-$work/results.jsonl}
go build -o "$work/metalbed" ./cmd/metalbed
"$work/metalbed" ramdisk build --no-grub --out "$work/ramdisk" >/dev/null
mkdir -p "$work/http/images" "$work/tftp"
"$work/metalbed" image build --kind whole-disk --boot-mode bios --placeholder-loader --size-mb 32 \
  --out "$work/http/images/instance.img" >"$work/image.txt"
md5=$(awk '$1 == "md5:" {print $2}' "$work/image.txt")

for n in $NS; do
  d=$work/n$n
  mkdir -p "$d"
  # The peer: P ipmi_sim processes (P = PEER_MAX, at most N).
  peers=${PEER_MAX:-$n}
  [ "$peers" -le "$n" ] || peers=$n
  sim_pids=()
  : >"$d/sim-ports"
  for ((i = 0; i < peers; i++)); do
    ipmisim_start "$d/ipmisim-$i" "sim$i"
    pids+=("$IPMISIM_PID")
    sim_pids+=("$IPMISIM_PID")
    echo "$IPMISIM_PORT" >>"$d/sim-ports"
  done
  # Ironic's DHCP/TFTP/HTTP: metalbed netboot serve handing iPXE clients
  # Ironic's boot.ipxe.
  http_port=$(free_port tcp)
  dhcp_port=$(free_port udp)
  tftp_port=$(free_port udp)
  http_url=http://127.0.0.1:$http_port
  "$work/metalbed" netboot serve --dhcp-addr "127.0.0.1:$dhcp_port" --server-ip 127.0.0.1 --range "$DHCP_RANGE" \
    --answer-unknown --tftp-root "$work/tftp" --tftp-addr "127.0.0.1:$tftp_port" --http-root "$work/http" \
    --http-addr "127.0.0.1:$http_port" --ipxe-script "$http_url/boot.ipxe" >"$d/netboot.log" 2>&1 &
  netboot_pid=$!
  pids+=("$netboot_pid")
  ironic_pidfiles+=("$d/ironic/pids")
  IRONIC_HTTP_URL=$http_url IRONIC_HTTP_ROOT=$work/http IRONIC_TFTP_ROOT=$work/tftp IRONIC_REDFISH=1 \
    IRONIC_SYNC_POWER_INTERVAL=$SYNC_INTERVAL IRONIC_FORCE_POWER_SYNC=false IRONIC_FILE_URL_ALLOWED_PATHS=$work/ramdisk \
    IRONIC_WATCH_PID=$$ bash ci/ironic/start.sh "$d/ironic" >/dev/null
  "$work/metalbed" up --no-provisioner --nodes "$n" --state-dir "$d/up" --bmc-base-port 0 --redfish-addr 127.0.0.1:0 \
    --redfish-plain-http --web-addr 127.0.0.1:0 --netboot-dhcp "127.0.0.1:$dhcp_port" --netboot-tftp-port "$tftp_port" \
    --disk-size 1GiB >"$d/up.out" 2>"$d/up.log" &
  up_pid=$!
  pids+=("$up_pid")
  for _ in $(seq 1 3000); do
    grep -q ' up, BMCs on ' "$d/up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$d/up.log" >&2; exit 1; }
    sleep 0.1
  done
  procs="metalbed=$up_pid,netboot=$netboot_pid,ironic-conductor=$(sed -n 1p "$d/ironic/pids"),ironic-api=$(sed -n 2p "$d/ironic/pids")"
  [ "${#sim_pids[@]}" -eq 0 ] || procs+=",ipmi_sim=$(IFS=+; echo "${sim_pids[*]}")"
  python3 ci/bench/ironic_scale.py run "$results" "$n" "$d/up/inventory.json" "$d/ironic/env" "$procs" \
    "$d/sim-ports" "$http_url/images/instance.img" "$md5" "$work/ramdisk" "$SYNC_INTERVAL" "$DEPLOY_MAX" "$TIMEOUT"
  # Stop this N's processes (by PID) before the next.
  bash ci/ironic/stop.sh "$d/ironic/pids" >/dev/null
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  if [ -n "${KEEP_LOGS:-}" ]; then cp "$d/ironic/ironic-conductor.log" "$KEEP_LOGS/conductor-$n.log"; fi
  # The report so far: an interrupted run keeps the sizes it finished.
  python3 ci/bench/ironic_scale.py report "$results" "$out"
done
cat "$out"
