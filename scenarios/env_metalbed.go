package scenarios

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// envSpec says what a scenario's environment holds. It is the only input of
// startEnv, the one place an environment is started: switching to
// `metalbed up --enroll` (provisioner, netboot servers and enrolled nodes in
// one process) changes startEnv alone.
type envSpec struct {
	// Machines is how many simulated machines (node-0 … node-N-1) run with
	// their BMCs; 0 starts the provisioner alone.
	Machines int
	// BootMode is every machine's firmware mode, "bios" or "uefi"; "" = bios.
	BootMode string
	// Deploy runs the whole testbed in one `metalbed up`: provisioner,
	// DHCP/TFTP/HTTP boot servers, the timeline, and every machine enrolled
	// (--enroll) with the iscsi deploy interface.
	Deploy bool
	// DiskSize is each machine's disk, as --disk-size takes it; "" = 1GiB
	// (2GiB with Deploy: a 1 GiB root partition needs a little more).
	DiskSize string
	// Topology is a YAML topology file's text for `metalbed up --config`;
	// its machines, credentials, disks and boot modes then rule (Machines
	// is ignored).
	Topology string
	// PowerSync is the provisioner's power sync interval; 0 turns it off
	// (a sync adds IPMI commands, and Ironic's pacing, to every scenario).
	PowerSync time.Duration
	// DHCPRange is the leases of a Deploy testbed; "" = a /24 of
	// 127.0.0.0/8 reserved for this testbed alone (reserveSubnet), so
	// that concurrent scenarios, and concurrent test processes, never
	// share an address (the ramdisk's agent and iSCSI target listen on
	// the lease).
	DHCPRange string
	// CallbackTimeout is a Deploy testbed's --deploy-callback-timeout;
	// 0 = metalbed's default (10m).
	CallbackTimeout time.Duration
	// Flags are more `metalbed up` flags for a Deploy testbed.
	Flags []string
	// RamdiskDir, when set, makes a Deploy testbed's machines real VMs
	// (`up --backend libvirt`) booting this deploy ramdisk; their disks
	// default to 4 GiB, the agent's smallest.
	RamdiskDir string
}

// env is one running metalbed: machines with their BMCs (`metalbed up
// --no-provisioner`) and the provisioner (`metalbed provisioner serve`),
// each its own process in its own state directory.
type env struct {
	dir         string
	apiURL      string
	timelineURL string                   // "" unless the testbed records a timeline
	machine     map[string]inventoryNode // by name (node-0 …)
	procs       []*proc
	release     func() // gives back the reserved subnet; nil = none
}

// inventory is DIR/inventory.json as `metalbed up` writes it.
type inventory struct {
	Nodes    []inventoryNode `json:"nodes"`
	API      string          `json:"api"`      // with the provisioner
	Timeline string          `json:"timeline"` // with the provisioner
	// BootNetwork is the real VMs' boot network (--backend libvirt).
	BootNetwork *struct {
		Namespace string `json:"namespace"`
		Interface string `json:"interface"`
		Address   string `json:"address"`
		Prefix    string `json:"prefix"`
	} `json:"boot_network"`
}

type inventoryNode struct {
	Name string `json:"name"`
	BMC  struct {
		Address  string `json:"address"`
		Port     int    `json:"port"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"bmc"`
	MACs []string `json:"macs"`
	Disk struct {
		Path      string `json:"path"`
		SizeBytes int64  `json:"size_bytes"`
	} `json:"disk"`
	UUID       string `json:"uuid"`
	BootMode   string `json:"boot_mode"`
	ConsoleLog string `json:"console_log"`
	Redfish    *struct {
		Address  string `json:"address"`
		SystemID string `json:"system_id"`
		Username string `json:"username"`
		Password string `json:"password"`
		VerifyCA any    `json:"verify_ca"` // the CA file's path, or false over plain HTTP
		// BootNetworkAddress is the service as reached from inside the
		// real VMs' boot network (--backend libvirt).
		BootNetworkAddress string `json:"boot_network_address"`
	} `json:"redfish"`
}

// startTimeout bounds starting one environment.
const startTimeout = 60 * time.Second

var apiLine = regexp.MustCompile(`provisioner API on (http://\S+)`)

// startEnv starts the environment spec asks for under dir, using the
// metalbed binary bin, and returns once the BMCs listen and the API
// answers. Its processes end with ctx or stop.
func startEnv(ctx context.Context, bin, dir string, spec envSpec) (*env, error) {
	e := &env{dir: dir, machine: map[string]inventoryNode{}}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	if spec.Deploy {
		if err := e.startTestbed(ctx, sctx, bin, spec); err != nil {
			return nil, err
		}
		ok = true
		return e, nil
	}
	if spec.Machines > 0 || spec.Topology != "" {
		mdir := filepath.Join(dir, "machines")
		args := []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--no-provisioner", "--state-dir", mdir, "--bmc-base-port", "0"}
		if spec.Topology != "" {
			path := filepath.Join(dir, "topology.yaml")
			if err := os.WriteFile(path, []byte(spec.Topology), 0o644); err != nil {
				return nil, err
			}
			args = append(args, "--config", path)
		} else {
			args = append(args, "--nodes", fmt.Sprint(spec.Machines), "--disk-size", cmp.Or(spec.DiskSize, "1GiB"))
		}
		if spec.BootMode != "" {
			args = append(args, "--boot-mode", spec.BootMode)
		}
		p, err := startProc(ctx, bin, filepath.Join(dir, "up.log"), args...)
		if err != nil {
			return nil, err
		}
		e.procs = append(e.procs, p)
		inv, err := waitInventory(sctx, p, filepath.Join(mdir, "inventory.json"))
		if err != nil {
			return nil, err
		}
		for _, n := range inv.Nodes {
			e.machine[n.Name] = n
		}
	}

	p, err := startProc(ctx, bin, filepath.Join(dir, "provisioner.log"), "provisioner", "serve",
		"--addr", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "provisioner"),
		"--drivers", "ipmi,redfish,fake-hardware", "--boot-servers=false", "--power-sync-interval", syncFlag(spec.PowerSync), "--hostname", "scenario-conductor",
		// As for up: no automated cleaning unless a scenario asks (this
		// provisioner runs no deploy ramdisk to clean with).
		"--automated-clean=false")
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	m, err := p.waitStdout(sctx, apiLine)
	if err != nil {
		return nil, err
	}
	e.apiURL = m[1]
	ok = true
	return e, nil
}

// startTestbed runs one `metalbed up --enroll` with every port ephemeral.
func (e *env) startTestbed(ctx, sctx context.Context, bin string, spec envSpec) error {
	mdir := filepath.Join(e.dir, "machines")
	args := []string{"up", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--enroll", "--nodes", fmt.Sprint(spec.Machines), "--state-dir", mdir,
		"--bmc-base-port", "0", "--api-addr", "127.0.0.1:0", "--dhcp-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0", "--timeline-addr", "127.0.0.1:0",
		"--log-level", "info",
		// A scenario's faults and timeline steps are about the deploy it
		// runs; Ironic's automated cleaning on provide would boot the
		// ramdisk first and take their hits. Scenarios that clean say so
		// on the node (automated_clean true) or clean by hand.
		"--automated-clean=false"}
	disk := cmp.Or(spec.DiskSize, "2GiB")
	if spec.RamdiskDir != "" {
		disk = cmp.Or(spec.DiskSize, "4GiB")
	}
	args = append(args, "--disk-size", disk)
	if spec.DHCPRange == "" {
		net, release, err := reserveSubnet()
		if err != nil {
			return err
		}
		e.release = release
		spec.DHCPRange = net + ".10-" + net + ".250"
	}
	args = append(args, "--dhcp-range", spec.DHCPRange)
	if spec.BootMode != "" {
		args = append(args, "--boot-mode", spec.BootMode)
	}
	if spec.CallbackTimeout > 0 {
		args = append(args, "--deploy-callback-timeout", spec.CallbackTimeout.String())
	}
	if spec.RamdiskDir != "" {
		args = append(args, "--backend", "libvirt", "--ramdisk-dir", spec.RamdiskDir, "--remove-vms")
	}
	args = append(args, spec.Flags...)
	p, err := startProc(ctx, bin, filepath.Join(e.dir, "up.log"), args...)
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	inv, err := waitInventory(sctx, p, filepath.Join(mdir, "inventory.json"))
	if err != nil {
		return err
	}
	if inv.API == "" {
		return fmt.Errorf("inventory of `metalbed up --enroll` names no API:\n%s", p.logTail(20))
	}
	e.apiURL, e.timelineURL = inv.API, inv.Timeline
	for _, n := range inv.Nodes {
		e.machine[n.Name] = n
	}
	return nil
}

func syncFlag(d time.Duration) string {
	if d <= 0 {
		return "-1s"
	}
	return d.String()
}

// waitInventory polls for path, which `metalbed up` writes once every BMC listens.
func waitInventory(ctx context.Context, p *proc, path string) (*inventory, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var inv inventory
			if err := json.Unmarshal(b, &inv); err != nil {
				return nil, fmt.Errorf("inventory %s: %w", path, err)
			}
			return &inv, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w\n%s", path, ctx.Err(), p.logTail(20))
		case <-p.done:
			return nil, fmt.Errorf("metalbed up exited before writing %s: %v\n%s", path, p.err, p.logTail(20))
		case <-t.C:
		}
	}
}

// stop interrupts every process (SIGINT, as a user's ^C) in reverse start
// order and waits for them.
func (e *env) stop() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	e.procs = nil
	if e.release != nil {
		e.release()
		e.release = nil
	}
	return errors.Join(errs...)
}

// subnetLocks is where testbeds reserve their subnets: one folder for the
// whole machine (not $TMPDIR, which differs between processes that share
// the loopback interface).
const subnetLocks = "/tmp/metalbed-scenario-subnets"

// reserveSubnet reserves one of the /24s 127.101.0.0 … 127.200.255.0 for
// a testbed's leases with an exclusive flock on a file named after it in
// subnetLocks: every test process and every `metalbed scenario run` on
// the machine takes them there, and the kernel drops a dead process's
// locks. The search starts at a place derived from the PID so that
// processes seldom try the same files. It returns "127.A.B" and the
// function giving it back.
func reserveSubnet() (string, func(), error) {
	dir := subnetLocks
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", nil, fmt.Errorf("reserve a subnet: %w", err)
	}
	const count = 100 * 256
	start := os.Getpid() * 97
	for i := range count {
		n := (start + i) % count
		net := fmt.Sprintf("127.%d.%d", 101+n/256, n%256)
		f, err := os.OpenFile(filepath.Join(dir, net), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return "", nil, fmt.Errorf("reserve a subnet: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue
			}
			return "", nil, fmt.Errorf("reserve subnet %s: %w", net, err)
		}
		return net, func() { f.Close() }, nil
	}
	return "", nil, fmt.Errorf("reserve a subnet: all %d are taken in %s", count, dir)
}

// machineNamed returns the inventory entry of a machine.
func (e *env) machineNamed(name string) (inventoryNode, error) {
	m, ok := e.machine[name]
	if !ok {
		return m, fmt.Errorf("no machine %q in this environment (have %d)", name, len(e.machine))
	}
	return m, nil
}

// consoleTail is the last n lines of a machine's console.log.
func (e *env) consoleTail(name string, n int) string {
	m, ok := e.machine[name]
	if !ok {
		return ""
	}
	b, err := os.ReadFile(m.ConsoleLog)
	if errors.Is(err, os.ErrNotExist) {
		return "(no console output: the machine has not been powered on)"
	}
	if err != nil {
		return fmt.Sprintf("(no console log: %v)", err)
	}
	return lastLines(string(b), n)
}

// logs is the tail of every process's log.
func (e *env) logs(n int) string {
	var b strings.Builder
	for _, p := range e.procs {
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", p.logPath, n, p.logTail(n))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// proc is one metalbed process: stderr to a log file, stdout scanned for
// ready lines and also logged.
type proc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done closes

	mu     sync.Mutex
	stdout bytes.Buffer
	wake   chan struct{} // closed and replaced when stdout grows
}

func startProc(ctx context.Context, bin, logPath string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("process log: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	// A test binary that dies (SIGPIPE on a closed stdout, a timeout's
	// SIGQUIT) must not leave machines and servers running: the kernel
	// sends SIGTERM, which metalbed handles like ^C (StartTied, below).
	cmd.WaitDelay = 15 * time.Second
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("metalbed %s: %w", args[0], err)
	}
	p := &proc{cmd: cmd, logPath: logPath, done: make(chan struct{}), wake: make(chan struct{})}
	if err := testenv.StartTied(cmd, syscall.SIGTERM); err != nil {
		logf.Close()
		return nil, fmt.Errorf("metalbed %s: %w", args[0], err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text() + "\n"
			io.WriteString(logf, line)
			p.mu.Lock()
			p.stdout.WriteString(line)
			close(p.wake)
			p.wake = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// waitStdout waits for a line of stdout matching re and returns its submatches.
func (p *proc) waitStdout(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		p.mu.Lock()
		m := re.FindStringSubmatch(p.stdout.String())
		wake := p.wake
		p.mu.Unlock()
		if m != nil {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %q from %s: %w\n%s", re, p.cmd.Path, ctx.Err(), p.logTail(20))
		case <-p.done:
			return nil, fmt.Errorf("%s exited before printing %q: %v\n%s", p.cmd.Args[1], re, p.err, p.logTail(20))
		case <-wake:
		}
	}
}

// stop sends SIGINT and waits; the process must end cleanly.
func (p *proc) stop() error {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s did not stop within 20 s of SIGINT; killed", strings.Join(p.cmd.Args[:2], " "))
		}
	}
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.Exited() && ee.ExitCode() == 0) {
		return fmt.Errorf("%s: %w\n%s", strings.Join(p.cmd.Args[:2], " "), p.err, p.logTail(10))
	}
	return nil
}

func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}
