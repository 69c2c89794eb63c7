#!/usr/bin/env bash
# Benchmarks metalbed's Redfish service against sushy-tools' emulator (its
# fake system driver, run from its source) in one run, and writes
# ci/bench/results-redfish.md:
#   - GET /redfish/v1/Systems/<id> and POST .../Actions/ComputerSystem.Reset
#     (On and ForceOff in turn): requests/s, p50 and p99 latency, CLIENTS
#     keep-alive clients for SECS seconds (after 1 s unmeasured), over NODES
#     systems on both sides; ROUNDS rounds, the peers alternating first.
#   - RSS of one process serving MEM_NODES systems after a GET of each.
# The load generator is ci/bench/redfishload (the same binary against both).
#
#   SUSHY_TOOLS=/tmp/sushy-tools bash ci/bench/redfish.sh
#   SUSHY_TOOLS=/tmp/sushy-tools ROUNDS=3 SECS=3 MEM_NODES=1000 bash ci/bench/redfish.sh
#
# sushy-tools is not part of metalbed: fetch its source into a directory
# and name it in SUSHY_TOOLS (nothing is installed from it):
#   git clone https://opendev.org/openstack/sushy-tools /tmp/sushy-tools
#   apt-get install python3-flask python3-tenacity python3-bcrypt python3-webob
# Without it the script says so and exits 0 (nothing measured).
# Knobs (env): NODES (100), CLIENTS (16), SECS (5), ROUNDS (5), MEM_NODES
# (10000; 0 skips the memory part), HTTPS (1; 0 skips the HTTPS case),
# PY (/usr/bin/python3), OUT.
# Only processes this script started are stopped, by PID.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out_md=${OUT:-$here/results-redfish.md}
NODES=${NODES:-100}
CLIENTS=${CLIENTS:-16}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-5}
MEM_NODES=${MEM_NODES:-10000}
HTTPS=${HTTPS:-1}
PY=${PY:-/usr/bin/python3}
SUSHY_TOOLS=${SUSHY_TOOLS:-}

howto() {
  cat >&2 <<EOF
redfish bench: $1; skipped, nothing measured. To run it:
  git clone https://opendev.org/openstack/sushy-tools /tmp/sushy-tools
  apt-get install python3-flask python3-tenacity python3-bcrypt python3-webob
  SUSHY_TOOLS=/tmp/sushy-tools bash ci/bench/redfish.sh
EOF
  exit 0
}
[ -n "$SUSHY_TOOLS" ] || howto "SUSHY_TOOLS (a sushy-tools source directory) is not set"
[ -f "$SUSHY_TOOLS/sushy_tools/emulator/main.py" ] || howto "no sushy-tools source in $SUSHY_TOOLS"
"$PY" -c 'import flask, tenacity, bcrypt, webob, requests' 2>/dev/null ||
  howto "$PY lacks a module sushy-tools imports (flask, tenacity, bcrypt, webob, requests)"
command -v curl >/dev/null || howto "curl missing"

ulimit -n 65536 2>/dev/null || true # one UDP socket per IPMI BMC
work=$(mktemp -d /tmp/metalbed-redfish-bench.XXXXXX) # state "on disk"
shm=$(mktemp -d /dev/shm/metalbed-redfish-bench.XXXXXX) # state on tmpfs
declare -A pid url
cleanup() {
  for p in "${pid[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$shm"
}
trap cleanup EXIT

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "building metalbed and redfishload..." >&2
(cd "$repo" && go build -o "$work/metalbed" ./cmd/metalbed && go build -o "$work/redfishload" ./ci/bench/redfishload)
st_commit=$(git -C "$SUSHY_TOOLS" log -1 --format='%h %cs' 2>/dev/null ||
  git --git-dir="${SUSHY_TOOLS_GIT:-/nonexistent}" log -1 --format='%h %cs' 2>/dev/null || echo "unknown commit")

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }
freeport() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_mb NAME N STATE_DIR FLAGS...: metalbed up with N simulated machines
# (IPMI BMCs and the Redfish service), waits for its ready line.
start_mb() {
  local name=$1 n=$2 dir=$3
  shift 3
  "$work/metalbed" up --nodes "$n" --no-provisioner --bmc-base-port 0 --redfish-addr 127.0.0.1:0 \
    --state-dir "$dir" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid[$name]=$!
  for _ in $(seq 1 6000); do
    [ -s "$work/$name.out" ] && break
    kill -0 "${pid[$name]}" 2>/dev/null || { cat "$work/$name.err" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/$name.out" ] || { echo "$name: not ready after 600 s" >&2; exit 1; }
  url[$name]=$(grep -o 'Redfish https\?://[0-9.:]*' "$work/$name.out" | cut -d' ' -f2)
  [ -n "${url[$name]}" ] || { echo "$name: no Redfish URL in: $(cat "$work/$name.out")" >&2; exit 1; }
}

# st_conf FILE N STATE_DIR [AUTH_FILE]: a sushy-tools config with the fake
# driver and N fake systems shaped like metalbed's (one NIC each).
st_conf() {
  "$PY" - "$@" <<'PY'
import sys
path, n, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write("SUSHY_EMULATOR_FAKE_DRIVER = True\n")
    f.write("SUSHY_EMULATOR_STATE_DIR = %r\n" % state)
    if len(sys.argv) > 4:
        f.write("SUSHY_EMULATOR_AUTH_FILE = %r\n" % sys.argv[4])
    f.write("SUSHY_EMULATOR_FAKE_SYSTEMS = [\n")
    for i in range(n):
        f.write("  {'uuid': '6d620000-0000-4000-8000-%012x', 'name': 'node-%d', 'power_state': 'Off',"
                " 'nics': [{'mac': '52:54:00:%02x:%02x:%02x', 'ip': '127.1.%d.%d'}]},\n"
                % (i, i, i >> 16, (i >> 8) & 255, i & 255, (i >> 8) & 255, i & 255))
    f.write("]\n")
PY
}

# start_st NAME CONF FLAGS...: sushy-emulator from its source on a free
# port; ready once its Systems collection answers (the fake driver loads
# its systems on that first request).
start_st() {
  local name=$1 conf=$2 port scheme=http
  shift 2
  case " $* " in *" --ssl-certificate "*) scheme=https ;; esac
  port=$(freeport)
  (cd "$SUSHY_TOOLS" && PYTHONPATH="$SUSHY_TOOLS" exec "$PY" -m sushy_tools.emulator.main \
    --config "$conf" -i 127.0.0.1 -p "$port" "$@") >"$work/$name.out" 2>"$work/$name.err" &
  pid[$name]=$!
  url[$name]=$scheme://127.0.0.1:$port
  for _ in $(seq 1 6000); do
    curl -skf -o /dev/null -u admin:password "${url[$name]}/redfish/v1/Systems" && return
    kill -0 "${pid[$name]}" 2>/dev/null || { cat "$work/$name.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name: not ready after 600 s" >&2
  exit 1
}

# stop NAME: SIGINT (metalbed's clean stop; sushy-emulator exits on it too).
stop() {
  kill -INT "${pid[$1]}" 2>/dev/null || true
  wait "${pid[$1]}" 2>/dev/null || true
  unset "pid[$1]"
}

# ------------------------------------------------------------ peers
echo "starting the peers ($NODES systems each)..." >&2
start_mb mb-disk "$NODES" "$work/mb-disk" --redfish-plain-http
start_mb mb-shm "$NODES" "$shm/mb-shm" --redfish-plain-http
st_conf "$work/st-disk.py" "$NODES" "$work/st-disk"
start_st st-disk "$work/st-disk.py"
st_conf "$work/st-shm.py" "$NODES" "$shm/st-shm"
start_st st-shm "$work/st-shm.py"
# Basic auth in sushy-tools is an htpasswd file, bcrypt only; cost 5 is
# Apache htpasswd -B's default (the cheapest it writes is 4).
"$PY" -c 'import bcrypt; print("admin:" + bcrypt.hashpw(b"password", bcrypt.gensalt(5)).decode())' >"$work/htpasswd"
st_conf "$work/st-auth.py" "$NODES" "$work/st-auth" "$work/htpasswd"
start_st st-auth "$work/st-auth.py"
if [ "$HTTPS" = 1 ]; then
  start_mb mb-tls "$NODES" "$work/mb-tls"
  cert=$(find "$work/mb-tls" -name redfish-cert.pem | head -1)
  key=$(find "$work/mb-tls" -name redfish-key.pem | head -1)
  st_conf "$work/st-tls.py" "$NODES" "$work/st-tls"
  start_st st-tls "$work/st-tls.py" --ssl-certificate "$cert" --ssl-key "$key"
fi

# Cases: NAME OP METALBED-PEER METALBED-AUTH SUSHY-PEER SUSHY-AUTH.
# metalbed always authenticates: a session token (X-Auth-Token, what
# Ironic uses first) or basic auth.
session=(-user admin -pass password -session)
basic=(-user admin -pass password)
cases=(
  "get get mb-disk session st-disk none"
  "reset-disk reset mb-disk session st-disk none"
  "reset-tmpfs reset mb-shm session st-shm none"
  "get-basic get mb-disk basic st-auth basic"
)
[ "$HTTPS" = 1 ] && cases+=("get-https get mb-tls session st-tls none")

results=$work/results
: >"$results"
# measure CASE ROUND PEERNAME PROCESS OP AUTH: one redfishload run.
measure() {
  local c=$1 r=$2 who=$3 proc=$4 op=$5 auth=$6 args=() line
  case $auth in session) args=("${session[@]}") ;; basic) args=("${basic[@]}") ;; esac
  line=$("$work/redfishload" -url "${url[$proc]}" -insecure -op "$op" -c "$CLIENTS" -d "${SECS}s" "${args[@]}") ||
    { echo "$c $who round $r: redfishload failed" >&2; exit 1; }
  echo "$c $who $r $line" >>"$results"
  echo "round $r $c $who: $line" >&2
}

for r in $(seq 1 "$ROUNDS"); do
  for cs in "${cases[@]}"; do
    read -r c op mb mbauth st stauth <<<"$cs"
    if [ $((r % 2)) = 1 ]; then
      measure "$c" "$r" metalbed "$mb" "$op" "$mbauth"
      measure "$c" "$r" sushy-tools "$st" "$op" "$stauth"
    else
      measure "$c" "$r" sushy-tools "$st" "$op" "$stauth"
      measure "$c" "$r" metalbed "$mb" "$op" "$mbauth"
    fi
  done
done
mb_rss_small=$(kb VmRSS "${pid[mb-disk]}")
st_rss_small=$(kb VmRSS "${pid[st-disk]}")
for p in "${!pid[@]}"; do stop "$p"; done

# ------------------------------------------------------------ memory
mem=""
if [ "$MEM_NODES" -gt 0 ]; then
  echo "memory: metalbed up --nodes $MEM_NODES..." >&2
  t0=$(date +%s)
  start_mb mb-mem "$MEM_NODES" "$work/mb-mem" --redfish-plain-http
  mb_ready=$(($(date +%s) - t0))
  sleep 2
  mb_idle=$(kb VmRSS "${pid[mb-mem]}")
  mb_sweep=$("$work/redfishload" -url "${url[mb-mem]}" -op sweep -c "$CLIENTS" "${session[@]}")
  mb_rss=$(kb VmRSS "${pid[mb-mem]}")
  mb_hwm=$(kb VmHWM "${pid[mb-mem]}")
  stop mb-mem
  # The same machines and IPMI BMCs without the Redfish service (restart on
  # the same state): what Redfish adds.
  "$work/metalbed" up --nodes "$MEM_NODES" --no-provisioner --bmc-base-port 0 --redfish-addr "" \
    --state-dir "$work/mb-mem" >"$work/mb-norf.out" 2>"$work/mb-norf.err" &
  pid[mb-norf]=$!
  for _ in $(seq 1 6000); do [ -s "$work/mb-norf.out" ] && break; sleep 0.1; done
  sleep 2
  mb_norf=$(kb VmRSS "${pid[mb-norf]}")
  stop mb-norf

  echo "memory: sushy-tools with $MEM_NODES fake systems..." >&2
  st_conf "$work/st-mem.py" "$MEM_NODES" "$work/st-mem"
  t0=$(date +%s)
  start_st st-mem "$work/st-mem.py"
  st_ready=$(($(date +%s) - t0))
  st_idle=$(kb VmRSS "${pid[st-mem]}")
  # Failed GETs are counted, not fatal: the peer's answer is the result.
  st_sweep=$("$work/redfishload" -url "${url[st-mem]}" -op sweep -c "$CLIENTS" 2>"$work/st-sweep.err") || true
  st_rss=$(kb VmRSS "${pid[st-mem]}")
  st_hwm=$(kb VmHWM "${pid[st-mem]}")
  stop st-mem
  ok_of() { local v; v=$(sed -n 's/.* requests=\([0-9]*\) .*/\1/p' <<<"$1"); echo "${v:-0}"; }
  mem="$MEM_NODES $mb_ready $mb_idle $mb_rss $mb_hwm $mb_norf $st_ready $st_idle $st_rss $st_hwm $(ok_of "$mb_sweep") $(ok_of "$st_sweep")"
  echo "memory: $mem" >&2
  echo "metalbed sweep: $mb_sweep" >&2
  echo "sushy-tools sweep: $st_sweep $(head -c 300 "$work/st-sweep.err")" >&2
  st_sweep_err=$(grep -o '"message": "[^"]*"' "$work/st-sweep.err" | head -1 || true)

  # The Redfish service alone over 10 000 fake machines (a Go benchmark).
  echo "memory: go test -bench Systems10000 ./bmcemu/redfish..." >&2
  (cd "$repo" && go test -run '^$' -bench Systems10000 -benchtime 1000x -count "$ROUNDS" ./bmcemu/redfish) >"$work/harness" 2>&1
  harness=$("$PY" - "$work/harness" <<'PY'
import re, statistics, sys
rows = [dict((u, float(v)) for v, u in re.findall(r"([0-9.]+) (B/system-after-GET|B/system-built|MB-RSS)", l))
        for l in open(sys.argv[1]) if l.startswith("BenchmarkSystems10000")]
def f(k, nd):
    xs = [r[k] for r in rows]
    return "%.*f (%.*f–%.*f)" % (nd, statistics.median(xs), nd, min(xs), nd, max(xs))
print("| Redfish service alone over 10 000 fake machines (`go test -bench Systems10000 ./bmcemu/redfish`, %d runs) "
      "| – | – | %s (whole test process) | – | live heap: %s B built, %s B after the GETs |"
      % (len(rows), f("MB-RSS", 1), f("B/system-built", 0), f("B/system-after-GET", 0)))
PY
  )
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------ report
"$PY" - "$results" "$mem" "${harness:-}" "${st_sweep_err:-}" >"$work/tables" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    case, who, rnd, *kv = line.split()
    d = dict(x.split("=", 1) for x in kv)
    rows.setdefault(case, {}).setdefault(who, []).append(
        (float(d["rps"]), float(d["p50_ms"]), float(d["p99_ms"])))
def fmt(xs, nd=1):
    return "%.*f (%.*f–%.*f)" % (nd, statistics.median(xs), nd, min(xs), nd, max(xs))
label = {
    "get": "GET System, token / no auth",
    "reset-disk": "Reset On/ForceOff, state on disk",
    "reset-tmpfs": "Reset On/ForceOff, state on tmpfs",
    "get-basic": "GET System, basic auth / htpasswd",
    "get-https": "GET System over HTTPS, token / no auth",
}
print("| case | metalbed req/s | sushy-tools req/s | req/s ratio | metalbed p50 / p99 ms | sushy-tools p50 / p99 ms | p50 ratio (sushy ÷ metalbed) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for case, by in rows.items():
    mb, st = by["metalbed"], by["sushy-tools"]
    ratio = [a[0] / b[0] for a, b in zip(mb, st)]
    p50r = [b[1] / a[1] for a, b in zip(mb, st)]
    print("| %s | %s | %s | **%.1f×** (%.1f–%.1f) | %s / %s | %s / %s | %.1f× (%.1f–%.1f) |" % (
        label.get(case, case), fmt([x[0] for x in mb]), fmt([x[0] for x in st]),
        statistics.median(ratio), min(ratio), max(ratio),
        fmt([x[1] for x in mb], 2), fmt([x[2] for x in mb], 2),
        fmt([x[1] for x in st], 1), fmt([x[2] for x in st], 1),
        statistics.median(p50r), min(p50r), max(p50r)))
if sys.argv[2]:
    n, mbr, mbi, mbm, mbh, mbn, str_, sti, stm, sth, mbok, stok = map(int, sys.argv[2].split())
    mib = lambda k: "%.1f" % (k / 1024)
    print()
    print("| %d systems in one process | ready (s) | RSS idle (MB) | RSS after a GET of each (MB) | peak RSS (MB) | KB per system |" % n)
    print("|---|---:|---:|---:|---:|---:|")
    print("| metalbed up (sim machines + IPMI BMCs + Redfish); %d of %d GETs 2xx | %d | %s | %s | %s | %.1f |"
          % (mbok, n, mbr, mib(mbi), mib(mbm), mib(mbh), mbm / n))
    print("| same machines and BMCs, no Redfish | – | %s | – | – | Redfish adds %.1f |" % (mib(mbn), (mbm - mbn) / n))
    if sys.argv[3]:
        print(sys.argv[3])
    why = " (the others: %s)" % sys.argv[4] if stok < n and sys.argv[4] else ""
    print("| sushy-tools, fake driver; %d of %d GETs 2xx%s | %d | %s | %s | %s | %.1f |"
          % (stok, n, why, str_, mib(sti), mib(stm), mib(sth), stm / n))
    print()
    print("RSS ratio sushy-tools ÷ metalbed up (whole processes): %.2f×" % (stm / mbm))
PY

{
  echo "# Redfish: metalbed versus sushy-tools"
  echo
  echo "Measured by \`bash ci/bench/redfish.sh\` from $started on $(hostname) ($(nproc) cores, $(uname -sr),"
  echo "$(go version | awk '{print $3}'), $("$PY" --version), sushy-tools $st_commit from source, Flask $("$PY" -c 'import flask; print(flask.__version__)'))."
  echo "Load average at start $load_start, at end $load_end: other jobs shared the machine."
  echo
  echo "Both peers serve $NODES systems over plain HTTP on 127.0.0.1: metalbed is \`metalbed up --nodes $NODES"
  echo "--no-provisioner --redfish-plain-http\` (simulated machines, their IPMI BMCs and the Redfish service in"
  echo "one process); sushy-tools is \`sushy-emulator\` (Flask's threaded server, as it ships) with its fake"
  echo "system driver and $NODES fake systems. ci/bench/redfishload drives both: $CLIENTS keep-alive clients,"
  echo "client i on system i mod $NODES, ${SECS} s measured after 1 s unmeasured, per case and peer; $ROUNDS rounds,"
  echo "the peer that goes first alternating. Figures: median over the rounds (min–max); ratios are medians"
  echo "of the per-round ratios. Every request answered 2xx (the load generator fails otherwise)."
  echo
  cat "$work/tables"
  echo
  echo "RSS after the throughput rounds ($NODES systems): metalbed $((mb_rss_small / 1024)) MB, sushy-tools $((st_rss_small / 1024)) MB."
} >"$out_md"
cat "$out_md"
echo "wrote $out_md" >&2
