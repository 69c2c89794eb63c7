package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
	"github.com/metalbed/metalbed/provisioner/service"
)

// Driver is the hardware type of a Bed's nodes: the fake BMC's power and
// management, the Bed's boot interface and its Variant's deploy interface.
const Driver = "test-bmc"

// Variant is one deploy interface as a Bed runs it: a row of the
// end-to-end tables.
type Variant struct {
	// Name is the deploy interface's name; nodes are enrolled with it.
	Name string
	// New builds the deploy interface from the shared part of its config
	// (Images, Recorder, Now) for b.
	New func(core deploy.Config, b *Bed) (drivers.DeployInterface, error)
	// Ramdisk is what machines boot from the deploy label.
	Ramdisk Ramdisk
}

// Options configure a Bed.
type Options struct {
	Variant Variant
	// IPXE: the ipxe boot interface instead of pxe.
	IPXE bool
	// CallbackTimeout, when set, is the deploy and clean callback timeout,
	// checked every 100 ms.
	CallbackTimeout time.Duration
	// Clock, when set, is the conductor's and the deploy interface's
	// clock.
	Clock *testenv.Clock
	// Service, when set, configures the provisioner instead of the
	// Driver hardware type (the production wiring: Netboot, IPMI);
	// StateDir, Hostname and Recorder are filled in.
	Service func(b *Bed) service.Config
}

// Bed is the provisioner under test with its API URL, the machines' fake
// BMC, and what the deploys recorded.
type Bed struct {
	t testing.TB
	// URL is the API's base URL.
	URL string
	// TFTPRoot and HTTPRoot are the boot servers' roots; HTTPURL serves
	// HTTPRoot over real HTTP.
	TFTPRoot, HTTPRoot, HTTPURL string
	// ConfigRoot holds the node configs the machines boot: the TFTP root
	// for pxe, the HTTP root for ipxe.
	ConfigRoot string
	// Files holds stand-in deploy_kernel, deploy_ramdisk, kernel and
	// ramdisk files.
	Files string
	// BMC is the machines' power and management.
	BMC *BMC
	// Agents records the conductor's calls to agents; a Variant's New
	// gives its HTTP client this transport.
	Agents *AgentRecorder

	variant Variant

	mu         sync.Mutex
	milestones map[string][]string
	details    map[string][]string
}

// NewBed starts the provisioner for the test; it stops when the test
// ends. It skips (or fails under METALBED_INTEROP=required) without the
// boot programs the boot interfaces place.
func NewBed(t testing.TB, o Options) *Bed {
	t.Helper()
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		{"/usr/lib/ipxe/ipxe.efi", "ipxe"},
	} {
		testenv.RequireFile(t, f.path, f.pkg)
	}
	dir := t.TempDir()
	b := &Bed{t: t, TFTPRoot: filepath.Join(dir, "tftp"), HTTPRoot: filepath.Join(dir, "http"),
		Files: filepath.Join(dir, "files"), BMC: &BMC{}, Agents: &AgentRecorder{},
		variant: o.Variant, milestones: map[string][]string{}, details: map[string][]string{}}
	b.ConfigRoot = b.TFTPRoot
	if o.IPXE {
		b.ConfigRoot = b.HTTPRoot
	}
	b.writeFiles()
	b.HTTPURL = ServeFiles(t, b.HTTPRoot)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.URL = "http://" + ln.Addr().String()

	var cfg service.Config
	if o.Service != nil {
		cfg = o.Service(b)
	} else {
		cfg = b.testHardware(o, filepath.Join(dir, "master"))
	}
	cfg.StateDir, cfg.Recorder = filepath.Join(dir, "state"), events.RecorderFunc(b.record)
	if cfg.Hostname == "" {
		cfg.Hostname = "test-conductor"
	}
	if cfg.PowerSyncInterval == 0 {
		cfg.PowerSyncInterval = -1
	}
	if o.CallbackTimeout > 0 {
		cfg.DeployCallbackTimeout, cfg.CleanCallbackTimeout = o.CallbackTimeout, o.CallbackTimeout
		cfg.CheckProvisionInterval = 100 * time.Millisecond
	}
	if o.Clock != nil {
		cfg.Now = o.Clock.Now
	}
	svc, err := service.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.serve(svc, ln)
	return b
}

// testHardware configures the provisioner with the Driver hardware type.
func (b *Bed) testHardware(o Options, cacheDir string) service.Config {
	t := b.t
	cache, err := imagecache.New(imagecache.Config{Dir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	bc := boot.Config{
		TFTPRoot: b.TFTPRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"), APIURL: b.URL,
		Hosts: &dhcp.StaticHosts{}, Images: cache, HTTPRoot: b.HTTPRoot, HTTPURL: b.HTTPURL,
	}
	bootName, newBoot := "pxe", boot.NewPXE
	if o.IPXE {
		bootName, newBoot = "ipxe", boot.NewIPXE
	}
	bi, err := newBoot(bc)
	if err != nil {
		t.Fatal(err)
	}
	core := deploy.Config{Images: cache, Recorder: events.RecorderFunc(b.record)}
	if o.Clock != nil {
		core.Now = o.Clock.Now
	}
	dep, err := o.Variant.New(core, b)
	if err != nil {
		t.Fatal(err)
	}
	enabled := map[drivers.Role][]string{}
	for _, r := range drivers.Roles() {
		enabled[r] = []string{"no-" + string(r)}
	}
	enabled[drivers.RoleNetwork], enabled[drivers.RoleStorage] = []string{"noop"}, []string{"noop"}
	enabled[drivers.RolePower], enabled[drivers.RoleManagement] = []string{"fake"}, []string{"fake"}
	enabled[drivers.RoleBoot], enabled[drivers.RoleDeploy] = []string{bootName}, []string{o.Variant.Name}
	reg, err := drivers.NewRegistry(&drivers.HardwareType{
		Name: Driver, Enabled: enabled,
		Power:      map[string]drivers.PowerInterface{"fake": b.BMC},
		Management: map[string]drivers.ManagementInterface{"fake": b.BMC},
		Boot:       map[string]drivers.BootInterface{bootName: bi},
		Deploy:     map[string]drivers.DeployInterface{o.Variant.Name: dep},
	})
	if err != nil {
		t.Fatal(err)
	}
	return service.Config{Drivers: reg}
}

// ImagesDir is where a Variant's deploy interface may keep per-node image
// copies.
func (b *Bed) ImagesDir() string { return filepath.Join(filepath.Dir(b.TFTPRoot), "images") }

// ServeFiles serves dir over real HTTP until the test ends and returns its
// URL.
func ServeFiles(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// writeFiles makes the stand-in deploy and instance kernels and ramdisks.
func (b *Bed) writeFiles() {
	for _, d := range []string{b.TFTPRoot, b.Files} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.t.Fatal(err)
		}
	}
	for _, name := range []string{"deploy_kernel", "deploy_ramdisk", "kernel", "ramdisk"} {
		if err := os.WriteFile(filepath.Join(b.Files, name), []byte("stand-in "+name), 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// File is the path of one of the stand-in files.
func (b *Bed) File(name string) string { return filepath.Join(b.Files, name) }

// serve runs svc on ln until the test ends.
func (b *Bed) serve(svc *service.Service, ln net.Listener) {
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

func (b *Bed) record(e events.Event) {
	if e.Kind == events.ConductorState || e.Kind.Source() == "api" {
		return // the milestones of the deploy, not every state
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.milestones[e.Node] = append(b.milestones[e.Node], string(e.Kind))
	b.details[e.Node] = append(b.details[e.Node], string(e.Kind)+": "+e.Detail)
}

// Milestones are node uuid's milestone kinds so far, comma-separated.
func (b *Bed) Milestones(uuid string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.milestones[uuid], ",")
}

// MilestoneDetails are node uuid's milestones as "kind: detail" lines.
func (b *Bed) MilestoneDetails(uuid string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.details[uuid], "\n")
}

// HTTPError is an API answer of 300 or more.
type HTTPError struct {
	Code int
	Body string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// IsHTTPError reports whether err is an API answer with status code.
func IsHTTPError(err error, code int) (*HTTPError, bool) {
	var he *HTTPError
	if errors.As(err, &he) && he.Code == code {
		return he, true
	}
	return he, false
}

// Call sends an API request at microversion 1.82; body and out are JSON.
func (b *Bed) Call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.URL+path, rd)
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
		return &HTTPError{resp.StatusCode, string(data)}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// MustCall is Call failing the test on an error.
func (b *Bed) MustCall(method, path string, body, out any) {
	b.t.Helper()
	if err := b.Call(b.t.Context(), method, path, body, out); err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
}

// NodeView is a node as the API shows it.
type NodeView struct {
	UUID                 string         `json:"uuid"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState *string        `json:"target_provision_state"`
	LastError            *string        `json:"last_error"`
	PowerState           *string        `json:"power_state"`
	DriverInternalInfo   map[string]any `json:"driver_internal_info"`
	InstanceInfo         map[string]any `json:"instance_info"`
}

// Error is last_error, "" when null.
func (n NodeView) Error() string {
	if n.LastError == nil {
		return ""
	}
	return *n.LastError
}

// Power is power_state, "" when null.
func (n NodeView) Power() string {
	if n.PowerState == nil {
		return ""
	}
	return *n.PowerState
}

// Node reads node uuid.
func (b *Bed) Node(uuid string) NodeView {
	b.t.Helper()
	var n NodeView
	b.MustCall("GET", "/v1/nodes/"+uuid, nil, &n)
	return n
}

// Enroll creates an available node of the Driver hardware type with the
// Variant's deploy interface, the capabilities caps and one PXE port,
// and its machine.
func (b *Bed) Enroll(name, caps string, automatedClean bool) (string, *Machine) {
	b.t.Helper()
	var n NodeView
	b.MustCall("POST", "/v1/nodes", map[string]any{
		"name": name, "driver": Driver, "automated_clean": automatedClean, "deploy_interface": b.variant.Name,
		"driver_info": map[string]any{"deploy_kernel": b.File("deploy_kernel"), "deploy_ramdisk": b.File("deploy_ramdisk")},
		"properties":  map[string]any{"capabilities": caps},
	}, &n)
	m := b.Attach(n.UUID)
	b.MustCall("POST", "/v1/ports", map[string]any{"node_uuid": n.UUID, "address": m.MAC(), "pxe_enabled": true}, nil)
	b.Provision(n.UUID, "manage")
	b.WaitState(n.UUID, "manageable")
	b.Provision(n.UUID, "provide")
	b.WaitState(n.UUID, "available")
	return n.UUID, m
}

// Attach gives node uuid a new machine booting the Variant's ramdisk.
func (b *Bed) Attach(uuid string) *Machine {
	m := NewMachine(b.t, b.ConfigRoot, b.variant.Ramdisk)
	b.BMC.Attach(uuid, m)
	return m
}

// Provision asks for the provision state target.
func (b *Bed) Provision(uuid, target string) {
	b.t.Helper()
	b.MustCall("PUT", "/v1/nodes/"+uuid+"/states/provision", map[string]any{"target": target}, nil)
}

// SetInstanceInfo adds ii to the node's instance_info.
func (b *Bed) SetInstanceInfo(uuid string, ii map[string]any) {
	b.t.Helper()
	var ops []map[string]any
	for k, v := range ii {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	b.MustCall("PATCH", "/v1/nodes/"+uuid, ops, nil)
}

// WaitState polls the node until it is in want with no target left
// (failed and wait states keep theirs), failing the test as soon as it
// settles in another stable state.
func (b *Bed) WaitState(uuid, want string) NodeView {
	b.t.Helper()
	stable := []string{"active", "deploy failed", "available", "clean failed", "error", "manageable"} // no task moves them
	var n NodeView
	testenv.Eventually(b.t, 90*time.Second, func() bool {
		n = b.Node(uuid)
		settled := n.TargetProvisionState == nil || *n.TargetProvisionState == "" ||
			strings.Contains(want, "failed") || strings.Contains(want, "wait")
		if n.ProvisionState == want && settled {
			return true
		}
		for _, s := range stable {
			if n.ProvisionState == s && s != want {
				b.t.Fatalf("node %s is %q, want %q; last_error: %s\n%s", uuid, n.ProvisionState, want, n.Error(), b.Dump(uuid))
			}
		}
		return false
	}, "node %s %q: %s", uuid, want, lazy(func() string { return b.Dump(uuid) }))
	return n
}

// lazy renders when printed.
type lazy func() string

func (l lazy) String() string { return l() }

// Dump shows what node uuid's machine did and its milestones, for failures.
func (b *Bed) Dump(uuid string) string {
	m := b.BMC.Machine(uuid)
	if m == nil {
		return ""
	}
	return fmt.Sprintf("milestones %s, %s", b.Milestones(uuid), m.dump())
}

// Images builds the instance images once per test binary (disk.Build
// compiles the instance's init).
type Images struct {
	once                 sync.Once
	dir                  string
	partition, wholeDisk *disk.Built
	err                  error
}

// Get returns a partition image and a whole-disk image, 64 MiB each,
// skipping the test without mkfs.ext4.
func (im *Images) Get(t testing.TB) (partition, wholeDisk *disk.Built) {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	im.once.Do(func() {
		im.dir, im.err = os.MkdirTemp("", "metalbed-deploy-test-*")
		if im.err != nil {
			return
		}
		ctx := context.Background()
		im.partition, im.err = disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(im.dir, "part.img"), SizeMB: 64})
		if im.err != nil {
			return
		}
		im.wholeDisk, im.err = disk.Build(ctx, disk.BuildConfig{Kind: disk.KindWholeDisk, Out: filepath.Join(im.dir, "disk.img"), SizeMB: 64})
	})
	if im.err != nil {
		t.Fatalf("build instance images: %v", im.err)
	}
	return im.partition, im.wholeDisk
}

// Remove deletes the images (TestMain, after the tests).
func (im *Images) Remove() {
	if im.dir != "" {
		os.RemoveAll(im.dir)
	}
}
