"""What the deploy benchmarks (vmdeploy.sh, vmedia.sh) ask metalbed's API."""
import datetime, json, time, urllib.request


def api(base, method, path, body=None):
    """One Ironic v1 API call; the decoded JSON answer, None when empty."""
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "1.78"})
    with urllib.request.urlopen(req, timeout=30) as r:
        b = r.read()
        return json.loads(b) if b else None


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
