package direct_test

// End to end: the REAL conductor and API (provisioner/service on
// 127.0.0.1:0) deploy a node with the "direct" deploy interface and the
// real "pxe" boot interface, while the REAL agent (vms/ramdisk/agent) runs
// in-process as the machine's deploy ramdisk, on its own random 127.x
// address, over a sparse-file disk. It looks the node up, heartbeats, and
// downloads the image from a real HTTP server serving the boot interface's
// HTTP root, where the deploy interface publishes it.
//
// The machine's power and management are test doubles standing for its
// BMC (the IPMI path is covered by the demo and provisioner/drivers):
// power on with boot device pxe reads the PXE config the boot interface
// wrote and starts the agent with the deploy label's kernel command line.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/deploy/direct"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
	"github.com/metalbed/metalbed/provisioner/service"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/ramdisk/agent"
)

const diskSize = 2 << 30 // sparse; root_gb 1 plus an ESP must fit

func interop(t testing.TB, what, pkg string) {
	t.Helper()
	msg := fmt.Sprintf("%s not available (Debian package %s)", what, pkg)
	if os.Getenv("METALBED_INTEROP") == "required" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var builtImages struct {
	once                 sync.Once
	dir                  string
	partition, wholeDisk *disk.Built
	err                  error
}

func instanceImages(t *testing.T) (partition, wholeDisk *disk.Built) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		interop(t, "mkfs.ext4", "e2fsprogs")
	}
	b := &builtImages
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "metalbed-direct-test-*")
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

// machine is one simulated server: a BMC double and, when it boots the
// deploy label over PXE, the real agent.
type machine struct {
	t        testing.TB
	ip       net.IP
	tftpRoot string
	disk     *os.File

	// noAgent leaves the machine silent in the deploy ramdisk (the test
	// plays the agent's API calls itself).
	noAgent bool
	// deafToPowerOff makes the agent's power off do nothing (a machine
	// whose OS hangs on shutdown): the conductor must power it off hard.
	deafToPowerOff bool

	mu       sync.Mutex
	nodeUUID string
	power    provisioner.PowerState
	bootDev  drivers.BootDevice
	cancel   context.CancelFunc
	done     chan struct{}
	booted   []string
	softOffs int
	console  bytes.Buffer
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
	m := &machine{t: t, tftpRoot: tftpRoot, disk: f, power: provisioner.PowerOff,
		ip: net.IPv4(127, 67, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))}
	t.Cleanup(func() {
		m.stop()
		f.Close()
	})
	return m
}

func (m *machine) mac() string {
	return fmt.Sprintf("52:54:01:%02x:%02x:%02x", m.ip[13], m.ip[14], m.ip[15])
}

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

// pxeBoot boots the config's default label; called with m.mu held.
func (m *machine) pxeBoot() {
	cfg, err := os.ReadFile(filepath.Join(m.tftpRoot, m.nodeUUID, "config"))
	if err != nil {
		m.booted = append(m.booted, "pxe: no config")
		return
	}
	label, appendLine := defaultLabel(string(cfg))
	if label != "deploy" {
		m.booted = append(m.booted, "pxe "+label+" "+appendLine)
		return
	}
	m.booted = append(m.booted, "pxe deploy")
	if m.noAgent {
		return
	}
	p, err := ramdisk.ParseCmdline(appendLine)
	if err != nil {
		m.t.Errorf("deploy label: %v", err)
		return
	}
	if !p.AgentMode() {
		m.t.Errorf("deploy label without ipa-api-url: %s", appendLine)
		return
	}
	acfg, err := agent.ConfigFromParams(p)
	if err != nil {
		m.t.Errorf("agent parameters: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.cancel, m.done = cancel, done
	hw := agent.Hardware{
		NICs:        []agent.NIC{{Name: "eth0", MAC: m.mac(), IPv4: m.ip.String(), HasCarrier: true}},
		CPU:         agent.CPU{ModelName: "test CPU", Count: 1, Architecture: "x86_64"},
		MemoryBytes: 2 << 30, PhysicalMB: 2048, BMCAddress: "0.0.0.0", BootMode: "bios",
		PXEInterface: m.mac(), Hostname: "m",
	}
	deaf := m.deafToPowerOff
	powerOff := func(ctx context.Context) error {
		if deaf {
			<-ctx.Done()
			return nil
		}
		m.mu.Lock()
		m.power = provisioner.PowerOff
		m.softOffs++
		c := m.cancel
		m.mu.Unlock()
		if c != nil {
			c()
		}
		<-ctx.Done()
		return nil
	}
	acfg.Env = agent.EnvFrom(&ramdiskEnv{m: m}, hw, powerOff)
	acfg.Console = &syncWriter{mu: &m.mu, w: &m.console}
	acfg.MinDiskBytes = -1
	acfg.TempDir = m.t.TempDir()
	go func() {
		defer close(done)
		if err := agent.Run(ctx, acfg); err != nil && ctx.Err() == nil {
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

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func defaultLabel(cfg string) (label, appendLine string) {
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
		case "append":
			if cur == label {
				appendLine = strings.Join(f[1:], " ")
			}
		}
	}
	return label, appendLine
}

type fileDev struct{ *os.File }

func (f fileDev) Size() int64 { return diskSize }

type ramdiskEnv struct{ m *machine }

func (e *ramdiskEnv) Disks(context.Context) ([]ramdisk.Disk, error) {
	return []ramdisk.Disk{{Name: "vda", SizeBytes: diskSize, Model: "metalbed SIMDISK", Serial: "disk0", Dev: fileDev{e.m.disk}}}, nil
}

func (e *ramdiskEnv) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(e.m.ip.String(), fmt.Sprint(port)))
}

func (e *ramdiskEnv) Reboot(context.Context) error { return nil }

func (m *machine) bootedList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.booted...)
}

// bmc is the power and management double over machines by node.
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

// bed is the provisioner under test.
type bed struct {
	t        testing.TB
	url      string
	tftpRoot string
	files    string
	bmc      *bmc

	mu         sync.Mutex
	milestones map[string][]string
	details    map[string][]string
	agentCalls []string // "POST image.install_bootloader wait=false", "GET /v1/commands/"
}

// agentRecorder records every call the conductor makes to an agent.
type agentRecorder struct{ b *bed }

func (r agentRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	call := req.Method + " " + req.URL.Path
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var c struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(body, &c) == nil && c.Name != "" {
			call = req.Method + " " + c.Name + " wait=" + req.URL.Query().Get("wait")
		}
	}
	r.b.mu.Lock()
	r.b.agentCalls = append(r.b.agentCalls, call)
	r.b.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func newBed(t testing.TB) *bed {
	t.Helper()
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
	} {
		if _, err := os.Stat(f.path); err != nil {
			interop(t, f.path, f.pkg)
		}
	}
	dir := t.TempDir()
	b := &bed{t: t, tftpRoot: filepath.Join(dir, "tftp"), files: filepath.Join(dir, "files"),
		bmc: &bmc{machines: map[string]*machine{}}, milestones: map[string][]string{}, details: map[string][]string{}}
	for _, d := range []string{b.tftpRoot, b.files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"deploy_kernel", "deploy_ramdisk", "kernel", "ramdisk"} {
		if err := os.WriteFile(filepath.Join(b.files, name), []byte("stand-in "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	// The HTTP boot server: a real HTTP server over the HTTP root.
	httpRoot := filepath.Join(dir, "http")
	if err := os.MkdirAll(httpRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.FileServer(http.Dir(httpRoot))}
	go hs.Serve(hln)
	t.Cleanup(func() { hs.Close() })

	cache, err := imagecache.New(imagecache.Config{Dir: filepath.Join(dir, "master")})
	if err != nil {
		t.Fatal(err)
	}
	bc := boot.Config{
		TFTPRoot: b.tftpRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"), APIURL: b.url,
		Hosts: &dhcp.StaticHosts{}, Images: cache,
		HTTPRoot: httpRoot, HTTPURL: "http://" + hln.Addr().String(),
	}
	pxe, err := boot.NewPXE(bc)
	if err != nil {
		t.Fatal(err)
	}
	dep, err := direct.New(direct.Config{
		Config: deploy.Config{Images: cache, DefaultBootMode: "bios", Milestone: b.milestone},
		APIURL: b.url, HTTPRoot: bc.HTTPRoot, HTTPURL: bc.HTTPURL, PowerOffInterval: 20 * time.Millisecond,
		HTTPClient: &http.Client{Transport: agentRecorder{b}}, CommandWaitInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	hw := &drivers.HardwareType{
		Name: "test-bmc",
		Enabled: map[drivers.Role][]string{
			drivers.RoleBios: {"no-bios"}, drivers.RoleBoot: {"pxe"}, drivers.RoleConsole: {"no-console"},
			drivers.RoleDeploy: {"direct"}, drivers.RoleInspect: {"no-inspect"}, drivers.RoleManagement: {"fake"},
			drivers.RoleNetwork: {"noop"}, drivers.RolePower: {"fake"}, drivers.RoleRaid: {"no-raid"},
			drivers.RoleRescue: {"no-rescue"}, drivers.RoleStorage: {"noop"}, drivers.RoleVendor: {"no-vendor"},
		},
		Power:      map[string]drivers.PowerInterface{"fake": b.bmc},
		Management: map[string]drivers.ManagementInterface{"fake": mgmt{b.bmc}},
		Boot:       map[string]drivers.BootInterface{"pxe": pxe},
		Deploy:     map[string]drivers.DeployInterface{"direct": dep},
	}
	reg, err := drivers.NewRegistry(hw)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(service.Config{
		StateDir: filepath.Join(dir, "state"), Drivers: reg, Hostname: "test-conductor",
		PowerSyncInterval: -1, Milestone: b.milestone,
	})
	if err != nil {
		t.Fatal(err)
	}
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
	return b
}

func (b *bed) milestone(node, kind, detail string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.milestones[node] = append(b.milestones[node], kind)
	b.details[node] = append(b.details[node], kind+": "+detail)
}

func (b *bed) milestonesOf(uuid string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.milestones[uuid], ",")
}

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
	DriverInternalInfo   map[string]any `json:"driver_internal_info"`
}

func (b *bed) node(uuid string) nodeView {
	b.t.Helper()
	var n nodeView
	b.mustCall("GET", "/v1/nodes/"+uuid, nil, &n)
	return n
}

// enroll creates an available node with one PXE port and its machine.
func (b *bed) enroll(name, caps string, automatedClean bool) (string, *machine) {
	b.t.Helper()
	var n nodeView
	b.mustCall("POST", "/v1/nodes", map[string]any{
		"name": name, "driver": "test-bmc", "automated_clean": automatedClean, "deploy_interface": "direct",
		"driver_info": map[string]any{
			"deploy_kernel":  filepath.Join(b.files, "deploy_kernel"),
			"deploy_ramdisk": filepath.Join(b.files, "deploy_ramdisk"),
		},
		"properties": map[string]any{"capabilities": caps},
	}, &n)
	m := newMachine(b.t, b.tftpRoot)
	m.nodeUUID = n.UUID
	b.bmc.mu.Lock()
	b.bmc.machines[n.UUID] = m
	b.bmc.mu.Unlock()
	b.mustCall("POST", "/v1/ports", map[string]any{"node_uuid": n.UUID, "address": m.mac(), "pxe_enabled": true}, nil)
	b.provision(n.UUID, "manage")
	b.waitState(n.UUID, "manageable")
	b.provision(n.UUID, "provide")
	b.waitState(n.UUID, "available")
	return n.UUID, m
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
		settled := n.TargetProvisionState == nil || *n.TargetProvisionState == "" || strings.Contains(want, "failed") || strings.Contains(want, "wait")
		if n.ProvisionState == want && settled {
			return n
		}
		stable := map[string]bool{"active": true, "deploy failed": true, "available": true, "clean failed": true, "error": true, "manageable": true}
		if stable[n.ProvisionState] && n.ProvisionState != want {
			b.t.Fatalf("node %s is %q, want %q; last_error: %s\n%s", uuid, n.ProvisionState, want, lastError(n), b.dump(uuid))
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("node %s still %q after 90 s, want %q\n%s", uuid, n.ProvisionState, want, b.dump(uuid))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bed) dump(uuid string) string {
	b.bmc.mu.Lock()
	m := b.bmc.machines[uuid]
	b.bmc.mu.Unlock()
	if m == nil {
		return ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("boots %q, agent errors %v, milestones %s, console:\n%s", m.booted, m.runErr, b.milestonesOf(uuid), m.console.String())
}

func lastError(n nodeView) string {
	if n.LastError == nil {
		return ""
	}
	return *n.LastError
}

func inspect(t *testing.T, m *machine) *disk.Inspection {
	t.Helper()
	in, err := disk.Inspect(m.disk, diskSize)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestDeployPartitionLocalBoot: the agent writes a partition image and
// installs the bootloader; the node reboots from disk; undeploy with
// automated cleaning has the agent wipe the partition tables.
func TestDeployPartitionLocalBoot(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t)
	uuid, m := b.enroll("p0", "boot_mode:bios,boot_option:local", true)
	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": "1", "image_type": "partition"})
	start := time.Now()
	b.provision(uuid, "active")
	n := b.waitState(uuid, "active")
	t.Logf("agent deploy of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
		t.Errorf("root_uuid_or_disk_id = %v, want %s", got, part.RootUUID)
	}
	if _, ok := n.DriverInternalInfo["agent_secret_token"]; ok {
		t.Error("agent token kept after the deploy")
	}
	in := inspect(t, m)
	if in.BootLoader != "metalbed" || in.Layout.Label != "msdos" || in.Layout.Find("root") == nil || in.Layout.Find("root").UUID != part.RootUUID {
		t.Errorf("disk after deploy: loader %q layout %+v", in.BootLoader, in.Layout)
	}
	booted := m.bootedList()
	if booted[len(booted)-1] != "disk" {
		t.Errorf("boots %q: want the last from disk", booted)
	}
	m.mu.Lock()
	soft := m.softOffs
	m.mu.Unlock()
	if soft != 1 {
		t.Errorf("%d soft power offs through the agent, want 1", soft)
	}
	// As Ironic 21.4 (agent-traffic.jsonl): install_bootloader goes
	// asynchronously and the command list is polled right after.
	b.mu.Lock()
	calls := append([]string(nil), b.agentCalls...)
	b.mu.Unlock()
	i := slices.Index(calls, "POST image.install_bootloader wait=false")
	if i < 0 || i+1 >= len(calls) || calls[i+1] != "GET /v1/commands/" {
		t.Errorf("agent calls %q: want image.install_bootloader with wait=false, then GET /v1/commands/", calls)
	}
	ms := b.milestonesOf(uuid)
	for _, k := range []string{"image cached", "prepare", "power on", "write_image", "image written", "bootloader", "power off", "reboot", "active"} {
		if !strings.Contains(ms, k) {
			t.Errorf("milestone %q missing: %s", k, ms)
		}
	}
	b.provision(uuid, "deleted")
	b.waitState(uuid, "available")
	if in := inspect(t, m); len(in.Layout.Partitions) != 0 || in.BootSignature {
		t.Errorf("disk after cleaning: %+v", in)
	}
	if !strings.Contains(b.milestonesOf(uuid), "disk wiped") {
		t.Errorf("no disk wiped milestone: %s", b.milestonesOf(uuid))
	}
}

// TestDeployWholeDisk: a whole-disk image from an HTTP source the agent
// fetches itself, checked with os_hash sha256.
func TestDeployWholeDisk(t *testing.T) {
	_, whole := instanceImages(t)
	b := newBed(t)
	// The image on a real HTTP server of its own: the agent fetches the
	// image_source URL directly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(whole.Path)))}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	uuid, m := b.enroll("w0", "boot_mode:bios", false)
	b.setInstanceInfo(uuid, map[string]any{
		"image_source":       "http://" + ln.Addr().String() + "/" + filepath.Base(whole.Path),
		"image_os_hash_algo": "sha256", "image_os_hash_value": whole.SHA256,
	})
	b.provision(uuid, "active")
	b.waitState(uuid, "active")
	in := inspect(t, m)
	if in.Layout.DiskID != whole.DiskID {
		t.Errorf("disk identifier %q, want the image's %q", in.Layout.DiskID, whole.DiskID)
	}
	dev, _ := mgmt{b.bmc}.GetBootDevice(t.Context(), &provisioner.Node{UUID: uuid})
	if dev.Device != "disk" || !dev.Persistent {
		t.Errorf("boot device %+v, want disk persistent", dev)
	}
	booted := m.bootedList()
	if booted[len(booted)-1] != "disk" {
		t.Errorf("boots %q: want the last from disk", booted)
	}
}

// TestDeployBadChecksum: the agent's write fails its checksum; the node
// fails with Ironic's message carrying the agent's error, and is off.
func TestDeployBadChecksum(t *testing.T) {
	_, whole := instanceImages(t)
	b := newBed(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(whole.Path)))}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	uuid, m := b.enroll("bad0", "boot_mode:bios", false)
	b.setInstanceInfo(uuid, map[string]any{
		"image_source":   "http://" + ln.Addr().String() + "/" + filepath.Base(whole.Path),
		"image_checksum": strings.Repeat("0", 32),
	})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "deploy failed")
	le := lastError(n)
	if !strings.HasPrefix(le, "Agent returned error for deploy step {'interface': 'deploy', 'step': 'write_image'") ||
		!strings.Contains(le, "on node "+uuid) || !strings.Contains(strings.ToLower(le), "checksum") {
		t.Errorf("last_error %q", le)
	}
	m.mu.Lock()
	power := m.power
	m.mu.Unlock()
	if power != provisioner.PowerOff {
		t.Errorf("power %s after a failed deploy, want off", power)
	}
}

// TestHeartbeatWrongToken: while the node waits for its agent, lookup
// issues the token once; a heartbeat with another token is refused and
// records nothing; one with the token is accepted and starts the deploy,
// which fails with Ironic's message since no agent answers at its URL.
func TestHeartbeatWrongToken(t *testing.T) {
	_, whole := instanceImages(t)
	b := newBed(t)
	uuid, m := b.enroll("tok0", "boot_mode:bios", false)
	m.noAgent = true
	b.setInstanceInfo(uuid, map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5})
	b.provision(uuid, "active")
	b.waitState(uuid, "wait call-back")
	var lk struct {
		Node   struct{ UUID string } `json:"node"`
		Config struct {
			Token string `json:"agent_token"`
		} `json:"config"`
	}
	b.mustCall("GET", "/v1/lookup?addresses="+m.mac(), nil, &lk)
	if lk.Node.UUID != uuid || lk.Config.Token == "" || lk.Config.Token == "******" {
		t.Fatalf("lookup: %+v", lk)
	}
	var again struct {
		Config struct {
			Token string `json:"agent_token"`
		} `json:"config"`
	}
	b.mustCall("GET", "/v1/lookup?addresses="+m.mac(), nil, &again)
	if again.Config.Token != "******" {
		t.Errorf("second lookup got token %q, want ******", again.Config.Token)
	}
	err := b.call(t.Context(), "POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": "http://127.0.0.1:1", "agent_token": "not-the-token", "agent_version": "9.4.0"}, nil)
	var he *httpError
	if !asHTTPError(err, &he) || he.code != http.StatusBadRequest || !strings.Contains(he.body, "Invalid or missing agent token received.") {
		t.Fatalf("heartbeat with a wrong token: %v", err)
	}
	if n := b.node(uuid); n.ProvisionState != "wait call-back" || n.DriverInternalInfo["agent_url"] != nil {
		t.Errorf("refused heartbeat changed the node: %s %v", n.ProvisionState, n.DriverInternalInfo["agent_url"])
	}
	// Port 1 on loopback: nothing listens, the write_image call fails.
	b.mustCall("POST", "/v1/heartbeat/"+uuid, map[string]any{
		"callback_url": "http://127.0.0.1:1", "agent_token": lk.Config.Token, "agent_version": "9.4.0"}, nil)
	n := b.waitState(uuid, "deploy failed")
	if le := lastError(n); !strings.HasPrefix(le, "Deploy failed for instance None. Error: Agent command deploy.get_deploy_steps failed") {
		t.Errorf("last_error %q", le)
	}
}

func asHTTPError(err error, target **httpError) bool {
	he, ok := err.(*httpError)
	if ok {
		*target = he
	}
	return ok
}

// TestValidate: the deploy interface's checks as GET …/validate shows them.
func TestValidate(t *testing.T) {
	b := newBed(t)
	uuid, _ := b.enroll("v0", "boot_mode:bios", false)
	deployResult := func() (bool, string) {
		var v struct {
			Deploy struct {
				Result bool    `json:"result"`
				Reason *string `json:"reason"`
			} `json:"deploy"`
		}
		b.mustCall("GET", "/v1/nodes/"+uuid+"/validate", nil, &v)
		r := ""
		if v.Deploy.Reason != nil {
			r = *v.Deploy.Reason
		}
		return v.Deploy.Result, r
	}
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['image_source']") {
		t.Errorf("no image_source: %t %q", ok, r)
	}
	b.setInstanceInfo(uuid, map[string]any{"image_source": "http://127.0.0.1:1/img"})
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['image_checksum']") {
		t.Errorf("HTTP source without checksum: %t %q", ok, r)
	}
	b.setInstanceInfo(uuid, map[string]any{"image_checksum": strings.Repeat("a", 32), "image_type": "partition"})
	if ok, r := deployResult(); ok || !strings.Contains(r, "Missing are: ['root_gb']") {
		t.Errorf("partition image without root_gb: %t %q", ok, r)
	}
	b.setInstanceInfo(uuid, map[string]any{"root_gb": 1})
	if ok, r := deployResult(); !ok {
		t.Errorf("complete instance_info: %t %q", ok, r)
	}
}

// TestDeployPartitionNetboot: a partition image booted over the network:
// no bootloader, the instance's PXE config, root=UUID of the written root.
func TestDeployPartitionNetboot(t *testing.T) {
	part, _ := instanceImages(t)
	b := newBed(t)
	uuid, m := b.enroll("nb0", "boot_mode:bios,boot_option:netboot", false)
	b.setInstanceInfo(uuid, map[string]any{
		"image_source": part.Path, "image_os_hash_algo": "sha256", "image_os_hash_value": part.SHA256, "root_gb": 1,
		"kernel": filepath.Join(b.files, "kernel"), "ramdisk": filepath.Join(b.files, "ramdisk"),
	})
	b.provision(uuid, "active")
	n := b.waitState(uuid, "active")
	if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
		t.Errorf("root_uuid_or_disk_id = %v, want %s", got, part.RootUUID)
	}
	if in := inspect(t, m); in.BootLoader != "" || in.Layout.Find("root") == nil || in.Layout.Find("root").UUID != part.RootUUID {
		t.Errorf("disk after a netboot deploy: loader %q layout %+v", in.BootLoader, in.Layout)
	}
	booted := m.bootedList()
	if last := booted[len(booted)-1]; !strings.HasPrefix(last, "pxe boot ") || !strings.Contains(last, "root=UUID="+part.RootUUID) {
		t.Errorf("last boot %q, want the instance's boot label (all: %q)", last, booted)
	}
	if ms := b.milestonesOf(uuid); strings.Contains(ms, "bootloader") {
		t.Errorf("bootloader installed for netboot: %s", ms)
	}
}

// TestDeployHardPowerOff: the agent's soft power off does not take; after
// the BMC polls the conductor powers the node off hard and still boots the
// instance.
func TestDeployHardPowerOff(t *testing.T) {
	_, whole := instanceImages(t)
	b := newBed(t)
	uuid, m := b.enroll("hard0", "boot_mode:bios", false)
	m.deafToPowerOff = true
	b.setInstanceInfo(uuid, map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5})
	b.provision(uuid, "active")
	b.waitState(uuid, "active")
	b.mu.Lock()
	details := strings.Join(b.details[uuid], "\n")
	b.mu.Unlock()
	if !strings.Contains(details, "power off: hard") {
		t.Errorf("no hard power off:\n%s", details)
	}
	booted := m.bootedList()
	if booted[len(booted)-1] != "disk" {
		t.Errorf("boots %q: want the last from disk", booted)
	}
}
