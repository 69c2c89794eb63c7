"""What ci/bench/ironic-scale.sh measures of a real Ironic driving N metalbed
machines: `run` drives one N and appends its figures (one JSON line) to a
results file; `report` turns that file into results-ironic-scale.md."""
import base64, collections, concurrent.futures, configparser, datetime, json, os, platform, re, sys, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import api as _api  # noqa: E402


# 503s (no free conductor worker) and 409s (node locked) answered so far;
# retried as python-ironicclient does (up to 5 times, 2 s apart); and GETs
# that timed out (the one API worker busy), retried alike.
RETRIES = collections.Counter()
# Seconds a call may take: at N = 300 with 50 agents heartbeating, the
# single API worker (and the conductor behind a provision-state PUT) took
# longer than deploylib's 30 s to answer.
TIMEOUT = 120


def api(base, method, path, body=None):
    """deploylib.api, retrying 503 and 409 like ironicclient and a GET that
    timed out, its other errors naming the call (and Ironic's message)."""
    for attempt in range(6):
        try:
            return _api(base, method, path, body, TIMEOUT)
        except urllib.error.HTTPError as e:
            msg = e.read()[:300].decode(errors="replace")
            if e.code in (409, 503) and method != "GET" and attempt < 5:
                RETRIES[e.code] += 1
                time.sleep(2)
                continue
            raise RuntimeError("%s %s: %s: %s" % (method, path, e, msg)) from None
        except (TimeoutError, urllib.error.URLError) as e:
            if method == "GET" and attempt < 5:
                RETRIES["timeout"] += 1
                continue
            raise RuntimeError("%s %s: %s" % (method, path, e)) from None


TCK = os.sysconf("SC_CLK_TCK")
FAILED = ("deploy failed", "clean failed", "error", "manage failed")
# oslo.log's record prefix: "2026-12-06 21:03:01.123 4242 WARNING ..."
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
CMD = re.compile(r'CMD "ipmitool (.*?)" returned: (-?\d+) in ([0-9.]+)s')
SYNC_UPDATED = re.compile(r"During sync_power_state, node (\S+) state does not match expected state")


def cpu(pids):
    """utime+stime of pids and of their reaped children (ipmitool), seconds."""
    own = children = 0
    for pid in pids:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        own, children = own + int(f[11]) + int(f[12]), children + int(f[13]) + int(f[14])
    return own / TCK, children / TCK


def stamp(line):
    """The time of an oslo.log record line (the host's local time), or None."""
    m = STAMP.match(line)
    return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + float("0" + m.group(1)[19:]) if m else None


def ipmitool_cmds(log, since):
    """(end time, took, port, command) of every ipmitool run the conductor logged after since."""
    out = []
    for line in open(log, errors="replace"):
        m = CMD.search(line)
        t = m and stamp(line)
        if not t or t < since:
            continue
        f = m.group(1).split()
        port = int(f[f.index("-p") + 1]) if "-p" in f else 0
        out.append((t, float(m.group(3)), port, " ".join(f[f.index("-f") + 2:]) if "-f" in f else m.group(1)))
    return out


class Sampler(threading.Thread):
    """Counts, every 0.2 s, the ipmitool processes whose parent is the conductor; keeps the peak."""

    def __init__(self, parent):
        super().__init__(daemon=True)
        self.parent, self.peak, self.stop = parent, 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            n = 0
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    comm = open("/proc/%s/comm" % p).read().strip()
                    if comm == "ipmitool" and int(open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[1]) == self.parent:
                        n += 1
                except (OSError, ValueError, IndexError):
                    pass
            self.peak = max(self.peak, n)


class Phase:
    """Wall time, CPU of each process and ipmitool figures of one phase."""

    def __init__(self, run, name):
        self.run, self.name = run, name

    def __enter__(self):
        self.t0 = time.time()
        self.c0 = {k: cpu(p) for k, p in self.run.procs.items()}
        self.sampler = Sampler(self.run.procs["ironic-conductor"][0])
        self.sampler.start()
        return self

    def __exit__(self, *exc):
        self.sampler.stop.set()
        self.sampler.join()
        if exc[0]:
            return False
        t1 = time.time()
        cmds = [c for c in ipmitool_cmds(self.run.log, self.t0) if c[0] <= t1 + 1]
        r = {"wall": t1 - self.t0, "ipmitool": len(cmds), "ipmitool_peak": self.sampler.peak}
        for k, p in self.run.procs.items():
            c1 = cpu(p)
            r["cpu_" + k] = c1[0] - self.c0[k][0]
            r["cpu_children_" + k] = c1[1] - self.c0[k][1]
        r.update(getattr(self, "extra", {}))
        r["retried_503"], r["retried_409"], r["retried_timeout"] = RETRIES[503], RETRIES[409], RETRIES["timeout"]
        RETRIES.clear()
        self.run.res[self.name] = r
        print("N=%d %s: %s" % (self.run.n, self.name, json.dumps({k: round(v, 2) for k, v in r.items()})), flush=True)


class Run:
    """One N: the enrolled nodes and what was measured of them."""

    def __init__(self, n, inv, ironic_env, procs, sim_ports, image_url, image_md5, ramdisk, interval, deploy_max, timeout):
        self.n, self.inv, self.procs = n, inv, procs
        self.base = ironic_env["IRONIC_API_URL"]
        self.log = os.path.join(ironic_env["IRONIC_DIR"], "ironic-conductor.log")
        self.sim_ports, self.image_url, self.image_md5, self.ramdisk = sim_ports, image_url, image_md5, ramdisk
        self.interval, self.deploy_max, self.timeout = interval, deploy_max, timeout
        self.pool = concurrent.futures.ThreadPoolExecutor(16)
        self.res = {"n": n}

    def each(self, f, items):
        return list(self.pool.map(f, items))

    def poll(self):
        """Sleeps between polls of the node list: longer at large N, where
        each GET of every node costs the one API worker real CPU."""
        time.sleep(0.5 if self.n <= 100 else 2)

    def nodes(self):
        return api(self.base, "GET", "/v1/nodes?fields=uuid,name,provision_state,target_provision_state,"
                   "power_state,maintenance,last_error&limit=1000")["nodes"]

    def wait(self, names, ok, what, timeout=None):
        """Waits until ok(node) holds for every node named; raises on a failed state or timeout."""
        deadline = time.time() + (timeout or self.timeout)
        names = set(names)
        while time.time() < deadline:
            ns = [x for x in self.nodes() if x["name"] in names]
            bad = [x for x in ns if x["provision_state"] in FAILED]
            if bad:
                raise RuntimeError("%s: %d failed, e.g. %s: %s" % (what, len(bad), bad[0]["name"], bad[0]["last_error"]))
            if sum(1 for x in ns if ok(x)) == len(names):
                return time.time()
            self.poll()
        raise RuntimeError("%s: not all %d in %d s" % (what, len(names), timeout or self.timeout))

    def enroll(self, name, driver, info, mac=None):
        node = api(self.base, "POST", "/v1/nodes", {
            "name": name, "driver": driver, "driver_info": info, "boot_interface": "ipxe",
            "deploy_interface": "direct", "properties": {"capabilities": "boot_mode:bios"}})
        if mac:
            api(self.base, "POST", "/v1/ports", {"node_uuid": node["uuid"], "address": mac})

    @staticmethod
    def ipmi_info(addr, port, user="admin", password="password"):
        # Cipher suite 3: the one ipmi_sim and metalbed both offer, so the
        # comparison runs the same ipmitool command line against each.
        return {"ipmi_address": addr, "ipmi_port": port, "ipmi_username": user,
                "ipmi_password": password, "ipmi_cipher_suite": "3"}

    def manage(self, names, phase):
        with Phase(self, phase):
            self.each(lambda m: api(self.base, "PUT", "/v1/nodes/%s/states/provision" % m, {"target": "manage"}), names)
            self.wait(names, lambda x: x["provision_state"] == "manageable" and not x["target_provision_state"]
                      and x["power_state"], phase)

    def maintenance(self, names, on):
        self.each(lambda m: api(self.base, "PUT" if on else "DELETE", "/v1/nodes/%s/maintenance" % m,
                                {"reason": "not measured"} if on else None), names)

    def main_set(self):
        """Enrolls the N machines (even: ipmi, odd: redfish), verifies them (manage)."""
        nodes = self.inv["nodes"]

        def one(i):
            m = nodes[i]
            if i % 2 == 0:
                self.enroll(m["name"], "ipmi", self.ipmi_info(m["bmc"]["address"], m["bmc"]["port"],
                                                            m["bmc"]["username"], m["bmc"]["password"]), m["macs"][0])
            else:
                rf = m["redfish"]
                self.enroll(m["name"], "redfish", {"redfish_address": rf["address"], "redfish_system_id": rf["system_id"],
                                                   "redfish_username": rf["username"], "redfish_password": rf["password"],
                                                   "redfish_verify_ca": False}, m["macs"][0])
        with Phase(self, "enroll"):
            self.each(one, range(self.n))
        self.names = [m["name"] for m in nodes]
        self.manage(self.names, "manage")

    def flip_sync(self):
        """Powers every machine on behind Ironic's back (metalbed's Redfish,
        one POST each) and times Ironic's sync noticing all of them."""
        before = {x["name"]: x["power_state"] for x in self.nodes()}
        if any(before[m] != "power off" for m in self.names):
            raise RuntimeError("flip: not every node is off: %s" % collections.Counter(before.values()))
        rf = {m["name"]: m["redfish"] for m in self.inv["nodes"]}

        def on(name):
            r = rf[name]
            req = urllib.request.Request(r["address"] + r["system_id"] + "/Actions/ComputerSystem.Reset", method="POST",
                                         data=b'{"ResetType": "On"}', headers={"Content-Type": "application/json"})
            req.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (r["username"], r["password"])).encode()).decode())
            urllib.request.urlopen(req, timeout=30).read()
        with Phase(self, "sync") as ph:
            self.each(on, self.names)
            flipped = time.time()
            done = self.wait(self.names, lambda x: x["power_state"] == "power on", "sync", 5 * self.interval + 600)
            uuids = {x["uuid"] for x in self.nodes() if x["name"] in set(self.names)}
            seen = [stamp(l) for l in open(self.log, errors="replace") if SYNC_UPDATED.search(l)
                    and SYNC_UPDATED.search(l).group(1) in uuids]
            seen = [t for t in seen if t and t >= flipped - 1]
            ph.extra = {"flip_s": flipped - ph.t0, "noticed_all_s": done - flipped,
                        "sync_span_s": (max(seen) - min(seen)) if seen else -1, "sync_updates": len(seen)}

    def peer(self):
        """Ironic's power sync over P metalbed BMCs versus P ipmi_sim
        processes (P = len(sim_ports), PEER_MAX): both enrolled (ipmi, same
        driver_info but the port), verified, then each set alone out of
        maintenance for two sync cycles, timed from the conductor's ipmitool
        log lines. Skipped with no ipmi_sim."""
        p = self.res["peers"] = len(self.sim_ports)
        if not p:
            return
        bmcs = [m["bmc"] for m in self.inv["nodes"][:p]]
        sets = {"metalbed": ["cmp-mb-%d" % i for i in range(p)], "ipmi_sim": ["cmp-sim-%d" % i for i in range(p)]}
        ports = {"metalbed": {b["port"] for b in bmcs}, "ipmi_sim": set(self.sim_ports)}
        self.maintenance(self.names, True)
        try:
            self.compare(sets, ports, bmcs)
        finally:
            # a failed comparison leaves no set polled beside the deploy
            try:
                self.maintenance(sets["metalbed"] + sets["ipmi_sim"], True)
            except RuntimeError as e:
                print("N=%d peer: maintenance: %s" % (self.n, e), flush=True)

    def compare(self, sets, ports, bmcs):
        """peer's measurement: enrolls, verifies and sync-times each set."""
        p = len(bmcs)
        with Phase(self, "peer-enroll"):
            self.each(lambda i: self.enroll(sets["metalbed"][i], "ipmi", self.ipmi_info(bmcs[i]["address"], bmcs[i]["port"])), range(p))
            self.each(lambda i: self.enroll(sets["ipmi_sim"][i], "ipmi", self.ipmi_info("127.0.0.1", self.sim_ports[i])), range(p))
        for k in ("metalbed", "ipmi_sim"):
            # each set verified alone: the other is in enroll or maintenance
            self.manage(sets[k], "manage-" + k)
            self.maintenance(sets[k], True)
        for k in ("metalbed", "ipmi_sim"):
            self.maintenance(sets[k], False)
            with Phase(self, "sync-" + k) as ph:
                ph.extra = self.cycles(ports[k])
            self.maintenance(sets[k], True)

    def cycles(self, ports, want=2):
        """Waits for want complete sync cycles over ports (every port's power
        status in one burst) and returns their mean span and command time."""
        t0 = time.time()
        deadline = t0 + want * (self.interval + 60) + len(ports) * 4
        while time.time() < deadline:
            time.sleep(self.interval / 2)
            cmds = sorted(c for c in ipmitool_cmds(self.log, t0) if c[2] in ports and c[3] == "power status")
            bursts, cur = [], []
            for c in cmds:
                # A cycle polls each BMC once: a BMC seen again, or a burst
                # that already covers every BMC, starts the next. No gap
                # threshold: under load one cycle's own calls are further
                # apart than the interval, and back-to-back cycles have none.
                if cur and (c[2] in {x[2] for x in cur} or len({x[2] for x in cur}) >= len(ports)):
                    bursts.append(cur)
                    cur = []
                cur.append(c)
            # a burst is complete once the next has begun or it covers every port
            done = [b for b in bursts + [cur] if len({c[2] for c in b}) >= len(ports)]
            if len(done) >= want:
                done = done[:want]
                span = [b[-1][0] - (b[0][0] - b[0][1]) for b in done]
                took = [c[1] for b in done for c in b]
                return {"cycle_s": sum(span) / len(span), "cmd_mean_s": sum(took) / len(took),
                        "cmd_max_s": max(took), "cycles": len(done)}
        raise RuntimeError("no %d complete sync cycles over %d BMCs in time" % (want, len(ports)))

    def deploy(self):
        """Deploys up to deploy_max of the N machines at once through the
        agent; counts those active by the timeout."""
        names = self.names[:self.deploy_max]
        self.maintenance(self.names, False)
        info = [{"op": "add", "path": "/driver_info/deploy_kernel", "value": "file://" + os.path.join(self.ramdisk, "vmlinuz")},
                {"op": "add", "path": "/driver_info/deploy_ramdisk", "value": "file://" + os.path.join(self.ramdisk, "initramfs")},
                {"op": "add", "path": "/instance_info/image_source", "value": self.image_url},
                {"op": "add", "path": "/instance_info/image_checksum", "value": self.image_md5}]
        self.each(lambda m: api(self.base, "PATCH", "/v1/nodes/" + m, info), names)
        self.each(lambda m: api(self.base, "PUT", "/v1/nodes/%s/states/provision" % m, {"target": "provide"}), names)
        self.wait(names, lambda x: x["provision_state"] == "available" and not x["target_provision_state"], "provide")
        with Phase(self, "deploy") as ph:
            self.each(lambda m: api(self.base, "PUT", "/v1/nodes/%s/states/provision" % m, {"target": "active"}), names)
            active_at, deadline, states = {}, time.time() + self.timeout, {}
            while time.time() < deadline and len(active_at) < len(names):
                for x in self.nodes():
                    if x["name"] in names:
                        states[x["name"]] = (x["provision_state"], x["last_error"])
                        if x["provision_state"] == "active" and x["name"] not in active_at:
                            active_at[x["name"]] = time.time()
                if sum(1 for s in states.values() if s[0] in FAILED) + len(active_at) >= len(names):
                    break
                self.poll()
            t = sorted(v - ph.t0 for v in active_at.values())
            failed = [(k, v) for k, v in states.items() if v[0] in FAILED]
            ph.extra = {"deployed": len(names), "active": len(t), "first_active_s": t[0] if t else -1,
                        "last_active_s": t[-1] if t else -1, "median_active_s": t[len(t) // 2] if t else -1,
                        "failed": len(failed)}
            self.res["deploy_states"] = dict(collections.Counter(s[0] for s in states.values()))
            self.res["deploy_errors"] = sorted({str(v[1])[:200] for _, v in failed})[:5]


def knobs(conf_path):
    """The Ironic settings that bound this benchmark, from its ironic.conf
    (Ironic's own default where the file leaves one out)."""
    c = configparser.ConfigParser(interpolation=None, strict=False)
    c.read(conf_path)
    get = lambda sec, k, d: c.get(sec, k, fallback=d)
    return {"workers_pool_size": get("conductor", "workers_pool_size", "100"),
            "sync_power_state_workers": get("conductor", "sync_power_state_workers", "8"),
            "sync_power_state_interval": get("conductor", "sync_power_state_interval", "60"),
            "min_command_interval": get("ipmi", "min_command_interval", "5"),
            "api_workers": get("api", "api_workers", "cpus")}


def peak_rss_mb(pid):
    """A process's peak resident set (VmHWM), MiB."""
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1


def run(results, n, inv_path, ironic_env_path, procs, sim_ports_path, image_url, image_md5, ramdisk, interval, deploy_max, timeout):
    env = dict(l.split("=", 1) for l in open(ironic_env_path).read().split("\n") if "=" in l)
    procs = {k: [int(x) for x in v.split("+")] for k, v in (p.split("=") for p in procs.split(","))}
    r = Run(int(n), json.load(open(inv_path)), env, procs, [int(p) for p in open(sim_ports_path).read().split()],
            image_url, image_md5, ramdisk, int(interval), int(deploy_max) or int(n), int(timeout))
    r.res["load_start"] = open("/proc/loadavg").read().split()[:3]
    r.res["ironic_start_s"] = float(env.get("IRONIC_START_SECONDS", "0"))
    r.res["knobs"] = knobs(os.path.join(env["IRONIC_DIR"], "ironic.conf"))
    t0 = time.time()
    try:
        r.main_set()
        r.flip_sync()
        try:
            r.peer()
        except Exception as e:  # the comparison failing does not stop the deploy
            r.res["peer_error"] = "%s: %s" % (type(e).__name__, e)
            print("N=%s peer: %s" % (n, r.res["peer_error"]), flush=True)
        r.deploy()
    except Exception as e:  # a phase that fails ends this N; what it measured is kept
        r.res["error"] = "%s: %s" % (type(e).__name__, e)
        print("N=%s: %s" % (n, r.res["error"]), flush=True)
    r.res["wall_s"] = time.time() - t0
    r.res["metalbed_peak_rss_mb"] = peak_rss_mb(r.procs["metalbed"][0])
    r.res["load_end"] = open("/proc/loadavg").read().split()[:3]
    with open(results, "a") as f:
        f.write(json.dumps(r.res) + "\n")


def ncell(r):
    """A row's N, with its run's label (an optional "label" field added to
    the results line, e.g. to tell two runs of one N apart)."""
    return "%d%s" % (r["n"], " (%s)" % r["label"] if r.get("label") else "")


def report(results, out):
    rows = [json.loads(l) for l in open(results) if l.strip()]
    g = lambda r, ph, k, fmt="%.1f": (fmt % r[ph][k]) if ph in r and k in r[ph] else "–"
    cpu = lambda r, ph: ("%.1f / %.1f (+%.1f ipmitool) / %.1f" % (
        r[ph]["cpu_metalbed"], r[ph]["cpu_ironic-conductor"] + r[ph]["cpu_ironic-api"], r[ph]["cpu_children_ironic-conductor"],
        r[ph]["cpu_netboot"])) if ph in r else "–"
    with open(out, "w") as f:
        w = lambda s="": f.write(s + "\n")
        w("# Real Ironic 21.4 at scale over metalbed machines")
        w()
        w("Generated by `ci/bench/ironic-scale.sh` on %s, %d CPUs, %s. The host is shared (another engineer and a CI run): "
          "load average per N below." % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                         os.cpu_count(), platform.release()))
        w()
        w("See the script's header for the method. Per N: a fresh Ironic (ironic-api + ironic-conductor, sqlite, "
          "JSON-RPC), a fresh `metalbed up --no-provisioner --nodes N`, a fresh `metalbed netboot serve` (Ironic's DHCP/TFTP/HTTP) "
          "and P = min(N, PEER_MAX) `ipmi_sim` processes. Even-numbered machines are enrolled with the ipmi hardware type (their IPMI BMC, "
          "cipher suite 3), odd ones with redfish (metalbed's Redfish service, plain HTTP); all with boot interface ipxe and "
          "deploy interface direct.")
        w()
        for r in rows:
            if "knobs" in r:
                w("N = %s: Ironic's settings %s; whole run %.0f s; `metalbed up` peak RSS %.0f MiB." % (
                    ncell(r), ", ".join("%s = %s" % kv for kv in sorted(r["knobs"].items())), r.get("wall_s", -1),
                    r.get("metalbed_peak_rss_mb", -1)))
                w()
        w("## Enrolment, verification, power sync")
        w()
        w("| N | load avg (start → end) | Ironic start s | enroll s | manage (power verified) s | ipmitool runs in manage | peak concurrent ipmitool | "
          "sync: flip → all noticed s | sync span (first → last update) s | CPU s in manage: metalbed / Ironic (+children) / netboot | "
          "503s retried (no free conductor worker): enroll+manage |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for r in rows:
            w("| %s | %s → %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                ncell(r), " ".join(r["load_start"]), " ".join(r["load_end"]), r["ironic_start_s"], g(r, "enroll", "wall"),
                g(r, "manage", "wall"), g(r, "manage", "ipmitool", "%d"), g(r, "manage", "ipmitool_peak", "%d"),
                g(r, "sync", "noticed_all_s"), g(r, "sync", "sync_span_s"), cpu(r, "manage"),
                sum(r.get(ph, {}).get("retried_503", 0) for ph in ("enroll", "manage"))))
        w()
        w("## Power sync: P metalbed BMCs versus P ipmi_sim processes (same Ironic, same config, one run)")
        w()
        w("P = N unless PEER_MAX set it lower (at N = 300, 300 ipmi_sim processes are too heavy for this host); "
          "the machines not compared are in maintenance meanwhile.")
        w()
        w("| N | P | manage s: metalbed / ipmi_sim | sync cycle s: metalbed / ipmi_sim | ratio ipmi_sim / metalbed | "
          "ipmitool power status mean s: metalbed / ipmi_sim | max s | CPU s over two cycles: metalbed / ipmi_sim processes |")
        w("|---:|---:|---|---|---:|---|---|---|")
        for r in rows:
            a, b = r.get("sync-metalbed", {}), r.get("sync-ipmi_sim", {})
            ratio = "%.2f×" % (b["cycle_s"] / a["cycle_s"]) if a and b else "–"
            p = r.get("peers", r["n"])
            w("| %s | %s | %s / %s | %s / %s | %s | %s / %s | %s / %s | %s / %s |" % (
                ncell(r), ("%d" % p if p else "skipped") + (" (%s)" % r["peer_error"] if "peer_error" in r else ""),
                g(r, "manage-metalbed", "wall"), g(r, "manage-ipmi_sim", "wall"),
                g(r, "sync-metalbed", "cycle_s", "%.2f"), g(r, "sync-ipmi_sim", "cycle_s", "%.2f"), ratio,
                g(r, "sync-metalbed", "cmd_mean_s", "%.3f"), g(r, "sync-ipmi_sim", "cmd_mean_s", "%.3f"),
                g(r, "sync-metalbed", "cmd_max_s", "%.3f"), g(r, "sync-ipmi_sim", "cmd_max_s", "%.3f"),
                g(r, "sync-metalbed", "cpu_metalbed"), g(r, "sync-ipmi_sim", "cpu_ipmi_sim")))
        w()
        w("## Deploy at once (direct deploy, metalbed's agents)")
        w()
        w("| N | deployed at once | active | failed | first / median / last active s | peak concurrent ipmitool | ipmitool runs | "
          "CPU s: metalbed / Ironic (+children) / netboot | metalbed up peak RSS MiB (whole run) | retried: 503s / GETs timed out | states at the end | error |")
        w("|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|---|")
        for r in rows:
            w("| %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
                ncell(r), g(r, "deploy", "deployed", "%d"), g(r, "deploy", "active", "%d"), g(r, "deploy", "failed", "%d"),
                g(r, "deploy", "first_active_s"), g(r, "deploy", "median_active_s"), g(r, "deploy", "last_active_s"),
                g(r, "deploy", "ipmitool_peak", "%d"), g(r, "deploy", "ipmitool", "%d"), cpu(r, "deploy"),
                "%.0f" % r["metalbed_peak_rss_mb"] if "metalbed_peak_rss_mb" in r else "–",
                "%s / %s" % (g(r, "deploy", "retried_503", "%d"), g(r, "deploy", "retried_timeout", "%d")),
                ", ".join("%s: %d" % kv for kv in sorted(r.get("deploy_states", {}).items())),
                "; ".join(r.get("deploy_errors", [])) or r.get("error", "")))


if __name__ == "__main__":
    {"run": run, "report": report}[sys.argv[1]](*sys.argv[2:])
