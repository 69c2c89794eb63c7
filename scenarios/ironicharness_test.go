package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// IronicOptions tune the real Ironic ci/ironic/start.sh starts.
type IronicOptions struct {
	// HTTPURL is Ironic's [deploy] http_url: where machines fetch its HTTP
	// boot files (metalbed netboot serve's HTTP address). "" = start.sh's default.
	HTTPURL string
	// HTTPRoot and TFTPRoot are Ironic's boot file roots ("" = under Dir).
	HTTPRoot, TFTPRoot string
	// AutomatedClean turns on Ironic's automated cleaning (through the
	// agent, on provide and undeploy).
	AutomatedClean bool
	// Redfish enables the redfish hardware type (power, management and
	// inspect interfaces redfish).
	Redfish bool
	// VirtualMedia enables the redfish-virtual-media boot interface too
	// (implies Redfish): deploy ISOs built with mkisofs and ISOLINUX,
	// published under HTTPRoot/redfish/ and inserted from HTTPURL/redfish/.
	VirtualMedia bool
	// HeartbeatTimeout is Ironic's [api] ramdisk_heartbeat_timeout in
	// seconds, which bounds the agent's heartbeat period; 0 = Ironic's 300.
	HeartbeatTimeout int
	// SingleProcess runs Debian's all-in-one `ironic` instead of
	// ironic-api and ironic-conductor.
	SingleProcess bool
	// NetNS runs Ironic inside that network namespace (a real-VM boot
	// network, inventory.json boot_network), listening on HostIP there;
	// the test then reaches it through Dial. "" = on the host's loopback.
	NetNS, HostIP string
	// Dial connects to the API from where NetNS is (nil: the default
	// dialer), e.g. libvirt.NamespaceDialer(NetNS).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Ironic is a real standalone Ironic (ironic-api + ironic-conductor from
// Debian) started by ci/ironic/start.sh for one test.
type Ironic struct {
	Dir          string // ironic.conf, logs, database
	APIURL       string // http://127.0.0.1:<port>
	HTTPRoot     string
	TFTPRoot     string
	HTTPURL      string
	FilesDir     string // where file:// images may live ([conductor] file_url_allowed_paths)
	StartSeconds string // how long start.sh took, as it measured
	Calls        *CallLog
	// NetNS is the network namespace Ironic runs in ("" = none): the
	// baremetal CLI runs there too, and client reaches the API there.
	NetNS  string
	client *http.Client
}

// requireIronic skips (or, under METALBED_INTEROP=required, fails) when the
// Debian packages of a standalone Ironic and its CLI are not installed.
func requireIronic(t testing.TB) {
	t.Helper()
	requireInteropTool(t, "ironic-conductor", "ironic-conductor")
	requireInteropTool(t, "ironic-api", "ironic-api")
	requireInteropTool(t, "ironic-dbsync", "ironic-api")
	requireInteropTool(t, "baremetal", "python3-ironicclient")
	requireInteropTool(t, "ipmitool", "ipmitool")
	requireInteropTool(t, "curl", "curl")
}

// startIronic runs ci/ironic/start.sh in a temporary directory and reads
// the env file it writes once the API answers and the conductor is alive.
// Cleanup stops both services by PID (ci/ironic/stop.sh) and, when the test
// failed, logs the tails of Ironic's logs.
func startIronic(t testing.TB, o IronicOptions) *Ironic {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(root, "ci/ironic/start.sh"), dir)
	// start.sh treats an empty variable as unset (its default).
	cmdEnv := os.Environ()
	o.Redfish = o.Redfish || o.VirtualMedia
	if o.Redfish {
		// requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a
		// session's own verify= (psf/requests#3829): the conductor would
		// check metalbed's Redfish certificate against the system bundle
		// instead of the node's redfish_verify_ca.
		cmdEnv = slices.DeleteFunc(cmdEnv, func(kv string) bool {
			return strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=")
		})
	}
	cmd.Env = append(cmdEnv, "IRONIC_HTTP_URL="+o.HTTPURL, "IRONIC_HTTP_ROOT="+o.HTTPRoot,
		"IRONIC_TFTP_ROOT="+o.TFTPRoot, fmt.Sprintf("IRONIC_AUTOMATED_CLEAN=%t", o.AutomatedClean),
		"IRONIC_REDFISH="+map[bool]string{true: "1"}[o.Redfish],
		"IRONIC_VMEDIA="+map[bool]string{true: "1"}[o.VirtualMedia],
		"IRONIC_HEARTBEAT_TIMEOUT="+map[bool]string{true: fmt.Sprint(o.HeartbeatTimeout)}[o.HeartbeatTimeout > 0],
		"IRONIC_NETNS="+o.NetNS, "IRONIC_HOST_IP="+o.HostIP,
		// A test killed by -timeout runs no cleanup: Ironic then stops itself.
		fmt.Sprintf("IRONIC_WATCH_PID=%d", os.Getpid()))
	if o.SingleProcess {
		cmd.Env = append(cmd.Env, "IRONIC_SINGLE_PROCESS=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"ironic-conductor.log", "ironic-api.log", "ironic.log"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					continue // IRONIC_SINGLE_PROCESS logs to ironic.log alone
				}
				t.Logf("last non-debug lines of %s:\n%s", name, tailLog(filepath.Join(dir, name), 30))
			}
		}
		pids := filepath.Join(dir, "pids")
		if _, err := os.Stat(pids); err != nil {
			return
		}
		stop := exec.Command("bash", filepath.Join(root, "ci/ironic/stop.sh"), pids)
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("ci/ironic/stop.sh: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("ci/ironic/start.sh: %v\n%s%s", err, stderr.String(), out)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	ir := &Ironic{Dir: dir, APIURL: env["IRONIC_API_URL"], HTTPRoot: env["IRONIC_HTTP_ROOT"],
		TFTPRoot: env["IRONIC_TFTP_ROOT"], HTTPURL: env["IRONIC_HTTP_URL"], FilesDir: env["IRONIC_FILES_DIR"],
		StartSeconds: env["IRONIC_START_SECONDS"], Calls: &CallLog{}, NetNS: o.NetNS, client: http.DefaultClient}
	if o.Dial != nil {
		ir.client = &http.Client{Transport: &http.Transport{DialContext: o.Dial}}
	}
	if ir.APIURL == "" {
		t.Fatalf("ci/ironic/start.sh printed no IRONIC_API_URL:\n%s", out)
	}
	return ir
}

// tailLog returns the last n lines of an oslo.log file that are not DEBUG
// records (nor their continuation lines), or why it could not.
func tailLog(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	debug := false
	for _, l := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		if len(l) > 4 && l[4] == '-' && l[:2] == "20" { // a new record: "2026-11-22 12:02:41.324 pid LEVEL"
			debug = strings.Contains(l, " DEBUG ")
		}
		if !debug {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Baremetal runs the real `baremetal` CLI against this Ironic, records its
// wall time under label (the call's verb, "" = the arguments) and returns
// its stdout; a failing call fails the test with its stderr.
func (ir *Ironic) Baremetal(t testing.TB, label string, args ...string) string {
	t.Helper()
	out, err := ir.TryBaremetal(t.Context(), label, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TryBaremetal is Baremetal returning the failure instead.
func (ir *Ironic) TryBaremetal(ctx context.Context, label string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "baremetal", args...)
	if ir.NetNS != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ir.NetNS, "baremetal"}, args...)...)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "OS_") })
	cmd.Env = append(env, "OS_AUTH_TYPE=none", "OS_ENDPOINT="+ir.APIURL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if label == "" {
		label = strings.Join(args, " ")
	}
	ir.Calls.Add("baremetal "+label, time.Since(start))
	if err != nil {
		return stdout.String(), fmt.Errorf("baremetal %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// errNotFound is Ironic's 404 for a resource.
var errNotFound = errors.New("not found")

// IronicNode is the part of Ironic's node resource the scenarios read.
type IronicNode struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState *string        `json:"target_provision_state"`
	PowerState           *string        `json:"power_state"`
	TargetPowerState     *string        `json:"target_power_state"`
	LastError            *string        `json:"last_error"`
	BootMode             *string        `json:"boot_mode"`
	DriverInternalInfo   map[string]any `json:"driver_internal_info"`
}

// str is *s, or "None" as Ironic's CLI prints a null.
func str(s *string) string {
	if s == nil {
		return "None"
	}
	return *s
}

// Node reads a node over Ironic's REST API (microversion 1.82); waits poll
// with it rather than with the CLI, whose start-up alone takes about a second.
func (ir *Ironic) Node(ctx context.Context, ident string) (IronicNode, error) {
	var n IronicNode
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ir.APIURL+"/v1/nodes/"+ident, nil)
	if err != nil {
		return n, err
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.82")
	resp, err := ir.client.Do(req)
	if err != nil {
		return n, fmt.Errorf("GET node %s: %w", ident, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return n, fmt.Errorf("GET node %s: %w", ident, errNotFound)
	default:
		return n, fmt.Errorf("GET node %s: %s", ident, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&n); err != nil {
		return n, fmt.Errorf("GET node %s: %w", ident, err)
	}
	return n, nil
}

// WaitNode polls the node until cond holds, records how long that took
// under label, and fails the test on timeout with the node's last state.
func (ir *Ironic) WaitNode(t testing.TB, ident, label string, timeout time.Duration, cond func(IronicNode) bool) IronicNode {
	t.Helper()
	var last IronicNode
	took, err := pollUntil(t.Context(), timeout, 100*time.Millisecond, label, func() (bool, string) {
		n, err := ir.Node(t.Context(), ident)
		if err != nil {
			return false, err.Error()
		}
		last = n
		return cond(n), fmt.Sprintf("provision_state=%s target=%s power_state=%s target_power=%s last_error=%s",
			n.ProvisionState, str(n.TargetProvisionState), str(n.PowerState), str(n.TargetPowerState), str(n.LastError))
	})
	ir.Calls.Add("wait "+label, took)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// WaitProvision waits for a stable provision state (no target left) and
// fails on any other stable state, naming Ironic's last_error.
func (ir *Ironic) WaitProvision(t testing.TB, ident, want string, timeout time.Duration) IronicNode {
	t.Helper()
	n := ir.WaitNode(t, ident, "provision_state "+want, timeout, func(n IronicNode) bool {
		return n.TargetProvisionState == nil
	})
	if n.ProvisionState != want {
		t.Fatalf("node %s: provision_state %s, want %s (last_error: %s)", ident, n.ProvisionState, want, str(n.LastError))
	}
	return n
}

// WaitPower waits until Ironic has finished a power action and fails unless
// it reports want.
func (ir *Ironic) WaitPower(t testing.TB, ident, want string, timeout time.Duration) {
	t.Helper()
	n := ir.WaitNode(t, ident, "power_state "+want, timeout, func(n IronicNode) bool {
		return n.TargetPowerState == nil && str(n.PowerState) == want
	})
	if n.LastError != nil && *n.LastError != "" {
		t.Logf("node %s: last_error after power %s: %s", ident, want, *n.LastError)
	}
}

// CallLog collects how long calls took; safe for concurrent use.
type CallLog struct {
	mu   sync.Mutex
	rows []callTime
}

type callTime struct {
	label string
	took  time.Duration
}

// Add records one call.
func (c *CallLog) Add(label string, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = append(c.rows, callTime{label, took})
}

// Summary is one line per label: count, mean, min, max, in first-seen order.
func (c *CallLog) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type agg struct {
		n             int
		sum, min, max time.Duration
	}
	var order []string
	by := map[string]*agg{}
	for _, r := range c.rows {
		a := by[r.label]
		if a == nil {
			a = &agg{min: r.took}
			by[r.label] = a
			order = append(order, r.label)
		}
		a.n++
		a.sum += r.took
		a.min = min(a.min, r.took)
		a.max = max(a.max, r.took)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-58s %3s %9s %9s %9s\n", "call", "n", "mean", "min", "max")
	for _, l := range order {
		a := by[l]
		fmt.Fprintf(&b, "%-58s %3d %9s %9s %9s\n", l, a.n, (a.sum / time.Duration(a.n)).Round(time.Millisecond),
			a.min.Round(time.Millisecond), a.max.Round(time.Millisecond))
	}
	return b.String()
}

// IpmitoolCommand is one ipmitool run of the conductor, from its log.
type IpmitoolCommand struct {
	Port    int    // BMC port (-p)
	Suite   string // -C, "" when not given
	Command string // what follows the password file, e.g. "power status"
	Exit    int
	Took    time.Duration
}

// IpmitoolCommands reads every ipmitool command line the conductor ran
// (with its exit code and duration) from its debug log.
func (ir *Ironic) IpmitoolCommands(t testing.TB) []IpmitoolCommand {
	t.Helper()
	f, err := os.Open(filepath.Join(ir.Dir, "ironic-conductor.log"))
	if err != nil {
		t.Fatalf("conductor log: %v", err)
	}
	defer f.Close()
	// oslo.concurrency's debug line for every command the conductor ran, e.g.
	// CMD "ipmitool -I lanplus -H 127.0.0.1 ... -p 6230 ... -f /tmp/x power status" returned: 0 in 0.090s
	cmdRE := regexp.MustCompile(`CMD "ipmitool (.*?)" returned: (-?\d+) in ([0-9.]+)s`)
	var cmds []IpmitoolCommand
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		m := cmdRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		c := IpmitoolCommand{}
		fields := strings.Fields(m[1])
		for i := 0; i < len(fields); i++ {
			switch fields[i] {
			case "-p":
				if i+1 < len(fields) {
					c.Port, _ = strconv.Atoi(fields[i+1])
				}
			case "-C":
				if i+1 < len(fields) {
					c.Suite = fields[i+1]
				}
			case "-f":
				if i+2 <= len(fields) {
					c.Command = strings.Join(fields[i+2:], " ")
				}
			}
		}
		c.Exit, _ = strconv.Atoi(m[2])
		secs, _ := strconv.ParseFloat(m[3], 64)
		c.Took = time.Duration(secs * float64(time.Second))
		cmds = append(cmds, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("conductor log: %v", err)
	}
	return cmds
}

// IpmitoolSummary is one line per distinct ipmitool command the conductor
// ran: count, failures, mean and max duration.
func IpmitoolSummary(cmds []IpmitoolCommand) string {
	type agg struct {
		n, failed int
		sum, max  time.Duration
	}
	by := map[string]*agg{}
	for _, c := range cmds {
		key := c.Command
		if c.Suite != "" {
			key = "-C " + c.Suite + " " + key
		}
		a := by[key]
		if a == nil {
			a = &agg{}
			by[key] = a
		}
		a.n++
		if c.Exit != 0 {
			a.failed++
		}
		a.sum += c.Took
		a.max = max(a.max, c.Took)
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%-52s %3s %6s %9s %9s\n", "ipmitool command (as the conductor ran it)", "n", "failed", "mean", "max")
	for _, k := range keys {
		a := by[k]
		fmt.Fprintf(&b, "%-52s %3d %6d %9s %9s\n", k, a.n, a.failed, (a.sum / time.Duration(a.n)).Round(time.Millisecond), a.max.Round(time.Millisecond))
	}
	return b.String()
}
