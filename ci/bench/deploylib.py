"""What the deploy benchmarks (vmdeploy.sh, vmedia.sh) ask metalbed's API."""
import contextlib, datetime, json, os, signal, subprocess, time, urllib.request


def api(base, method, path, body=None, timeout=30, get_retries=0):
    """One Ironic v1 API call; the decoded JSON answer, None when empty. A
    GET that times out is asked again up to get_retries times (a fleet
    booting on the same CPUs as the API can keep it from answering)."""
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "1.78"})
    for attempt in range(get_retries + 1):
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                b = r.read()
                return json.loads(b) if b else None
        except OSError as e:
            if method != "GET" or "timed out" not in str(e) or attempt == get_retries:
                raise
            print("GET %s timed out, again" % path, flush=True)


def wait_state(base, node, want, deadline):
    """Polls node until it rests in provision state want; the time it did."""
    while time.time() < deadline:
        n = api(base, "GET", "/v1/nodes/" + node)
        if n["provision_state"] == want and not n.get("target_provision_state"):
            return time.time()
        if n["provision_state"] in ("deploy failed", "clean failed", "error"):
            raise RuntimeError("%s: %s: %s" % (node, n["provision_state"], n.get("last_error")))
        time.sleep(0.25)
    raise RuntimeError("%s: not %s in time" % (node, want))


def booted_at(base, node, after, deadline):
    """The time of node's last instance.booted timeline entry at or after after."""
    while time.time() < deadline:
        tl = api(base, "GET", "/v1/nodes/%s/timeline" % node)
        for e in reversed(tl["entries"] if isinstance(tl, dict) else tl):
            if e["kind"] != "instance.booted":
                continue
            whole, _, frac = e["time"].rstrip("Z").partition(".")
            t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + (frac or "0"))
            if t >= after:
                return t
        time.sleep(0.5)
    raise RuntimeError(node + ": instance did not boot")


@contextlib.contextmanager
def up(bin, work, name, backend, nodes, *extra):
    """Runs `metalbed up --enroll` with every port free (its log in
    work/name.log); yields its inventory.json; stops it with SIGINT."""
    d = os.path.join(work, name)
    args = [bin, "up", "--backend", backend, "--nodes", str(nodes), "--enroll", "--state-dir", d,
            "--disk-size", "4GiB", "--bmc-base-port", "0", "--api-addr", "127.0.0.1:0",
            "--timeline-addr", "127.0.0.1:0", "--dhcp-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0",
            "--http-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--redfish-addr", "127.0.0.1:0",
            "--log-level", "warn", *extra]
    if backend == "libvirt":
        args += ["--ramdisk-dir", os.path.join(work, "ramdisk"), "--remove-vms"]
    log = open(d + ".log", "w")
    p = subprocess.Popen(args, stdout=log, stderr=log)
    try:
        inv_path = os.path.join(d, "inventory.json")
        for _ in range(3000):
            if os.path.exists(inv_path) or p.poll() is not None:
                break
            time.sleep(0.1)
        with open(inv_path) as f:
            yield json.load(f)
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
