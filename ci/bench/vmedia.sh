#!/usr/bin/env bash
# Benchmarks a virtual-media deploy against a PXE deploy of the same image
# on the same kind of machine, in one run: one `metalbed up --enroll
# --enroll-driver redfish` with two machines, node-0 booting the agent by
# PXE (boot interface pxe) and node-1 from the deploy ISO inserted through
# Redfish VirtualMedia (redfish-virtual-media); both the direct deploy of
# one whole-disk image, local boot. ROUNDS (default 5) alternating rounds,
# one deploy at a time; per deploy the time from the request to `active`
# and to the instance's `instance.booted`; undeployed (no cleaning) in
# between. BACKENDS (default "sim"; "sim libvirt" with root and libvirtd,
# ci/libvirt/start.sh). Writes ci/bench/results-vmedia.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=ci/bench/results-vmedia.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -tags libvirt_dlopen -o "$work/metalbed" ./cmd/metalbed
if [[ " ${BACKENDS:-sim} " == *" libvirt "* ]]; then
  "$work/metalbed" ramdisk build --out "$work/ramdisk" >/dev/null
fi
"$work/metalbed" image build --kind whole-disk --out "$work/instance.img" >"$work/image.txt"
BIN="$work/metalbed" WORK="$work" BACKENDS="${BACKENDS:-sim}" ROUNDS="${ROUNDS:-5}" python3 - "$out" <<'PY'
import datetime, json, os, platform, re, statistics, subprocess, sys, time, urllib.request

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
md5 = re.search(r"^md5: (\w+)$", open(os.path.join(WORK, "image.txt")).read(), re.M).group(1)

def api(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "1.78"})
    with urllib.request.urlopen(req, timeout=30) as r:
        b = r.read()
        return json.loads(b) if b else None

def wait_state(base, node, want, deadline):
    while time.time() < deadline:
        n = api(base, "GET", "/v1/nodes/" + node)
        if n["provision_state"] == want and not n.get("target_provision_state"):
            return time.time()
        if n["provision_state"] in ("deploy failed", "clean failed", "error"):
            raise RuntimeError("%s: %s: %s" % (node, n["provision_state"], n.get("last_error")))
        time.sleep(0.25)
    raise RuntimeError("%s: not %s in time" % (node, want))

def booted_at(base, name, after, deadline):
    while time.time() < deadline:
        tl = api(base, "GET", "/v1/nodes/%s/timeline" % name)
        for e in reversed(tl["entries"] if isinstance(tl, dict) else tl):
            if e["kind"] != "instance.booted":
                continue
            whole, _, frac = e["time"].rstrip("Z").partition(".")
            t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + (frac or "0"))
            if t >= after:
                return t
        time.sleep(0.5)
    raise RuntimeError(name + ": instance did not boot")

def run(backend):
    d = os.path.join(WORK, backend)
    args = [BIN, "up", "--backend", backend, "--nodes", "2", "--enroll", "--enroll-driver", "redfish",
            "--automated-clean=false", "--state-dir", d, "--disk-size", "4GiB", "--bmc-base-port", "0",
            "--api-addr", "127.0.0.1:0", "--timeline-addr", "127.0.0.1:0", "--dhcp-addr", "127.0.0.1:0",
            "--tftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0",
            "--redfish-addr", "127.0.0.1:0", "--log-level", "warn"]
    if backend == "libvirt":
        args += ["--ramdisk-dir", os.path.join(WORK, "ramdisk"), "--boot-network", "10.238.0.1/24", "--remove-vms"]
    log = open(d + ".log", "w")
    p = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        inv_path = os.path.join(d, "inventory.json")
        for _ in range(3000):
            if os.path.exists(inv_path):
                break
            time.sleep(0.1)
        inv = json.load(open(inv_path))
        base = inv["api"]
        kinds = {"node-0": "pxe", "node-1": "redfish-virtual-media"}
        # Undeploying clears instance_info (as Ironic): set before each deploy.
        instance = [{"op": "add", "path": "/instance_info/" + k, "value": v} for k, v in {
            "image_source": "file://" + os.path.join(WORK, "instance.img"), "image_checksum": md5,
            "root_gb": "1", "image_type": "whole-disk", "capabilities": {"boot_option": "local"}}.items()]
        for name, boot in kinds.items():
            api(base, "PATCH", "/v1/nodes/" + name, [{"op": "replace", "path": "/deploy_interface", "value": "direct"},
                                                     {"op": "replace", "path": "/boot_interface", "value": boot}])
            for target, want in (("manage", "manageable"), ("provide", "available")):
                api(base, "PUT", "/v1/nodes/%s/states/provision" % name, {"target": target})
                wait_state(base, name, want, time.time() + 300)
        res = {b: [] for b in kinds.values()}
        for r in range(int(os.environ["ROUNDS"])):
            order = list(kinds.items()) if r % 2 == 0 else list(reversed(kinds.items()))
            for name, boot in order:
                api(base, "PATCH", "/v1/nodes/" + name, instance)
                t0 = time.time()
                api(base, "PUT", "/v1/nodes/%s/states/provision" % name, {"target": "active"})
                active = wait_state(base, name, "active", t0 + 900) - t0
                booted = booted_at(base, name, t0, t0 + 900) - t0
                res[boot].append((active, booted))
                print(backend, r, boot, round(active, 1), round(booted, 1), flush=True)
                api(base, "PUT", "/v1/nodes/%s/states/provision" % name, {"target": "deleted"})
                wait_state(base, name, "available", time.time() + 600)
        return res
    finally:
        p.send_signal(2)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()

results = {b: run(b) for b in os.environ["BACKENDS"].split()}

def stat(xs):
    return statistics.median(xs), min(xs), max(xs)

with open(sys.argv[1], "w") as f:
    f.write("# Virtual media deploy vs PXE deploy\n\n")
    f.write("Generated by `ci/bench/vmedia.sh` on %s UTC (%s, %d cores, load average %s at the end).\n\n"
            % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), platform.machine(), os.cpu_count(),
               " ".join(open("/proc/loadavg").read().split()[:3])))
    f.write("One `metalbed up --enroll --enroll-driver redfish` with two machines of the same kind (BIOS, 4 GiB disk): "
            "node-0 boots the agent by PXE (boot interface `pxe`), node-1 from the deploy ISO metalbed's conductor builds "
            "and inserts through Redfish VirtualMedia (`redfish-virtual-media`). Both: deploy interface `direct`, the same "
            "whole-disk image over file://, local boot. %s alternating rounds, one deploy at a time, undeployed without "
            "cleaning in between. Times from the deploy request to `active` and to the instance's `instance.booted` "
            "(timeline). Figures: median (min–max).\n\n" % os.environ["ROUNDS"])
    f.write("| backend | PXE: to active | PXE: to booted | virtual media: to active | virtual media: to booted | ratio vmedia/PXE (active, median) |\n|---|---|---|---|---|---|\n")
    for b, res in results.items():
        cells = []
        for boot in ("pxe", "redfish-virtual-media"):
            for i in (0, 1):
                m, lo, hi = stat([x[i] for x in res[boot]])
                cells.append("%.1f s (%.1f–%.1f)" % (m, lo, hi))
        ratio = stat([x[0] for x in res["redfish-virtual-media"]])[0] / stat([x[0] for x in res["pxe"]])[0]
        f.write("| %s | %s | %.2f× |\n" % (b, " | ".join(cells), ratio))
    f.write("\nRaw (s to active, s to booted):\n\n```\n")
    for b, res in results.items():
        for boot, xs in res.items():
            f.write("%s %s %s\n" % (b, boot, [(round(a, 1), round(c, 1)) for a, c in xs]))
    f.write("```\n")
PY
echo "wrote $out"
