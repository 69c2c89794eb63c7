#!/usr/bin/env bash
# Fleet scale (issue 18): N machines deployed at once by metalbed's own
# conductor, for each N in NS (default "1 10 100"): one `metalbed up
# --nodes N --enroll` per N, every node made available (no cleaning), then
# all N deployed at once (direct deploy of one small whole-disk image,
# local boot) and undeployed at once with automated cleaning. Per N: wall
# time from the requests to the last node active / available, the up
# process's CPU seconds over the same span (utime+stime from /proc), its
# peak RSS (VmHWM). Cost per node at N against the same at N=1 is the
# growth ratio (1.0: linear). Writes ci/bench/results-scale.md and, when
# python3-matplotlib is installed, ci/bench/scale.png (OUT names another
# report: its PNG is the report's name with .png).
# Env: NS ("1 10 100"), DEPLOY (direct or iscsi; default direct), BOOT (the
# nodes' boot interface, default ipxe: kernel and ramdisk over HTTP, as fleets
# boot; pxe moves them over TFTP, 1432-byte blocks),
# TIMEOUT (seconds per phase, 1800), PYTHON (/usr/bin/python3: Debian's, where
# python3-matplotlib installs).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-ci/bench/results-scale.md}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/metalbed" ./cmd/metalbed
"$work/metalbed" image build --kind whole-disk --placeholder-loader --size-mb 32 --out "$work/instance.img" >"$work/image.txt"
BIN="$work/metalbed" WORK="$work" NS="${NS:-1 10 100}" DEPLOY="${DEPLOY:-direct}" BOOT="${BOOT:-ipxe}" TIMEOUT="${TIMEOUT:-1800}" "${PYTHON:-/usr/bin/python3}" - "$out" <<'PY'
import concurrent.futures, datetime, os, platform, re, sys, time
sys.path.insert(0, "ci/bench")
from deploylib import api as api_once, up

BIN, WORK, DEPLOY, BOOT, TIMEOUT = os.environ["BIN"], os.environ["WORK"], os.environ["DEPLOY"], os.environ["BOOT"], int(os.environ["TIMEOUT"])
md5 = re.search(r"^md5: (\w+)$", open(os.path.join(WORK, "image.txt")).read(), re.M).group(1)
tck = os.sysconf("SC_CLK_TCK")
pool = concurrent.futures.ThreadPoolExecutor(32)

def api(base, method, path, body=None):
    """An API call given 120 s (a thousand machines booting share 2 CPUs
    with the API); a GET that times out is asked again."""
    return api_once(base, method, path, body, timeout=120, get_retries=4)

def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck

def hwm(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def all_in(base, names, want, deadline):
    """Waits until every node rests in want; fails on a failed state."""
    while time.time() < deadline:
        nodes = api(base, "GET", "/v1/nodes?fields=name,provision_state,target_provision_state,last_error")["nodes"]
        bad = [n for n in nodes if n["provision_state"] in ("deploy failed", "clean failed", "error")]
        if bad:
            raise RuntimeError("%d failed, e.g. %s: %s" % (len(bad), bad[0]["name"], bad[0]["last_error"]))
        if sum(1 for n in nodes if n["name"] in names and n["provision_state"] == want and not n["target_provision_state"]) == len(names):
            return time.time()
        time.sleep(0.5 if len(names) <= 100 else 2)
    raise RuntimeError("not all %s in time" % want)

def each(f, names):
    list(pool.map(f, names))

def run(n):
    t_start = time.time()
    with up(BIN, WORK, "n%d" % n, "sim", n, "--automated-clean=false", "--notify-delay", "1s", "--boot-interface", BOOT) as inv:
        started = time.time() - t_start
        base = inv["api"]
        pid = int(open(os.path.join(WORK, "n%d" % n, ".lock")).read().split()[0])
        names = [m["name"] for m in inv["nodes"]]
        each(lambda m: api(base, "PATCH", "/v1/nodes/" + m, [{"op": "replace", "path": "/deploy_interface", "value": DEPLOY}]), names)
        for target, want in (("manage", "manageable"), ("provide", "available")):
            each(lambda m: api(base, "PUT", "/v1/nodes/%s/states/provision" % m, {"target": target}), names)
            all_in(base, names, want, time.time() + TIMEOUT)
        info = [{"op": "add", "path": "/instance_info/" + k, "value": v} for k, v in {
            "image_source": "file://" + os.path.join(WORK, "instance.img"), "image_checksum": md5,
            "image_type": "whole-disk", "capabilities": {"boot_option": "local"}}.items()]
        each(lambda m: api(base, "PATCH", "/v1/nodes/" + m, info + [{"op": "replace", "path": "/automated_clean", "value": True}]), names)
        res = {"start": started}
        for phase, target, want in (("deploy", "active", "active"), ("undeploy", "deleted", "available")):
            c0, t0 = cpu(pid), time.time()
            each(lambda m: api(base, "PUT", "/v1/nodes/%s/states/provision" % m, {"target": target}), names)
            t1 = all_in(base, names, want, t0 + TIMEOUT)
            res[phase] = (t1 - t0, cpu(pid) - c0)
            print("N=%d %s: %.1f s, %.1f CPU s" % (n, phase, *res[phase]), flush=True)
        res["rss"] = hwm(pid)
        return res

ns = [int(x) for x in os.environ["NS"].split()]
load0 = open("/proc/loadavg").read().split()[:3]
results = {}
for n in ns:
    try:
        results[n] = run(n)
    except Exception as e:  # one N failing leaves the others' figures
        print("N=%d failed: %s" % (n, e), flush=True)
        results[n] = {"error": str(e)}
ok = [n for n in ns if "error" not in results[n]]
load1 = open("/proc/loadavg").read().split()[:3]
base_n = ok[0] if ok else ns[0]
with open(sys.argv[1], "w") as f:
    w = lambda s="": f.write(s + "\n")
    w("# Fleet scale: N machines deployed and undeployed at once")
    w()
    w("Generated by `ci/bench/scale.sh` on %s, %d CPUs, %s; load average %s at start, %s at end (the machine may be shared)."
      % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), os.cpu_count(), platform.release(), " ".join(load0), " ".join(load1)))
    w()
    w("One `metalbed up --nodes N --enroll --boot-interface %s` per N (simulated machines, IPMI, metalbed's conductor; start: from the command to inventory.json written, every BMC listening and every node enrolled); every node `%s` deploy of one 32 MiB "
      "whole-disk image (`metalbed image build --kind whole-disk --placeholder-loader --size-mb 32`), all N requested at once "
      "(32 API clients); then all N undeployed at once with automated cleaning (the agent's erase_devices_metadata). Wall: "
      "from the first request to the last node at rest in `active` / `available`. CPU: the up process's utime+stime over that span "
      "(conductor, BMCs, boot servers, the in-process ramdisks and agents, machines). Growth: CPU seconds per node at N over the same "
      "at N=%d (1.0 = linear)." % (BOOT, DEPLOY, base_n))
    w()
    w("| N | start s | deploy wall s | deploy CPU s | CPU s per node | growth | undeploy+clean wall s | undeploy CPU s | CPU s per node | growth | peak RSS MB | RSS per node MB |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per = lambda n, ph: results[n][ph][1] / n
    for n in ns:
        r = results[n]
        if "error" in r:
            w("| %d | failed: %s |||||||||||" % (n, r["error"].replace("|", "/")))
            continue
        w("| %d | %.1f | %.1f | %.1f | %.3f | %.2f× | %.1f | %.1f | %.3f | %.2f× | %.0f | %.2f |" % (
            n, r["start"], r["deploy"][0], r["deploy"][1], per(n, "deploy"), per(n, "deploy") / per(base_n, "deploy"),
            r["undeploy"][0], r["undeploy"][1], per(n, "undeploy"), per(n, "undeploy") / per(base_n, "undeploy"),
            r["rss"], r["rss"] / n))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for ph in ("deploy", "undeploy"):
            ax[0].plot(ok, [results[n][ph][0] for n in ok], marker="o", label=ph + " wall s")
            ax[0].plot(ok, [results[n][ph][1] for n in ok], marker="x", linestyle="--", label=ph + " CPU s")
        ax[1].plot(ok, [results[n]["rss"] for n in ok], marker="o", label="peak RSS MB")
        for a in ax:
            a.set_xscale("log"); a.set_yscale("log"); a.set_xlabel("machines deployed at once"); a.grid(True, which="both", alpha=0.3); a.legend()
        fig.suptitle("metalbed fleet scale (%s deploy, %s boot), %s" % (DEPLOY, BOOT, datetime.date.today()))
        fig.tight_layout()
        png = "scale.png" if sys.argv[1] == "ci/bench/results-scale.md" else os.path.basename(sys.argv[1])[:-3] + ".png"
        fig.savefig(os.path.join(os.path.dirname(sys.argv[1]), png), dpi=80)
        w()
        w(f"![growth curves]({png})")
    except ImportError:
        w()
        w("(No plot: python3-matplotlib is not installed.)")
print(open(sys.argv[1]).read())
PY
