package boot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	nodeUUID  = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
	deployKey = "ZT9X1Q7LM0C4B2V8N6K3J5H0G1F7D2S4"
	rootUUID  = "0c2f4e19-6ad3-4d1c-a86e-0d5a4f1d7e3a"
)

func requireLoaders(t testing.TB) {
	t.Helper()
	testenv.RequireFile(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux")
	testenv.RequireFile(t, "/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common")
	testenv.RequireFile(t, "/usr/lib/ipxe/undionly.kpxe", "ipxe")
	testenv.RequireFile(t, "/usr/lib/ipxe/ipxe.efi", "ipxe")
}

// recordingManagement is a ManagementInterface test double that records
// the boot devices set.
type recordingManagement struct {
	mu   sync.Mutex
	sets []drivers.BootDevice
	err  error
}

func (m *recordingManagement) Validate(context.Context, *provisioner.Node) error { return nil }
func (m *recordingManagement) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	return []string{"pxe", "disk"}, nil
}
func (m *recordingManagement) GetBootDevice(context.Context, *provisioner.Node) (drivers.BootDevice, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sets) == 0 {
		return drivers.BootDevice{}, nil
	}
	return m.sets[len(m.sets)-1], nil
}
func (m *recordingManagement) SetBootDevice(_ context.Context, _ *provisioner.Node, dev drivers.BootDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.sets = append(m.sets, dev)
	return nil
}

func (m *recordingManagement) last() drivers.BootDevice {
	d, _ := m.GetBootDevice(context.Background(), nil)
	return d
}

type env struct {
	tftpRoot, httpRoot string
	hosts              *dhcp.StaticHosts
	mgmt               *recordingManagement
	cache              *imagecache.Cache
	ports              []provisioner.Port
	cacheEvents        *[]imagecache.Event
	token              string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		tftpRoot: filepath.Join(dir, "tftp"),
		httpRoot: filepath.Join(dir, "http"),
		hosts:    &dhcp.StaticHosts{},
		mgmt:     &recordingManagement{},
	}
	os.MkdirAll(e.tftpRoot, 0o755)
	os.MkdirAll(e.httpRoot, 0o755)
	var mu sync.Mutex
	var events []imagecache.Event
	e.cacheEvents = &events
	c, err := imagecache.New(imagecache.Config{Dir: filepath.Join(dir, "master"), Observer: func(ev imagecache.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev)
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.cache = c
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	other, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	e.ports = []provisioner.Port{
		{UUID: "p1", Address: mac, NodeUUID: nodeUUID, PXEEnabled: true},
		{UUID: "p2", Address: other, NodeUUID: nodeUUID, PXEEnabled: false},
	}
	return e
}

// task is what a conductor hands the boot interface for node: its ports
// and the recording management interface.
func (e *env) task(node *provisioner.Node) *drivers.Task {
	var ports []provisioner.Port
	for _, p := range e.ports {
		if p.NodeUUID == node.UUID {
			ports = append(ports, p)
		}
	}
	return &drivers.Task{Node: node, Ports: ports, Management: e.mgmt}
}

func (e *env) config(httpURL string) Config {
	return Config{
		TFTPRoot:   e.tftpRoot,
		TFTPServer: netip.MustParseAddr("127.0.0.1"),
		HTTPRoot:   e.httpRoot,
		HTTPURL:    httpURL,
		APIURL:     "http://127.0.0.1:6385/",
		Hosts:      e.hosts,
		Images:     e.cache,
		Token: func(context.Context, *provisioner.Node) (string, error) {
			return e.token, nil
		},
	}
}

// writeImages writes a deploy kernel and ramdisk and instance kernel and
// ramdisk stand-ins and returns a node using them.
func writeImages(t *testing.T, mode string) *provisioner.Node {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"dk": "deploy kernel", "dr": "deploy ramdisk", "k": "instance kernel", "r": "instance ramdisk"} {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	return &provisioner.Node{
		UUID: nodeUUID,
		Name: "node-0",
		DriverInfo: map[string]any{
			"deploy_kernel":  filepath.Join(dir, "dk"),
			"deploy_ramdisk": "file://" + filepath.Join(dir, "dr"),
		},
		Properties: map[string]any{
			"capabilities": "boot_mode:" + mode,
			"root_device":  map[string]any{"serial": "s== 1", "size": float64(10)},
		},
		InstanceInfo: map[string]any{
			"kernel":  filepath.Join(dir, "k"),
			"ramdisk": filepath.Join(dir, "r"),
		},
		DriverInternalInfo: map[string]any{"deploy_key": deployKey},
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGoldenConfigs checks the generated pxelinux config and iPXE scripts
// against fixtures derived from Ironic's pxe_config.template (iSCSI era)
// and ipxe_config.template, before and after the switch to the instance.
func TestGoldenConfigs(t *testing.T) {
	requireLoaders(t)
	for _, tc := range []struct {
		iface, mode string
		files       []string
	}{
		{"pxe", "bios", []string{"config"}},
		{"pxe", "uefi", []string{"config", "config.ipxe"}},
		{"ipxe", "bios", []string{"config"}},
	} {
		t.Run(tc.iface+"-"+tc.mode, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config("http://127.0.0.1:8080")
			newIface := NewPXE
			root := e.tftpRoot
			if tc.iface == "ipxe" {
				newIface, root = NewIPXE, e.httpRoot
			}
			b, err := newIface(cfg)
			if err != nil {
				t.Fatal(err)
			}
			node := writeImages(t, tc.mode)
			if err := b.PrepareRamdisk(t.Context(), e.task(node), map[string]string{"ipa-debug": "1", "troubleshoot": "1"}); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				golden(t, fmt.Sprintf("%s-%s-deploy.%s", tc.iface, tc.mode, f), readFile(t, filepath.Join(root, nodeUUID, f)))
			}
			if tc.iface == "ipxe" {
				golden(t, "boot.ipxe", readFile(t, filepath.Join(e.httpRoot, "boot.ipxe")))
			}
			node.DriverInternalInfo["root_uuid_or_disk_id"] = rootUUID
			if err := b.PrepareInstance(t.Context(), e.task(node)); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				golden(t, fmt.Sprintf("%s-%s-boot.%s", tc.iface, tc.mode, f), readFile(t, filepath.Join(root, nodeUUID, f)))
			}
		})
	}
}

func TestPrepareRamdiskLayout(t *testing.T) {
	requireLoaders(t)
	e := newEnv(t)
	e.token = "secret-token"
	b, err := NewPXE(e.config(""))
	if err != nil {
		t.Fatal(err)
	}
	node := writeImages(t, "bios")
	delete(node.DriverInternalInfo, "deploy_key")
	if err := b.PrepareRamdisk(t.Context(), e.task(node), nil); err != nil {
		t.Fatal(err)
	}
	key, _ := node.DriverInternalInfo["deploy_key"].(string)
	if len(key) != 32 {
		t.Fatalf("deploy key %q not recorded in driver_internal_info", key)
	}
	cfg := readFile(t, filepath.Join(e.tftpRoot, nodeUUID, "config"))
	for _, want := range []string{
		"default deploy\n", "label deploy\n", "label boot\n", "ipappend 3\n",
		"kernel " + nodeUUID + "/deploy_kernel\n",
		"append initrd=" + nodeUUID + "/deploy_ramdisk ",
		" deployment_id=" + nodeUUID + " ", " deployment_key=" + key + " ",
		" iscsi_target_iqn=iqn.2008-10.org.openstack:" + nodeUUID + " ",
		" ironic_api_url=http://127.0.0.1:6385 ", " disk=cciss/c0d0,sda,hda,vda ",
		" boot_option=netboot ", " boot_mode=bios", " root_device=serial=s%3D%3D%201,size=10 ", " troubleshoot=0 ",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	for _, f := range []struct{ name, want string }{
		{nodeUUID + "/deploy_kernel", "deploy kernel"},
		{nodeUUID + "/deploy_ramdisk", "deploy ramdisk"},
		{"pxelinux.cfg/01-52-54-00-12-34-56", cfg},
		{"pxelinux.cfg/" + nodeUUID, cfg},
		{"token-" + nodeUUID, "secret-token"},
	} {
		if got := readFile(t, filepath.Join(e.tftpRoot, f.name)); got != f.want {
			t.Errorf("%s = %q, want %q", f.name, got, f.want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(e.tftpRoot, "pxelinux.cfg/01-52-54-00-12-34-56")); target != "../"+nodeUUID+"/config" {
		t.Errorf("MAC link points at %q", target)
	}
	if _, err := os.Lstat(filepath.Join(e.tftpRoot, "pxelinux.cfg/01-52-54-00-ab-cd-ef")); err == nil {
		t.Error("a port without pxe_enabled got a config link")
	}
	for _, l := range []struct{ name, src string }{
		{"pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0"},
		{"ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32"},
	} {
		if got, want := readFile(t, filepath.Join(e.tftpRoot, l.name)), readFile(t, l.src); got != want {
			t.Errorf("%s not a copy of %s", l.name, l.src)
		}
	}
	h, ok := e.hosts.Lookup(e.ports[0].Address)
	if !ok || h.BIOSBootFile != "pxelinux.0" || h.UEFIBootFile != "ipxe.efi" || h.IPXEScript != "" || h.TFTPServer.String() != "127.0.0.1" || h.Hostname != "node-0" {
		t.Errorf("dhcp host %+v %v", h, ok)
	}
	if _, ok := e.hosts.Lookup(e.ports[1].Address); ok {
		t.Error("a port without pxe_enabled got a DHCP answer")
	}
	if d := e.mgmt.last(); d.Device != "pxe" || d.Persistent {
		t.Errorf("boot device %+v, want pxe one-time", d)
	}
	// The deploy key stays across a second prepare (a retry).
	if err := b.PrepareRamdisk(t.Context(), e.task(node), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, filepath.Join(e.tftpRoot, nodeUUID, "config")), "deployment_key="+key+" ") {
		t.Error("deploy key changed on a second prepare")
	}
	// Clean up removes it all.
	if err := b.CleanUpRamdisk(t.Context(), e.task(node)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{nodeUUID, "pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/" + nodeUUID, "token-" + nodeUUID} {
		if _, err := os.Lstat(filepath.Join(e.tftpRoot, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after CleanUpRamdisk (%v)", name, err)
		}
	}
	if _, ok := e.hosts.Lookup(e.ports[0].Address); ok {
		t.Error("DHCP answer left after CleanUpRamdisk")
	}
}

func TestPrepareInstanceLocalBoot(t *testing.T) {
	requireLoaders(t)
	for _, iface := range []string{"pxe", "ipxe"} {
		t.Run(iface, func(t *testing.T) {
			e := newEnv(t)
			newIface, root := NewPXE, e.tftpRoot
			if iface == "ipxe" {
				newIface, root = NewIPXE, e.httpRoot
			}
			b, err := newIface(e.config("http://127.0.0.1:8080"))
			if err != nil {
				t.Fatal(err)
			}
			node := writeImages(t, "uefi")
			node.InstanceInfo["capabilities"] = map[string]any{"boot_option": "local"}
			if err := b.PrepareRamdisk(t.Context(), e.task(node), nil); err != nil {
				t.Fatal(err)
			}
			if cfg := readFile(t, filepath.Join(root, nodeUUID, "config")); !strings.Contains(cfg, " boot_option=local ") || !strings.Contains(cfg, " boot_mode=uefi") {
				t.Errorf("config lacks boot_option=local boot_mode=uefi:\n%s", cfg)
			}
			if err := b.PrepareInstance(t.Context(), e.task(node)); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(root, nodeUUID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node dir left for local boot (%v)", err)
			}
			if d := e.mgmt.last(); d.Device != "disk" || !d.Persistent {
				t.Errorf("boot device %+v, want disk persistent", d)
			}
			if h, ok := e.hosts.Lookup(e.ports[0].Address); !ok || h.BIOSBootFile != "" || h.UEFIBootFile != "" || h.IPXEScript != "" {
				t.Errorf("local boot host %+v %v: want an address and no boot file", h, ok)
			}
			if err := b.CleanUpInstance(t.Context(), e.task(node)); err != nil {
				t.Fatal(err)
			}
			if _, ok := e.hosts.Lookup(e.ports[0].Address); ok {
				t.Error("DHCP answer left after CleanUpInstance")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	e := newEnv(t)
	b, err := NewPXE(e.config(""))
	if err != nil {
		t.Fatal(err)
	}
	node := writeImages(t, "bios")
	delete(node.DriverInfo, "deploy_ramdisk")
	delete(node.DriverInfo, "deploy_kernel")
	err = b.Validate(t.Context(), e.task(node))
	if !errors.Is(err, drivers.ErrInvalidParameter) || err.Error() != "Cannot validate PXE bootloader. Some parameters were missing in node's driver_info. Missing are: ['deploy_kernel', 'deploy_ramdisk']" {
		t.Errorf("missing driver_info: %v", err)
	}
	node = writeImages(t, "bios")
	node.Properties["root_device"] = map[string]any{"colour": "red"}
	if err := b.Validate(t.Context(), e.task(node)); !errors.Is(err, drivers.ErrInvalidParameter) || !strings.Contains(err.Error(), `The hints "colour" are invalid`) {
		t.Errorf("bad hint: %v", err)
	}
	node.Properties["root_device"] = map[string]any{"size": "big"}
	if err := b.Validate(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), `"size" is not an integer`) {
		t.Errorf("bad size hint: %v", err)
	}
	// Missing boot programs name their Debian package.
	cfg := e.config("")
	cfg.Loaders.PXELinux = "/nonexistent/pxelinux.0"
	b2, _ := NewPXE(cfg)
	node = writeImages(t, "bios")
	if err := b2.Validate(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "install the Debian package pxelinux") {
		t.Errorf("missing pxelinux.0: %v", err)
	}
	cfg = e.config("http://x")
	cfg.Loaders.UndiOnly = "/nonexistent/undionly.kpxe"
	b3, _ := NewIPXE(cfg)
	if err := b3.Validate(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "install the Debian package ipxe") {
		t.Errorf("missing undionly.kpxe: %v", err)
	}
	requireLoaders(t)
	e.ports = nil
	if err := b.Validate(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "does not have any port") {
		t.Errorf("no ports: %v", err)
	}
	e.ports = []provisioner.Port{{Address: net.HardwareAddr{2, 0, 0, 0, 0, 1}, NodeUUID: node.UUID}}
	if err := b.Validate(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "pxe_enabled") {
		t.Errorf("no PXE port: %v", err)
	}
}

// TestIPXEOnlyNeedsNoNBPs: without Debian's ipxe package, the ipxe
// interface still serves iPXE ROMs — the script through DHCP, no NBP files
// required or handed out.
func TestIPXEOnlyNeedsNoNBPs(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("http://127.0.0.1:8080")
	cfg.Loaders = Loaders{UndiOnly: "/nonexistent/undionly.kpxe", IPXEEFI: "/nonexistent/ipxe.efi", IPXEOnly: true}
	b, err := NewIPXE(cfg)
	if err != nil {
		t.Fatal(err)
	}
	node := writeImages(t, "bios")
	if err := b.Validate(t.Context(), e.task(node)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := b.PrepareRamdisk(t.Context(), e.task(node), map[string]string{"deployment_key": "k"}); err != nil {
		t.Fatalf("PrepareRamdisk: %v", err)
	}
	h, ok := e.hosts.Lookup(e.ports[0].Address)
	if !ok || h.IPXEScript != "http://127.0.0.1:8080/boot.ipxe" || h.BIOSBootFile != "" || h.UEFIBootFile != "" {
		t.Errorf("dhcp host = %+v, want the script and no NBP", h)
	}
	for _, nbp := range []string{UndiOnlyNBP, IPXEEFINBP} {
		if _, err := os.Stat(filepath.Join(e.tftpRoot, nbp)); err == nil {
			t.Errorf("%s copied into the TFTP root", nbp)
		}
	}
}

func TestBadParamsRefused(t *testing.T) {
	requireLoaders(t)
	e := newEnv(t)
	b, _ := NewIPXE(e.config("http://127.0.0.1:8080"))
	node := writeImages(t, "bios")
	for _, p := range []map[string]string{
		{"a": "b c"}, {"a": "x||y"}, {"a b": "c"}, {"": "x"}, {"a": "b\nc"},
	} {
		if err := b.PrepareRamdisk(t.Context(), e.task(node), p); !errors.Is(err, drivers.ErrInvalidParameter) {
			t.Errorf("params %q: %v", p, err)
		}
	}
}

func TestPrepareInstanceNeedsRootUUIDAndKernel(t *testing.T) {
	requireLoaders(t)
	e := newEnv(t)
	b, _ := NewPXE(e.config(""))
	node := writeImages(t, "bios")
	if err := b.PrepareRamdisk(t.Context(), e.task(node), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.PrepareInstance(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "root partition") {
		t.Errorf("no root uuid: %v", err)
	}
	node.DriverInternalInfo["root_uuid_or_disk_id"] = rootUUID
	delete(node.InstanceInfo, "ramdisk")
	if err := b.PrepareInstance(t.Context(), e.task(node)); err == nil || !strings.Contains(err.Error(), "['ramdisk']") {
		t.Errorf("no instance ramdisk: %v", err)
	}
	// The deploy config is still in place after the failures.
	if cfg := readFile(t, filepath.Join(e.tftpRoot, nodeUUID, "config")); !strings.HasPrefix(cfg, "default deploy\n") {
		t.Errorf("config changed by a failed PrepareInstance:\n%s", cfg)
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	if _, err := NewPXE(Config{}); err == nil || !strings.Contains(err.Error(), "TFTPRoot") {
		t.Errorf("NewPXE(empty) = %v", err)
	}
	e := newEnv(t)
	if _, err := NewIPXE(e.config("")); err == nil || !strings.Contains(err.Error(), "HTTPURL") {
		t.Errorf("NewIPXE without HTTPURL = %v", err)
	}
	cfg := e.config("")
	cfg.DefaultBootMode = "legacy"
	if _, err := NewPXE(cfg); err == nil {
		t.Error("bad DefaultBootMode accepted")
	}
}

// TestConcurrentNodesShareCachedImages prepares several nodes at once with
// the same deploy images served over HTTP: each image is downloaded once
// and every node gets its own link.
func TestConcurrentNodesShareCachedImages(t *testing.T) {
	requireLoaders(t)
	var gets sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			n, _ := gets.LoadOrStore(r.URL.Path, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1e9, 0), strings.NewReader("image "+r.URL.Path))
	}))
	defer srv.Close()
	e := newEnv(t)
	const n = 6
	var nodes []*provisioner.Node
	for i := range n {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i)}
		uuid := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		e.ports = append(e.ports, provisioner.Port{Address: mac, NodeUUID: uuid, PXEEnabled: true})
		nodes = append(nodes, &provisioner.Node{
			UUID:               uuid,
			DriverInfo:         map[string]any{"deploy_kernel": srv.URL + "/dk", "deploy_ramdisk": srv.URL + "/dr"},
			Properties:         map[string]any{"capabilities": "boot_mode:bios"},
			DriverInternalInfo: map[string]any{},
		})
	}
	b, err := NewPXE(e.config(""))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.PrepareRamdisk(t.Context(), e.task(node), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		uuid := nodes[i].UUID
		if got := readFile(t, filepath.Join(e.tftpRoot, uuid, "deploy_kernel")); got != "image /dk" {
			t.Errorf("node %d deploy_kernel %q", i, got)
		}
		mac := strings.ReplaceAll(e.ports[i+2].Address.String(), ":", "-")
		if cfg := readFile(t, filepath.Join(e.tftpRoot, "pxelinux.cfg", "01-"+mac)); !strings.Contains(cfg, "deployment_id="+uuid+" ") {
			t.Errorf("node %d: its MAC link shows another node's config:\n%s", i, cfg)
		}
	}
	for _, p := range []string{"/dk", "/dr"} {
		v, _ := gets.Load(p)
		if c := v.(*atomic.Int32).Load(); c != 1 {
			t.Errorf("%s downloaded %d times for %d nodes", p, c, n)
		}
	}
}

func TestRootDeviceHints(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
		err  bool
	}{
		{nil, "", false},
		{map[string]any{}, "", false},
		{map[string]any{"serial": " QM 01 ", "rotational": true, "size": float64(100)}, "rotational=True,serial=QM%2001,size=100", false},
		{map[string]any{"by_path": "/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "wwn": "0x5000c500"}, "by_path=/dev/disk/by-path/pci-0000%3A00%3A1f.2-ata-1,wwn=0x5000c500", false},
		{map[string]any{"size": float64(1.5)}, "", true},
		{map[string]any{"size": "ten"}, "", true},
		{map[string]any{"colour": "red"}, "", true},
		{"serial=x", "", true},
	} {
		got, err := rootDeviceHints(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("rootDeviceHints(%v) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestAgentDeployConfig checks the deploy label the direct (agent) deploy
// gets against Ironic 21.4's pxe_config.template and ipxe_config.template:
// selinux=0 troubleshoot=0 text, the append params, ipa-api-url and
// ipa-global-request-id; BOOTIF only (ipappend 2); none of the iSCSI
// ramdisk's parameters.
func TestAgentDeployConfig(t *testing.T) {
	requireLoaders(t)
	agentParams := map[string]string{"ipa-api-url": "http://127.0.0.1:6385", "ipa-global-request-id": "req-" + nodeUUID}
	for _, tc := range []struct {
		iface, mode, file string
		want              []string
	}{
		{"pxe", "bios", "config", []string{
			"append initrd=" + nodeUUID + "/deploy_ramdisk selinux=0 troubleshoot=0 text nofb nomodeset vga=normal " +
				"ipa-api-url=http://127.0.0.1:6385 ipa-global-request-id=req-" + nodeUUID + "\nipappend 2\n"}},
		{"ipxe", "bios", "config", []string{
			"/deploy_kernel selinux=0 troubleshoot=0 text nofb nomodeset vga=normal ipa-api-url=http://127.0.0.1:6385 " +
				"ipa-global-request-id=req-" + nodeUUID + " BOOTIF=${mac} initrd=deploy_ramdisk || goto retry\n"}},
		{"pxe", "uefi", "config.ipxe", []string{" BOOTIF=${mac} initrd=deploy_ramdisk || goto retry\n"}},
	} {
		t.Run(tc.iface+"-"+tc.mode, func(t *testing.T) {
			e := newEnv(t)
			newIface, root := NewPXE, e.tftpRoot
			if tc.iface == "ipxe" {
				newIface, root = NewIPXE, e.httpRoot
			}
			b, err := newIface(e.config("http://127.0.0.1:8080"))
			if err != nil {
				t.Fatal(err)
			}
			node := writeImages(t, tc.mode)
			delete(node.DriverInternalInfo, "deploy_key")
			if err := b.PrepareRamdisk(t.Context(), e.task(node), agentParams); err != nil {
				t.Fatal(err)
			}
			cfg := readFile(t, filepath.Join(root, nodeUUID, tc.file))
			for _, want := range tc.want {
				if !strings.Contains(cfg, want) {
					t.Errorf("agent %s lacks %q:\n%s", tc.file, want, cfg)
				}
			}
			for _, bad := range []string{"iscsi_target_iqn", "deployment_id", "deployment_key", "ironic_api_url",
				"disk=", "boot_option=", "boot_mode=", "root_device=", "ip=", "ipappend 3"} {
				if strings.Contains(cfg, bad) {
					t.Errorf("agent %s carries the iSCSI ramdisk's %q:\n%s", tc.file, bad, cfg)
				}
			}
			if _, ok := node.DriverInternalInfo["deploy_key"]; ok {
				t.Errorf("an agent deploy minted an iSCSI deploy key")
			}
		})
	}
}
