#!/usr/bin/env bash
# Benchmarks a whole deploy on real VMs: `metalbed up --backend libvirt`
# with N VMs enrolled, all deployed at once through the API (iscsi deploy
# interface, a partition image, local boot: PXE, the real deploy ramdisk,
# iSCSI, GRUB installed, reboot into the instance), per node the time from
# the deploy request to `active` and to `metalbed-instance: booted` on its
# serial console (the node's timeline). Then the same on simulated machines
# in the same run, as the reference. No peer deploys real VMs here (a real
# Ironic would need its conductor inside the boot network's namespace), so
# the ratio is VM / simulated machine. Needs root and libvirtd
# (ci/libvirt/start.sh). NODES (default "1 4"), DEPLOY (iscsi), BOOT (local).
# Writes ci/bench/results-vmdeploy.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=ci/bench/results-vmdeploy.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -tags libvirt_dlopen -o "$work/metalbed" ./cmd/metalbed
"$work/metalbed" ramdisk build --out "$work/ramdisk" >/dev/null
"$work/metalbed" image build --kind partition --out "$work/instance.img" >"$work/image.txt"
BIN="$work/metalbed" WORK="$work" NODES="${NODES:-1 4}" DEPLOY="${DEPLOY:-iscsi}" BOOT="${BOOT:-local}" \
  python3 - "$out" <<'PY'
import datetime, json, os, platform, re, statistics, subprocess, sys, threading, time, urllib.request

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
img = open(os.path.join(WORK, "image.txt")).read()
md5 = re.search(r"^md5: (\w+)$", img, re.M).group(1)

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

def run(backend, n):
    d = os.path.join(WORK, "%s-%d" % (backend, n))
    args = [BIN, "up", "--backend", backend, "--nodes", str(n), "--enroll", "--state-dir", d,
            "--disk-size", "4GiB", "--bmc-base-port", "0", "--api-addr", "127.0.0.1:0",
            "--timeline-addr", "127.0.0.1:0", "--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0",
            "--http-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--boot-interface", "ipxe", "--log-level", "warn"]
    if backend == "libvirt":
        args += ["--ramdisk-dir", os.path.join(WORK, "ramdisk"), "--boot-network", "10.237.0.1/24", "--remove-vms"]
    log = open(d + ".log", "w")
    p = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        inv_path = os.path.join(d, "inventory.json")
        for _ in range(600):
            if os.path.exists(inv_path):
                break
            time.sleep(0.1)
        inv = json.load(open(inv_path))
        base = inv["api"]
        names = [x["name"] for x in inv["nodes"]]
        for name in names:
            for target, want in (("manage", "manageable"), ("provide", "available")):
                api(base, "PUT", "/v1/nodes/%s/states/provision" % name, {"target": target})
                wait_state(base, name, want, time.time() + 300)
            info = {"image_source": "file://" + os.path.join(WORK, "instance.img"), "image_checksum": md5,
                    "root_gb": "1", "capabilities": {"boot_option": os.environ["BOOT"]}}
            if os.environ["DEPLOY"] == "direct":
                info["image_type"] = "partition"
            ops = [{"op": "replace", "path": "/deploy_interface", "value": os.environ["DEPLOY"]}]
            ops += [{"op": "add", "path": "/instance_info/" + k, "value": v} for k, v in info.items()]
            api(base, "PATCH", "/v1/nodes/" + name, ops)
        res, errs = {}, []
        def one(name):
            try:
                t0 = time.time()
                api(base, "PUT", "/v1/nodes/%s/states/provision" % name, {"target": "active"})
                t_active = wait_state(base, name, "active", t0 + 900) - t0
                while time.time() < t0 + 900:
                    tl = api(base, "GET", "/v1/nodes/%s/timeline" % name)
                    entries = tl["entries"] if isinstance(tl, dict) else tl
                    booted = [e for e in entries if e["kind"] == "instance.booted"]
                    if booted:
                        ts = booted[-1]["time"].rstrip("Z")
                        whole, _, frac = ts.partition(".")
                        t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + (frac or "0"))
                        res[name] = (t_active, t - t0)
                        return
                    time.sleep(0.5)
                raise RuntimeError(name + ": instance did not boot")
            except Exception as e:
                errs.append(e)
        th = [threading.Thread(target=one, args=(x,)) for x in names]
        for t in th: t.start()
        for t in th: t.join()
        if errs:
            raise errs[0]
        return res
    finally:
        p.send_signal(2)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()

rows = []
for n in [int(x) for x in os.environ["NODES"].split()]:
    vm = run("libvirt", n)
    sim = run("sim", n)
    rows.append((n, vm, sim))
    print(n, vm, sim, flush=True)

def med(d, i):
    return statistics.median(v[i] for v in d.values())

with open(sys.argv[1], "w") as f:
    f.write("# Real VMs: PXE → active → instance booted\n\n")
    f.write("Generated by `ci/bench/vmdeploy.sh` on %s UTC (%s, %d cores; QEMU TCG — no nested KVM here).\n\n"
            % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), platform.machine(), os.cpu_count()))
    f.write("Each of N nodes of one `metalbed up --enroll` is deployed at once through the API: deploy interface %s, "
            "a 64 MiB partition image, boot_option %s, boot interface ipxe, BIOS. Times from each node's deploy request "
            "to `active` and to the instance's `metalbed-instance: booted` (timeline `instance.booted`). "
            "Reference in the same run: the same deploy on simulated machines (`--backend sim`). "
            "No peer deploys real VMs in this run. A simulated machine's instance announces itself during the "
            "power-on that precedes `active` (the state is polled every 0.25 s), so there booted can come before active.\n\n"
            % (os.environ["DEPLOY"], os.environ["BOOT"]))
    f.write("| VMs at once | VM: to active (median, max) | VM: to instance booted (median, max) | sim: to active | sim: to booted | ratio VM/sim (booted) |\n|---|---|---|---|---|---|\n")
    for n, vm, sim in rows:
        f.write("| %d | %.1f s, %.1f s | %.1f s, %.1f s | %.1f s | %.1f s | %.1f× |\n" % (
            n, med(vm, 0), max(v[0] for v in vm.values()), med(vm, 1), max(v[1] for v in vm.values()),
            med(sim, 0), med(sim, 1), med(vm, 1) / med(sim, 1)))
    f.write("\nPer node (s to active, s to booted):\n\n```\n")
    for n, vm, sim in rows:
        f.write("N=%d libvirt %s\nN=%d sim     %s\n" % (n, {k: (round(a, 1), round(b, 1)) for k, (a, b) in sorted(vm.items())},
                                                      n, {k: (round(a, 1), round(b, 1)) for k, (a, b) in sorted(sim.items())}))
    f.write("```\n")
PY
echo "wrote $out"
