package iscsi_test

// End to end: the REAL conductor and API (provisioner/service on
// 127.0.0.1:0) deploy a node with the "iscsi" deploy interface and the real
// "pxe" boot interface, while the REAL deploy ramdisk (vms/ramdisk) runs
// in-process as the machine, exporting a sparse-file disk with the REAL
// iscsitarget on its own random 127.x address (so ports 3260 and 10000 are
// free). The provisioner never imports vms in production code; only this
// test does, to run the real ramdisk as the peer.
//
// The machine's power and management are test doubles standing for its BMC
// (the IPMI path is covered by provisioner/drivers' interop tests): power on
// or reboot reads the PXE config the boot interface wrote, exactly the file
// the firmware would fetch over TFTP, and starts the ramdisk with the
// deploy label's kernel command line, or records the instance boot.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

const diskSize = 2 << 30 // sparse; root_gb 1 plus an ESP must fit

// interop skips (or, with METALBED_INTEROP=required, fails) when a real
// peer is missing.
func interop(t testing.TB, what, pkg string) {
	t.Helper()
	msg := fmt.Sprintf("%s not available (Debian package %s)", what, pkg)
	if os.Getenv("METALBED_INTEROP") == "required" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// builtImages are made once per test binary: disk.Build compiles the
// instance's init.
var builtImages struct {
	once                 sync.Once
	dir                  string
	partition, wholeDisk *disk.Built
	err                  error
}

func instanceImages(t *testing.T) (partition, wholeDisk *disk.Built) {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	b := &builtImages
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "metalbed-iscsi-test-*")
		if b.err != nil {
			return
		}
		ctx := context.Background()
		b.partition, b.err = disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(b.dir, "part.img"), SizeMB: 64})
		if b.err != nil {
			return
		}
		b.wholeDisk, b.err = disk.Build(ctx, disk.BuildConfig{Kind: disk.KindWholeDisk, Out: filepath.Join(b.dir, "disk.img"), SizeMB: 64})
	})
	if b.err != nil {
		t.Fatalf("build instance images: %v", b.err)
	}
	return b.partition, b.wholeDisk
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtImages.dir != "" {
		os.RemoveAll(builtImages.dir)
	}
	os.Exit(code)
}

// machine is one simulated server as the provisioner reaches it: a BMC
// (power, boot device) and, when powered on from PXE, the real ramdisk.
type machine struct {
	t        testing.TB
	ip       net.IP
	tftpRoot string
	disk     *os.File

	// noRamdisk leaves the machine silent at power on (callback timeout).
	noRamdisk bool
	// diskMissing makes the ramdisk find no disk (it reports the error).
	diskMissing bool
	// bootloaderErr makes the ramdisk's bootloader install fail.
	bootloaderErr error

	mu       sync.Mutex
	nodeUUID string
	power    provisioner.PowerState
	bootDev  drivers.BootDevice
	flags    [5]byte // boot option parameter 5 as a BMC stores it
	cancel   context.CancelFunc
	done     chan struct{}
	ramdisks int
	console  bytes.Buffer
	booted   []string // what each power-on booted
	runErr   []error
}

func newMachine(t testing.TB, tftpRoot string) *machine {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk0.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	m := &machine{
		t: t, tftpRoot: tftpRoot, disk: f, power: provisioner.PowerOff,
		ip: net.IPv4(127, 66, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)),
	}
	t.Cleanup(func() {
		m.stop()
		f.Close()
	})
	return m
}

type fileDev struct{ *os.File }

func (f fileDev) Size() int64 { return diskSize }

// stop ends a running ramdisk and waits for it.
func (m *machine) stop() {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.cancel, m.done = nil, nil
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (m *machine) powerOn() {
	m.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.power = provisioner.PowerOn
	dev := m.bootDev
	if !dev.Persistent {
		m.bootDev = drivers.BootDevice{}
		m.flags = [5]byte{}
	}
	switch dev.Device {
	case "pxe":
		m.pxeBoot()
	case "disk":
		m.booted = append(m.booted, "disk")
	default:
		m.booted = append(m.booted, "nothing")
	}
}

// pxeBoot reads the config the firmware would fetch and boots its default
// label. Called with m.mu held.
func (m *machine) pxeBoot() {
	cfg, err := os.ReadFile(filepath.Join(m.tftpRoot, m.nodeUUID, "config"))
	if err != nil {
		m.booted = append(m.booted, "pxe: no config")
		return
	}
	label, kernel, appendLine := defaultLabel(string(cfg))
	if strings.HasPrefix(string(cfg), "#!ipxe") {
		label, kernel, appendLine = ipxeDefault(string(cfg))
	}
	if label != "deploy" {
		m.booted = append(m.booted, fmt.Sprintf("pxe %s %s %s", label, kernel, appendLine))
		return
	}
	m.booted = append(m.booted, "pxe deploy")
	if m.noRamdisk {
		return
	}
	p, err := ramdisk.ParseCmdline(appendLine)
	if err != nil {
		m.t.Errorf("deploy label: %v", err)
		return
	}
	p.ClientIP = m.ip // pxelinux's ipappend 3
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.cancel, m.done = cancel, done
	m.ramdisks++
	env := &ramdiskEnv{m: m}
	cfgR := ramdisk.Config{
		Params: p, Env: env, Console: &syncWriter{mu: &m.mu, w: &m.console},
		Export: func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
			t, err := iscsitarget.New(iscsitarget.Config{IQN: iqn, Disk: dev, Size: dev.Size()})
			if err != nil {
				return err
			}
			err = t.Serve(ctx, ln)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
		DiskWait: time.Second,
	}
	if m.bootloaderErr != nil {
		berr := m.bootloaderErr
		cfgR.Bootloader = func(context.Context, ramdisk.Disk, string) error { return berr }
	}
	go func() {
		defer close(done)
		err := ramdisk.Run(ctx, cfgR)
		if err != nil && ctx.Err() == nil {
			m.mu.Lock()
			m.runErr = append(m.runErr, err)
			m.mu.Unlock()
		}
	}()
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

// Write is called by the ramdisk while pxeBoot may hold the lock only
// before the goroutine starts, so taking it here cannot deadlock.
func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// defaultLabel parses a pxelinux config: the default label's kernel and
// append line.
func defaultLabel(cfg string) (label, kernel, appendLine string) {
	cur := ""
	for _, line := range strings.Split(cfg, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToLower(f[0]) {
		case "default":
			label = f[1]
		case "label":
			cur = f[1]
		case "kernel":
			if cur == label {
				kernel = f[1]
			}
		case "append":
			if cur == label {
				appendLine = strings.Join(f[1:], " ")
			}
		}
	}
	return label, kernel, appendLine
}

// ipxeDefault follows an iPXE script's first goto to its kernel line, with
// the iPXE settings (${ip}, ${mac}) a real ROM expands left out.
func ipxeDefault(script string) (label, kernel, appendLine string) {
	lines := strings.Split(script, "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "goto ") {
			label = strings.TrimPrefix(l, "goto ")
			break
		}
	}
	in := false
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			in = l == ":"+label
			continue
		}
		if in && strings.HasPrefix(l, "kernel ") {
			l, _, _ = strings.Cut(l, " || ")
			f := strings.Fields(l)[1:]
			var params []string
			for _, w := range f[1:] {
				if !strings.Contains(w, "${") {
					params = append(params, w)
				}
			}
			if label == "boot_partition" {
				label = "boot"
			}
			return label, f[0], strings.Join(params, " ")
		}
	}
	return label, "", ""
}

type ramdiskEnv struct{ m *machine }

func (e *ramdiskEnv) Disks(context.Context) ([]ramdisk.Disk, error) {
	if e.m.diskMissing {
		return nil, nil
	}
	return []ramdisk.Disk{{Name: "vda", SizeBytes: diskSize, Model: "metalbed SIMDISK", Serial: "disk0", Dev: fileDev{e.m.disk}}}, nil
}

func (e *ramdiskEnv) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(e.m.ip.String(), fmt.Sprint(port)))
}

// Reboot: the ramdisk asks for a reset; the conductor's reboot through
// the BMC follows and restarts the machine.
func (e *ramdiskEnv) Reboot(context.Context) error { return nil }

func (m *machine) bootedList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.booted...)
}

func (m *machine) consoleText() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console.String()
}

// bmc is the power and management interface double over machines by node.
type bmc struct {
	mu       sync.Mutex
	machines map[string]*machine
}

func (b *bmc) get(node *provisioner.Node) (*machine, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.machines[node.UUID]
	if m == nil {
		return nil, fmt.Errorf("no machine for node %s", node.UUID)
	}
	return m, nil
}

func (b *bmc) Validate(context.Context, *provisioner.Node) error { return nil }

func (b *bmc) GetPowerState(_ context.Context, node *provisioner.Node) (provisioner.PowerState, error) {
	m, err := b.get(node)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.power, nil
}

func (b *bmc) SetPowerState(_ context.Context, node *provisioner.Node, target provisioner.PowerState) error {
	m, err := b.get(node)
	if err != nil {
		return err
	}
	switch target {
	case provisioner.PowerOn:
		m.mu.Lock()
		on := m.power == provisioner.PowerOn
		m.mu.Unlock()
		if !on {
			m.powerOn()
		}
	case provisioner.PowerOff, provisioner.SoftPowerOff:
		m.stop()
		m.mu.Lock()
		m.power = provisioner.PowerOff
		m.mu.Unlock()
	default:
		return fmt.Errorf("power %s", target)
	}
	return nil
}

func (b *bmc) Reboot(_ context.Context, node *provisioner.Node, _ bool) error {
	m, err := b.get(node)
	if err != nil {
		return err
	}
	m.powerOn()
	return nil
}

type mgmt struct{ b *bmc }

func (g mgmt) Validate(context.Context, *provisioner.Node) error { return nil }
func (g mgmt) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	return []string{"pxe", "disk"}, nil
}
func (g mgmt) GetBootDevice(_ context.Context, node *provisioner.Node) (drivers.BootDevice, error) {
	m, err := g.b.get(node)
	if err != nil {
		return drivers.BootDevice{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bootDev, nil
}
func (g mgmt) SetBootDevice(_ context.Context, node *provisioner.Node, dev drivers.BootDevice) error {
	m, err := g.b.get(node)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bootDev = dev
	return nil
}

// bed is the provisioner under test with its API URL.
type bed struct {
	t        testing.TB
	url      string
	tftpRoot string
	// configRoot is where the node configs are: the TFTP root for pxe, the
	// HTTP root for ipxe.
	configRoot string
	files      string
	bmc        *bmc

	mu         sync.Mutex
	milestones map[string][]string
}

type bedOpts struct {
	callbackTimeout time.Duration
	ipxe            bool // the ipxe boot interface instead of pxe
}

func newBed(t testing.TB, o bedOpts) *bed {
	t.Helper()
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		{"/usr/lib/ipxe/ipxe.efi", "ipxe"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			interop(t, f.path, f.pkg)
		}
	}
	dir := t.TempDir()
	b := &bed{t: t, tftpRoot: filepath.Join(dir, "tftp"), files: filepath.Join(dir, "files"),
		bmc: &bmc{machines: map[string]*machine{}}, milestones: map[string][]string{}}
	b.writeFiles()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()

	cache, err := imagecache.New(imagecache.Config{Dir: filepath.Join(dir, "master")})
	if err != nil {
		t.Fatal(err)
	}
	bc := boot.Config{
		TFTPRoot: b.tftpRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"), APIURL: b.url,
		Hosts: &dhcp.StaticHosts{}, Images: cache,
		HTTPRoot: filepath.Join(dir, "http"), HTTPURL: "http://127.0.0.1:1",
	}
	bootName, newBoot := "pxe", boot.NewPXE
	b.configRoot = b.tftpRoot
	if o.ipxe {
		bootName, newBoot = "ipxe", boot.NewIPXE
		b.configRoot = bc.HTTPRoot
	}
	pxe, err := newBoot(bc)
	if err != nil {
		t.Fatal(err)
	}
	milestone := b.milestone
	dep, err := iscsi.New(iscsi.Config{
		Config:    deploy.Config{Images: cache, Milestone: milestone},
		ImagesDir: filepath.Join(dir, "images"), NotifyDelay: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	hw := &drivers.HardwareType{
		Name: "test-bmc",
		Enabled: map[drivers.Role][]string{
			drivers.RoleBios: {"no-bios"}, drivers.RoleBoot: {bootName}, drivers.RoleConsole: {"no-console"},
			drivers.RoleDeploy: {"iscsi"}, drivers.RoleInspect: {"no-inspect"}, drivers.RoleManagement: {"fake"},
			drivers.RoleNetwork: {"noop"}, drivers.RolePower: {"fake"}, drivers.RoleRaid: {"no-raid"},
			drivers.RoleRescue: {"no-rescue"}, drivers.RoleStorage: {"noop"}, drivers.RoleVendor: {"no-vendor"},
		},
		Power:      map[string]drivers.PowerInterface{"fake": b.bmc},
		Management: map[string]drivers.ManagementInterface{"fake": mgmt{b.bmc}},
		Boot:       map[string]drivers.BootInterface{bootName: pxe},
		Deploy:     map[string]drivers.DeployInterface{"iscsi": dep},
	}
	reg, err := drivers.NewRegistry(hw)
	if err != nil {
		t.Fatal(err)
	}
	cbTimeout := o.callbackTimeout
	check := time.Duration(0)
	if cbTimeout > 0 {
		check = 100 * time.Millisecond
	}
	svc, err := service.New(service.Config{
		StateDir: filepath.Join(dir, "state"), Drivers: reg, Hostname: "test-conductor",
		PowerSyncInterval: -1, DeployCallbackTimeout: cbTimeout, CleanCallbackTimeout: cbTimeout,
		CheckProvisionInterval: check, Milestone: milestone,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.serve(svc, ln)
	return b
}

func (b *bed) milestone(node, kind, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.milestones[node] = append(b.milestones[node], kind)
}

// writeFiles makes the stand-in deploy and instance kernels and ramdisks.
func (b *bed) writeFiles() {
	for _, d := range []string{b.tftpRoot, b.files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.t.Fatal(err)
		}
	}
	for _, name := range []string{"deploy_kernel", "deploy_ramdisk", "kernel", "ramdisk"} {
		if err := os.WriteFile(filepath.Join(b.files, name), []byte("stand-in "+name), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// serve runs svc on ln until the test ends.
func (b *bed) serve(svc *service.Service, ln net.Listener) {
	t := b.t
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("service: %v", err)
		}
	})
	select {
	case <-svc.Ready():
	case err := <-errc:
		t.Fatalf("service: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("service not ready")
	}
}

// ports reads a node's ports through the API (the boot interface's view).
func (b *bed) ports(ctx context.Context, nodeUUID string) ([]provisioner.Port, error) {
	var out struct {
		Ports []struct {
			Address    string `json:"address"`
			PXEEnabled bool   `json:"pxe_enabled"`
			UUID       string `json:"uuid"`
		} `json:"ports"`
	}
	if err := b.call(ctx, "GET", "/v1/nodes/"+nodeUUID+"/ports/detail", nil, &out); err != nil {
		return nil, err
	}
	var ps []provisioner.Port
	for _, p := range out.Ports {
		mac, err := net.ParseMAC(p.Address)
		if err != nil {
			return nil, err
		}
		ps = append(ps, provisioner.Port{UUID: p.UUID, Address: mac, NodeUUID: nodeUUID, PXEEnabled: p.PXEEnabled})
	}
	return ps, nil
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

func (b *bed) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.82")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return &httpError{resp.StatusCode, string(data)}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (b *bed) mustCall(method, path string, body, out any) {
	b.t.Helper()
	if err := b.call(b.t.Context(), method, path, body, out); err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
}

type nodeView struct {
	UUID                 string         `json:"uuid"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState *string        `json:"target_provision_state"`
	LastError            *string        `json:"last_error"`
	PowerState           *string        `json:"power_state"`
	DriverInternalInfo   map[string]any `json:"driver_internal_info"`
	InstanceInfo         map[string]any `json:"instance_info"`
}

func (b *bed) node(uuid string) nodeView {
	b.t.Helper()
	var n nodeView
	b.mustCall("GET", "/v1/nodes/"+uuid, nil, &n)
	return n
}

// enroll creates an available node with one PXE port and its machine.
func (b *bed) enroll(name string, caps string, automatedClean bool) (string, *machine) {
	b.t.Helper()
	var n nodeView
	b.mustCall("POST", "/v1/nodes", map[string]any{
		"name": name, "driver": "test-bmc", "automated_clean": automatedClean,
		"driver_info": map[string]any{
			"deploy_kernel":  filepath.Join(b.files, "deploy_kernel"),
			"deploy_ramdisk": filepath.Join(b.files, "deploy_ramdisk"),
		},
		"properties": map[string]any{"capabilities": caps},
	}, &n)
	m := b.attach(n.UUID)
	b.mustCall("POST", "/v1/ports", map[string]any{"node_uuid": n.UUID, "address": m.mac(), "pxe_enabled": true}, nil)
	b.provision(n.UUID, "manage")
	b.waitState(n.UUID, "manageable")
	b.provision(n.UUID, "provide")
	b.waitState(n.UUID, "available")
	return n.UUID, m
}

// attach gives node uuid a machine.
func (b *bed) attach(uuid string) *machine {
	m := newMachine(b.t, b.configRoot)
	m.nodeUUID = uuid
	b.bmc.mu.Lock()
	b.bmc.machines[uuid] = m
	b.bmc.mu.Unlock()
	return m
}

func (m *machine) mac() string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", m.ip[13], m.ip[14], m.ip[15])
}

func (b *bed) provision(uuid, target string) {
	b.t.Helper()
	b.mustCall("PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": target}, nil)
}

func (b *bed) setInstanceInfo(uuid string, ii map[string]any) {
	b.t.Helper()
	var ops []map[string]any
	for k, v := range ii {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	b.mustCall("PATCH", "/v1/nodes/"+uuid, ops, nil)
}

// waitState polls the node until it reaches want, failing on any other
// stable state.
func (b *bed) waitState(uuid, want string) nodeView {
	b.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		n := b.node(uuid)
		settled := n.TargetProvisionState == nil || *n.TargetProvisionState == "" ||
			strings.Contains(want, "failed") || strings.Contains(want, "wait")
		if n.ProvisionState == want && settled {
			return n
		}
		stable := map[string]bool{"active": true, "deploy failed": true, "available": true, "clean failed": true, "error": true, "manageable": true}
		if stable[n.ProvisionState] && n.ProvisionState != want {
			le := ""
			if n.LastError != nil {
				le = *n.LastError
			}
			b.t.Fatalf("node %s is %q, want %q; last_error: %s\n%s", uuid, n.ProvisionState, want, le, b.machineDump(uuid))
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("node %s still %q after 90 s, want %q\n%s", uuid, n.ProvisionState, want, b.machineDump(uuid))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// machineDump shows what the node's machine did, for failures.
func (b *bed) machineDump(uuid string) string {
	b.bmc.mu.Lock()
	m := b.bmc.machines[uuid]
	b.bmc.mu.Unlock()
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("boots %q, ramdisk errors %v, milestones %q, console:\n%s", m.booted, m.runErr, b.milestonesOf(uuid), m.console.String())
}

func (b *bed) milestonesOf(uuid string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.milestones[uuid]...)
}

func inspect(t *testing.T, m *machine) *disk.Inspection {
	t.Helper()
	in, err := disk.Inspect(m.disk, diskSize)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func lastError(n nodeView) string {
	if n.LastError == nil {
		return ""
	}
	return *n.LastError
}

func TestDeployNetbootPartitionImage(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("nb0", "boot_mode:bios,boot_option:netboot", false)
	b.setInstanceInfo(uuid, map[string]any{
		"image_source": part.Path, "image_checksum": part.MD5, "root_gb": "1", "swap_mb": 64,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk"),
	})
	start := time.Now()
	b.provision(uuid, "active")
	n := b.waitState(uuid, "active")
	t.Logf("netboot deploy of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
		t.Errorf("root_uuid_or_disk_id = %v, want the image's root UUID %s", got, part.RootUUID)
	}
	in := inspect(t, m)
	// Ironic's order: swap, then root last.
	if p := in.Layout.Partitions; in.Layout.Label != "msdos" || len(p) != 2 || p[0].FSType != "swap" ||
		p[1].UUID != part.RootUUID || p[1].Size != 1<<30 {
		t.Errorf("disk layout after deploy: %+v", in.Layout)
	}
	// The instance boots over the network with root=UUID of its root.
	booted := m.bootedList()
	if last := booted[len(booted)-1]; !strings.HasPrefix(last, "pxe boot ") || !strings.Contains(last, "root=UUID="+part.RootUUID) {
		t.Errorf("last boot %q, want the boot label with root=UUID=%s (all: %q)", last, part.RootUUID, booted)
	}
	if cfg, err := os.ReadFile(filepath.Join(b.tftpRoot, uuid, "config")); err != nil || !strings.HasPrefix(string(cfg), "default boot") {
		t.Errorf("PXE config after deploy: %v\n%s", err, cfg)
	}
	ms := strings.Join(b.milestonesOf(uuid), ",")
	for _, k := range []string{"prepare", "pass_deploy_info", "iscsi login", "image written", "iscsi logout", "notify", "reboot", "active"} {
		if !strings.Contains(ms, k) {
			t.Errorf("milestone %q missing: %s", k, ms)
		}
	}
	// Undeploy: cleaning runs only with automated_clean; here it is off.
	b.provision(uuid, "deleted")
	b.waitState(uuid, "available")
	if _, err := os.Stat(filepath.Join(b.tftpRoot, uuid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("boot files left after undeploy: %v", err)
	}
}

func TestDeployLocalBoot(t *testing.T) {
	part, _ := instanceImages(t)
	for _, mode := range []string{"bios", "uefi"} {
		t.Run(mode, func(t *testing.T) {
			b := newBed(t, bedOpts{})
			uuid, m := b.enroll("lb-"+mode, "boot_mode:"+mode+",boot_option:local", false)
			b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": "sha256:" + part.SHA256, "root_gb": 1})
			start := time.Now()
			b.provision(uuid, "active")
			n := b.waitState(uuid, "active")
			t.Logf("local boot (%s) deploy of a %d MiB partition image: %.2fs", mode, part.Size>>20, time.Since(start).Seconds())
			if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
				t.Errorf("root_uuid_or_disk_id = %v, want %s", got, part.RootUUID)
			}
			in := inspect(t, m)
			switch mode {
			case "bios":
				if in.BootLoader != "metalbed" || in.Layout.Label != "msdos" {
					t.Errorf("bios local boot: loader %q label %q", in.BootLoader, in.Layout.Label)
				}
			case "uefi":
				if in.ESP == 0 || !in.ESPLoader || in.Layout.Label != "gpt" {
					t.Errorf("uefi local boot: ESP %d loader %t label %q", in.ESP, in.ESPLoader, in.Layout.Label)
				}
				if n.DriverInternalInfo["efi_system_partition_uuid"] == nil {
					t.Error("efi_system_partition_uuid not recorded")
				}
			}
			booted := m.bootedList()
			if booted[len(booted)-1] != "disk" {
				t.Errorf("boots %q: want the last from disk", booted)
			}
			dev, _ := mgmt{b.bmc}.GetBootDevice(t.Context(), &provisioner.Node{UUID: uuid})
			if dev.Device != "disk" || !dev.Persistent {
				t.Errorf("boot device %+v, want disk persistent", dev)
			}
			if ms := strings.Join(b.milestonesOf(uuid), ","); !strings.Contains(ms, "bootloader") {
				t.Errorf("no bootloader milestone: %s", ms)
			}
		})
	}
}

func TestDeployWholeDiskImage(t *testing.T) {
	_, whole := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("wd0", "boot_mode:bios", false)
	b.setInstanceInfo(uuid, map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "active")
	if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != whole.DiskID {
		t.Errorf("root_uuid_or_disk_id = %v, want the disk identifier %s", got, whole.DiskID)
	}
	if w, _ := n.DriverInternalInfo["is_whole_disk_image"].(bool); !w {
		t.Error("is_whole_disk_image not recorded")
	}
	in := inspect(t, m)
	if in.Layout.DiskID != whole.DiskID {
		t.Errorf("disk id on disk %s, want %s", in.Layout.DiskID, whole.DiskID)
	}
	// The ramdisk was told netboot: it installs no bootloader.
	if strings.Contains(m.consoleText(), "installing bootloader") {
		t.Error("ramdisk installed a bootloader for a whole-disk image")
	}
	if booted := m.bootedList(); booted[len(booted)-1] != "disk" {
		t.Errorf("boots %q: want the last from disk", booted)
	}
}

func TestDeployRamdiskError(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("err0", "boot_mode:bios", false)
	m.diskMissing = true
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk")})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "deploy failed")
	if le := lastError(n); !strings.HasPrefix(le, "Error returned from deploy ramdisk: ") || !strings.Contains(le, "disk") {
		t.Errorf("last_error %q", le)
	}
	if n.PowerState == nil || *n.PowerState != "power off" {
		t.Errorf("power state %v after a failed deploy, want power off", n.PowerState)
	}
}

func TestPassDeployInfoWrongKey(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("key0", "boot_mode:bios", false)
	m.noRamdisk = true
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk")})
	b.provision(uuid, "active")
	before := b.waitState(uuid, "wait call-back")
	err := b.call(t.Context(), "POST", "/v1/nodes/"+uuid+"/vendor_passthru/pass_deploy_info",
		map[string]any{"address": m.ip.String(), "key": "WRONGKEY", "iqn": iscsi.IQNPrefix + uuid, "error": ""}, nil)
	var he *httpError
	if !errors.As(err, &he) || he.code != 400 || !strings.Contains(he.body, "Deploy key WRONGKEY does not match") {
		t.Fatalf("wrong key answered %v", err)
	}
	after := b.node(uuid)
	if after.ProvisionState != "wait call-back" || lastError(after) != lastError(before) {
		t.Errorf("node changed by a refused callback: %+v", after)
	}
	// Missing address: 400 before anything happens.
	// The real key, as the ramdisk reads it from its kernel command line.
	cfg, err := os.ReadFile(filepath.Join(b.tftpRoot, uuid, "config"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, cmdline := defaultLabel(string(cfg))
	p, err := ramdisk.ParseCmdline(cmdline)
	if err != nil || p.DeploymentKey == "" {
		t.Fatalf("deploy label %q: %v", cmdline, err)
	}
	key := p.DeploymentKey
	err = b.call(t.Context(), "POST", "/v1/nodes/"+uuid+"/vendor_passthru/pass_deploy_info",
		map[string]any{"key": key, "iqn": iscsi.IQNPrefix + uuid}, nil)
	if !errors.As(err, &he) || he.code != 400 || !strings.Contains(he.body, "Parameters ['address'] were not passed to ironic for deploy.") {
		t.Fatalf("missing address answered %v", err)
	}
	if n := b.node(uuid); n.ProvisionState != "wait call-back" {
		t.Errorf("state %q after a refused callback", n.ProvisionState)
	}
}

func TestBootloaderFailed(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("blf0", "boot_mode:uefi,boot_option:local", false)
	m.bootloaderErr = errors.New("grub-install: no ESP found")
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "deploy failed")
	want := fmt.Sprintf("Failed to install bootloader on node %s. Error: grub-install: no ESP found.", uuid)
	if le := lastError(n); le != want {
		t.Errorf("last_error %q, want %q", le, want)
	}
}

func TestCallbackTimeout(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{callbackTimeout: time.Second})
	uuid, m := b.enroll("to0", "boot_mode:bios", false)
	m.noRamdisk = true
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk")})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "deploy failed")
	if want := "Timeout reached while waiting for callback for node " + uuid; lastError(n) != want {
		t.Errorf("last_error %q, want %q", lastError(n), want)
	}
	// The clean-up runs after the fail edge, still under the node's lock
	// (as Ironic's cleanup_after_timeout).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := os.Stat(filepath.Join(b.tftpRoot, uuid))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boot files left after the timeout: %v", err)
		}
	}
}

func TestUndeployWipesDisk(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	uuid, m := b.enroll("ud0", "boot_mode:uefi,boot_option:local", true)
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1})
	b.provision(uuid, "active")
	b.waitState(uuid, "active")
	if in := inspect(t, m); in.Layout.Label != "gpt" {
		t.Fatalf("deployed disk label %q", in.Layout.Label)
	}
	b.provision(uuid, "deleted")
	n := b.waitState(uuid, "available")
	in := inspect(t, m)
	if in.Layout.Label != "" || len(in.Layout.Partitions) != 0 {
		t.Errorf("partition table left after cleaning: %+v", in.Layout)
	}
	if n.PowerState == nil || *n.PowerState != "power off" {
		t.Errorf("power %v after cleaning", n.PowerState)
	}
	if ms := strings.Join(b.milestonesOf(uuid), ","); !strings.Contains(ms, "disk wiped") {
		t.Errorf("no disk wiped milestone: %s", ms)
	}
}

// baremetal runs the real `baremetal` CLI (python3-ironicclient) against
// the bed's API.
func (b *bed) baremetal(args ...string) []byte {
	b.t.Helper()
	cmd := exec.CommandContext(b.t.Context(), "baremetal", args...)
	cmd.Env = append(os.Environ(), "OS_AUTH_TYPE=none", "OS_ENDPOINT="+b.url, "OS_CLOUD=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("baremetal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (b *bed) baremetalJSON(args ...string) map[string]any {
	b.t.Helper()
	out := b.baremetal(append(args, "-f", "json")...)
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		b.t.Fatalf("baremetal %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// TestBaremetalCLIDeploy deploys a node with the real baremetal CLI:
// enroll, set instance_info, `node deploy --wait`, and read it back active.
func TestBaremetalCLIDeploy(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	n := b.baremetalJSON("node", "create", "--driver", "test-bmc", "--name", "cli0",
		"--boot-interface", "pxe", "--deploy-interface", "iscsi",
		"--driver-info", "deploy_kernel="+filepath.Join(b.files, "deploy_kernel"),
		"--driver-info", "deploy_ramdisk="+filepath.Join(b.files, "deploy_ramdisk"),
		"--property", "capabilities=boot_mode:bios")
	uuid, _ := n["uuid"].(string)
	m := b.attach(uuid)
	b.baremetal("port", "create", m.mac(), "--node", uuid)
	b.baremetal("node", "manage", "cli0", "--wait", "60")
	b.baremetal("node", "provide", "cli0", "--wait", "60")
	b.baremetal("node", "set", "cli0",
		"--instance-info", "image_source="+part.Path,
		"--instance-info", "image_checksum="+part.MD5,
		"--instance-info", "root_gb=1",
		"--instance-info", `capabilities={"boot_option": "local"}`)
	var rows []map[string]any
	if err := json.Unmarshal(b.baremetal("node", "validate", "cli0", "-f", "json"), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if (r["Interface"] == "deploy" || r["Interface"] == "boot") && r["Result"] != true {
			t.Fatalf("validate %v: %v", r["Interface"], r["Reason"])
		}
	}
	start := time.Now()
	b.baremetal("node", "deploy", "cli0", "--wait", "120")
	t.Logf("baremetal node deploy --wait: %.2fs", time.Since(start).Seconds())
	shown := b.baremetalJSON("node", "show", "cli0")
	if shown["provision_state"] != "active" {
		t.Fatalf("provision_state %v, last_error %v", shown["provision_state"], shown["last_error"])
	}
	dii, _ := shown["driver_internal_info"].(map[string]any)
	if dii["root_uuid_or_disk_id"] != part.RootUUID {
		t.Errorf("root_uuid_or_disk_id %v, want %s", dii["root_uuid_or_disk_id"], part.RootUUID)
	}
	if in := inspect(t, m); in.BootLoader != "metalbed" {
		t.Errorf("boot loader on disk %q after a bios local boot deploy", in.BootLoader)
	}
	b.baremetal("node", "undeploy", "cli0", "--wait", "60")
	if n := b.node(uuid); n.ProvisionState != "available" {
		t.Errorf("after undeploy: %q", n.ProvisionState)
	}
}

// TestConcurrentDeploys runs the demo's three deploys at once on one
// conductor: netboot, local boot bios, local boot uefi; then undeploys all
// three with cleaning.
func TestConcurrentDeploys(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{})
	type job struct {
		caps string
		uuid string
		m    *machine
	}
	jobs := []*job{{caps: "boot_mode:bios,boot_option:netboot"}, {caps: "boot_mode:bios,boot_option:local"}, {caps: "boot_mode:uefi,boot_option:local"}}
	for i, j := range jobs {
		j.uuid, j.m = b.enroll(fmt.Sprintf("node-%d", i), j.caps, true)
		b.setInstanceInfo(j.uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1,
			"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk")})
	}
	start := time.Now()
	for _, j := range jobs {
		b.provision(j.uuid, "active")
	}
	for _, j := range jobs {
		n := b.waitState(j.uuid, "active")
		if n.DriverInternalInfo["root_uuid_or_disk_id"] != part.RootUUID {
			t.Errorf("%s: root %v", j.caps, n.DriverInternalInfo["root_uuid_or_disk_id"])
		}
	}
	t.Logf("three concurrent deploys of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	for _, j := range jobs {
		in := inspect(t, j.m)
		want := map[string]string{"boot_mode:bios,boot_option:netboot": "msdos", "boot_mode:bios,boot_option:local": "msdos", "boot_mode:uefi,boot_option:local": "gpt"}[j.caps]
		if in.Layout.Label != want {
			t.Errorf("%s: label %q, want %q", j.caps, in.Layout.Label, want)
		}
	}
	for _, j := range jobs {
		b.provision(j.uuid, "deleted")
	}
	for _, j := range jobs {
		b.waitState(j.uuid, "available")
		if in := inspect(t, j.m); in.Layout.Label != "" {
			t.Errorf("%s: partition table left: %q", j.caps, in.Layout.Label)
		}
	}
}

// TestDeployIPXE deploys netboot through the ipxe boot interface: the
// machine follows Ironic's iPXE script instead of a pxelinux config.
func TestDeployIPXE(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t, bedOpts{ipxe: true})
	uuid, m := b.enroll("ipxe0", "boot_mode:uefi,boot_option:netboot", false)
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "root_gb": 1,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk")})
	b.provision(uuid, "active")
	b.waitState(uuid, "active")
	booted := m.bootedList()
	if last := booted[len(booted)-1]; !strings.HasPrefix(last, "pxe boot ") || !strings.Contains(last, "root=UUID="+part.RootUUID) {
		t.Errorf("last boot %q, want boot_partition with root=UUID=%s (all %q)", last, part.RootUUID, booted)
	}
	if in := inspect(t, m); in.Layout.Label != "gpt" || in.ESP != 0 {
		t.Errorf("uefi netboot layout: label %q ESP %d (netboot has no ESP)", in.Layout.Label, in.ESP)
	}
}
