package boot_test

// End to end: the boot interfaces write their files and DHCP answers, the
// provisioner's own DHCP, TFTP and HTTP servers serve them on loopback, and
// the simulated machine's NIC ROM (vms/sim/pxe, which runs Debian's real
// pxelinux.0 config lookup and Ironic's iPXE scripts) boots from them; real
// clients nobody here wrote (tftp-hpa's tftp, curl) fetch the same files.
// (The provisioner never imports vms; only these tests do, to boot it.)

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/gokrazy/kernel.amd64" // a real bzImage for the boot tests
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/httpboot"
	"github.com/metalbed/metalbed/provisioner/imagecache"
	"github.com/metalbed/metalbed/provisioner/tftp"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

const (
	e2eNode = "6f1c9a52-8d3e-4b7a-9c21-5e0d4f3a2b10"
	e2eRoot = "9b8e7d6c-5a4b-4c3d-8e2f-1a0b9c8d7e6f"
	e2eKey  = "K3Y0123456789ABCDEFGHIJKLMNOPQRS"
)

// interop skips (or, with METALBED_INTEROP=required, fails) when a real
// peer is missing.
func interop(t testing.TB, what, pkg string) {
	t.Helper()
	testenv.Unavailable(t, fmt.Sprintf("%s not available (Debian package %s)", what, pkg))
}

func requireFiles(t testing.TB) {
	t.Helper()
	for _, f := range []struct{ path, pkg string }{
		{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"},
		{"/usr/lib/syslinux/modules/bios/ldlinux.c32", "syslinux-common"},
		{"/usr/lib/ipxe/undionly.kpxe", "ipxe"},
		{"/usr/lib/ipxe/ipxe.efi", "ipxe"},
	} {
		testenv.RequireFile(t, f.path, f.pkg)
	}
}

// realKernel is the gokrazy bzImage from the module cache.
func realKernel(t testing.TB) (path string, data []byte) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.amd64").Output()
	if err != nil {
		t.Fatalf("locate gokrazy kernel module: %v", err)
	}
	path = filepath.Join(strings.TrimSpace(string(out)), "vmlinuz")
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// realRamdisk builds a metalbed deploy initramfs.
func realRamdisk(t testing.TB, dir string) (path string, data []byte) {
	t.Helper()
	init := filepath.Join(dir, "init")
	if err := os.WriteFile(init, []byte("\x7fELF stand-in for the metalbed binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ramdisk.BuildInitramfs(&b, ramdisk.ImageConfig{Init: init, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "deploy_ramdisk.cpio.gz")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b.Bytes()
}

type management struct {
	mu   sync.Mutex
	sets []drivers.BootDevice
}

func (m *management) Validate(context.Context, *provisioner.Node) error { return nil }
func (m *management) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	return []string{"pxe", "disk"}, nil
}
func (m *management) GetBootDevice(context.Context, *provisioner.Node) (drivers.BootDevice, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sets[len(m.sets)-1], nil
}
func (m *management) SetBootDevice(_ context.Context, _ *provisioner.Node, d drivers.BootDevice) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sets = append(m.sets, d)
	return nil
}

// bed is the provisioner side on loopback: DHCP, TFTP and HTTP servers
// over fresh roots, and a boot interface.
type bed struct {
	tftpRoot, httpRoot string
	dhcpAddr           string
	tftpPort           int
	httpURL            string
	hosts              *dhcp.StaticHosts
	iface              *boot.Interface
	mgmt               *management
	ports              []provisioner.Port
	cacheEvents        []imagecache.Event
	tftpEvents         []tftp.Event
	mu                 sync.Mutex
}

// task is what a conductor hands the boot interface for node.
func (b *bed) task(node *provisioner.Node) *drivers.Task {
	return &drivers.Task{Node: node, Ports: b.ports, Management: b.mgmt}
}

func startBed(t *testing.T, ipxe bool, token string) *bed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	dir := t.TempDir()
	b := &bed{
		tftpRoot: filepath.Join(dir, "tftp"), httpRoot: filepath.Join(dir, "http"),
		hosts: &dhcp.StaticHosts{}, mgmt: &management{},
	}
	os.MkdirAll(b.tftpRoot, 0o755)
	os.MkdirAll(b.httpRoot, 0o755)

	ds, err := dhcp.New(dhcp.Config{
		ServerIP: netip.MustParseAddr("127.0.0.1"),
		Pool: dhcp.Pool{
			Subnet: netip.MustParsePrefix("127.0.0.0/8"),
			First:  netip.MustParseAddr("127.0.30.10"), Last: netip.MustParseAddr("127.0.30.200"),
		},
		Hosts: b.hosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	dconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.dhcpAddr = dconn.LocalAddr().String()

	ts, err := tftp.New(tftp.Config{Root: b.tftpRoot, Timeout: 2 * time.Second, Observer: func(e tftp.Event) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.tftpEvents = append(b.tftpEvents, e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	tconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.tftpPort = tconn.LocalAddr().(*net.UDPAddr).Port

	hs, err := httpboot.New(httpboot.Config{Root: b.httpRoot})
	if err != nil {
		t.Fatal(err)
	}
	hln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.httpURL = "http://" + hln.Addr().String()

	wg.Add(3)
	go func() { defer wg.Done(); ds.Serve(ctx, dconn) }()
	go func() { defer wg.Done(); ts.Serve(ctx, tconn) }()
	go func() { defer wg.Done(); hs.Serve(ctx, hln) }()

	cache, err := imagecache.New(imagecache.Config{Dir: filepath.Join(dir, "master"), Observer: func(e imagecache.Event) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.cacheEvents = append(b.cacheEvents, e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:7a:00:01")
	b.ports = []provisioner.Port{{UUID: "port-0", Address: mac, NodeUUID: e2eNode, PXEEnabled: true}}
	cfg := boot.Config{
		TFTPRoot: b.tftpRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"),
		HTTPRoot: b.httpRoot, HTTPURL: b.httpURL,
		APIURL: "http://127.0.0.1:6385",
		Hosts:  b.hosts, Images: cache,
		Token: func(context.Context, *provisioner.Node) (string, error) { return token, nil },
	}
	newIface := boot.NewPXE
	if ipxe {
		newIface = boot.NewIPXE
	}
	b.iface, err = newIface(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bootROM boots the simulated machine's NIC ROM against the bed and returns
// the image it handed to the kernel.
func (b *bed) bootROM(t *testing.T, mode vms.BootMode, machineUUID [16]byte) (pxe.Image, string) {
	t.Helper()
	var got pxe.Image
	var booted bool
	rom := &pxe.ROM{
		DHCPServer: b.dhcpAddr, DHCPClient: "127.0.0.1:0", TFTPPort: b.tftpPort,
		Timeout: 2 * time.Second,
		Exec: func(_ context.Context, _ *sim.BootContext, img pxe.Image) error {
			got, booted = img, true
			return nil
		},
	}
	var console bytes.Buffer
	var mu sync.Mutex
	bc := &sim.BootContext{
		Machine: "node-e2e", UUID: machineUUID, Device: vms.BootPXE, Mode: mode,
		NICs:    []vms.NIC{{MAC: b.ports[0].Address}},
		Console: writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return console.Write(p) }),
		Emit:    func(vms.EventKind, string) {},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := rom.Boot(ctx, bc); err != nil || !booted {
		t.Fatalf("ROM boot (%s): %v\n%s", mode, err, console.String())
	}
	return got, console.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestROMBootsDeployThenInstance(t *testing.T) {
	requireFiles(t)
	kernelPath, kernel := realKernel(t)
	imgDir := t.TempDir()
	ramdiskPath, initrd := realRamdisk(t, imgDir)
	// The instance kernel is another bzImage (the same with a trailer),
	// served over HTTP to the image cache.
	instKernel := append(append([]byte(nil), kernel...), []byte("instance kernel trailer")...)
	instRamdisk := []byte("instance initrd bytes")
	imgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/vmlinuz":
			http.ServeContent(w, r, "vmlinuz", time.Unix(1e9, 0), bytes.NewReader(instKernel))
		case "/initrd":
			http.ServeContent(w, r, "initrd", time.Unix(1e9, 0), bytes.NewReader(instRamdisk))
		default:
			http.NotFound(w, r)
		}
	}))
	defer imgSrv.Close()

	for _, iface := range []string{"pxe", "ipxe"} {
		for _, mode := range []vms.BootMode{vms.BIOS, vms.UEFI} {
			t.Run(iface+"-"+string(mode), func(t *testing.T) {
				b := startBed(t, iface == "ipxe", "tok-"+iface)
				node := &provisioner.Node{
					UUID: e2eNode, Name: "node-e2e",
					DriverInfo: map[string]any{"deploy_kernel": kernelPath, "deploy_ramdisk": "file://" + ramdiskPath},
					Properties: map[string]any{
						"capabilities": "boot_mode:" + string(mode),
						"root_device":  map[string]any{"serial": "QM 0001"},
					},
					InstanceInfo:       map[string]any{"kernel": imgSrv.URL + "/vmlinuz", "ramdisk": imgSrv.URL + "/initrd"},
					DriverInternalInfo: map[string]any{},
				}
				if err := b.iface.PrepareRamdisk(t.Context(), b.task(node), map[string]string{"deployment_key": e2eKey, "ipa-debug": "1"}); err != nil {
					t.Fatal(err)
				}
				if d, _ := b.mgmt.GetBootDevice(t.Context(), node); d.Device != "pxe" || d.Persistent {
					t.Errorf("boot device after PrepareRamdisk %+v", d)
				}
				// A machine UUID other than the node's: pxelinux finds its
				// config by MAC.
				machine := [16]byte{0xaa, 1, 2, 3, 4, 5, 0x46, 7, 0x88, 9, 10, 11, 12, 13, 14, 15}
				img, console := b.bootROM(t, mode, machine)
				if img.Kernel.Sum != pxe.Checksum(kernel) {
					t.Fatalf("deploy boot: kernel %s is %d bytes, not the deploy kernel (%d)\n%s", img.KernelName, img.Kernel.Size, len(kernel), console)
				}
				if len(img.Initrds) != 1 || img.Initrds[0].Sum != pxe.Checksum(initrd) {
					t.Fatalf("deploy boot: initrds %d, not the deploy ramdisk\n%s", len(img.Initrds), console)
				}
				if err := img.Initrds[0].NotInitramfs; err != nil {
					t.Errorf("initrd is not a metalbed ramdisk: %v", err)
				}
				p, err := ramdisk.ParseCmdline(img.Cmdline)
				if err != nil {
					t.Fatalf("the ramdisk refuses the command line %q: %v", img.Cmdline, err)
				}
				if err := p.CheckISCSIDeploy(); err != nil {
					t.Errorf("command line %q: %v", img.Cmdline, err)
				}
				if p.DeploymentID != e2eNode || p.DeploymentKey != e2eKey || p.ISCSITargetIQN != "iqn.2008-10.org.openstack:"+e2eNode ||
					p.IronicAPIURL != "http://127.0.0.1:6385" || strings.Join(p.Disks, ",") != "cciss/c0d0,sda,hda,vda" ||
					p.BootOption != "netboot" || p.BootMode != string(mode) || p.RootDevice["serial"] != "QM 0001" ||
					p.Raw["troubleshoot"] != "0" || p.Raw["ipa-debug"] != "1" {
					t.Errorf("deploy parameters %+v from %q", p, img.Cmdline)
				}
				// ipappend 3 (pxelinux) or the iPXE equivalent: the ramdisk
				// knows its address, the boot server and its MAC.
				if !p.ClientIP.Equal(img.Lease.IP) || !p.BootServer.Equal(net.IPv4(127, 0, 0, 1)) || p.BootIF.String() != b.ports[0].Address.String() {
					t.Errorf("ip=/BOOTIF= wrong: client %v server %v bootif %v (lease %v) in %q", p.ClientIP, p.BootServer, p.BootIF, img.Lease.IP, img.Cmdline)
				}
				// The token the ramdisk fetches over TFTP from the boot server.
				tok, err := tftpGet(t, b.tftpPort, "token-"+e2eNode)
				if err != nil || string(tok) != "tok-"+iface {
					t.Errorf("token-%s over TFTP: %q, %v", e2eNode, tok, err)
				}
				switch {
				case iface == "pxe" && mode == vms.BIOS:
					if !strings.Contains(console, "PXELINUX") || !strings.Contains(console, "pxelinux.cfg/01-52-54-00-7a-00-01 ok") {
						t.Errorf("not booted through pxelinux.0 and the MAC config:\n%s", console)
					}
				case iface == "pxe":
					if !strings.Contains(console, "tftp://127.0.0.1/"+e2eNode+"/config.ipxe") {
						t.Errorf("UEFI pxe not booted through the TFTP iPXE script:\n%s", console)
					}
				default:
					if !strings.Contains(console, b.httpURL+"/boot.ipxe") || !strings.Contains(console, b.httpURL+"/pxelinux.cfg/52-54-00-7a-00-01") {
						t.Errorf("ipxe not booted through boot.ipxe and the MAC script:\n%s", console)
					}
				}

				// The conductor wrote the image and found the root partition.
				node.DriverInternalInfo["root_uuid_or_disk_id"] = e2eRoot
				if err := b.iface.PrepareInstance(t.Context(), b.task(node)); err != nil {
					t.Fatal(err)
				}
				if d, _ := b.mgmt.GetBootDevice(t.Context(), node); d.Device != "pxe" || !d.Persistent {
					t.Errorf("boot device after PrepareInstance %+v", d)
				}
				img, console = b.bootROM(t, mode, machine)
				if img.Kernel.Sum != pxe.Checksum(instKernel) {
					t.Fatalf("instance boot: kernel %s is %d bytes, not the instance kernel\n%s", img.KernelName, img.Kernel.Size, console)
				}
				if len(img.Initrds) != 1 || img.Initrds[0].Sum != pxe.Checksum(instRamdisk) {
					t.Fatalf("instance boot: initrds %d, not the instance ramdisk", len(img.Initrds))
				}
				if !strings.Contains(" "+img.Cmdline+" ", " root=UUID="+e2eRoot+" ") || !strings.Contains(img.Cmdline, " ro ") || strings.Contains(img.Cmdline, "deployment_key") {
					t.Errorf("instance command line %q", img.Cmdline)
				}

				// The image cache saw each image once: deploy kernel and
				// ramdisk from files, instance kernel and ramdisk over HTTP.
				b.mu.Lock()
				var sources []string
				for _, e := range b.cacheEvents {
					if e.Err != nil {
						t.Errorf("cache event %+v", e)
					}
					sources = append(sources, e.Source)
				}
				b.mu.Unlock()
				if len(sources) != 4 {
					t.Errorf("cache fetches %v", sources)
				}

				if err := b.iface.CleanUpInstance(t.Context(), b.task(node)); err != nil {
					t.Fatal(err)
				}
				if _, ok := b.hosts.Lookup(b.ports[0].Address); ok {
					t.Error("DHCP host left after CleanUpInstance")
				}
				root := b.tftpRoot
				if iface == "ipxe" {
					root = b.httpRoot
				}
				if _, err := os.Stat(filepath.Join(root, e2eNode)); err == nil {
					t.Error("node directory left after CleanUpInstance")
				}
			})
		}
	}
}

// tftpGet fetches name from the bed's TFTP server with tftp-hpa's client.
func tftpGet(t *testing.T, port int, name string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("tftp")
	if err != nil {
		interop(t, "tftp client", "tftp-hpa")
	}
	out := filepath.Join(t.TempDir(), "got")
	cmd := exec.CommandContext(t.Context(), bin, "-4", "-m", "binary", "127.0.0.1", fmt.Sprint(port), "-c", "get", name, out)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("tftp: %v: %s", err, msg)
	}
	// tftp-hpa prints errors but exits 0 on some of them.
	if len(bytes.TrimSpace(msg)) > 0 {
		return nil, fmt.Errorf("tftp: %s", msg)
	}
	return os.ReadFile(out)
}

func curlGet(t *testing.T, url string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		interop(t, "curl", "curl")
	}
	out, err := exec.CommandContext(t.Context(), bin, "-sS", "--fail", url).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("curl %s: %v: %s", url, err, stderr)
	}
	return out, nil
}

// TestRealClientsFetchGeneratedFiles fetches what the interfaces wrote with
// tftp-hpa's tftp and curl.
func TestRealClientsFetchGeneratedFiles(t *testing.T) {
	requireFiles(t)
	dir := t.TempDir()
	dk, dr := filepath.Join(dir, "dk"), filepath.Join(dir, "dr")
	dkData := bytes.Repeat([]byte("deploy-kernel "), 20000) // 280 kB: many TFTP blocks
	os.WriteFile(dk, dkData, 0o644)
	os.WriteFile(dr, []byte("deploy ramdisk"), 0o644)
	node := func() *provisioner.Node {
		return &provisioner.Node{
			UUID:               e2eNode,
			DriverInfo:         map[string]any{"deploy_kernel": dk, "deploy_ramdisk": dr},
			Properties:         map[string]any{"capabilities": "boot_mode:bios"},
			InstanceInfo:       map[string]any{},
			DriverInternalInfo: map[string]any{"deploy_key": e2eKey},
		}
	}

	t.Run("pxe over tftp-hpa", func(t *testing.T) {
		b := startBed(t, false, "the-token")
		if err := b.iface.PrepareRamdisk(t.Context(), b.task(node()), nil); err != nil {
			t.Fatal(err)
		}
		cfg, err := tftpGet(t, b.tftpPort, "pxelinux.cfg/01-52-54-00-7a-00-01")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(b.tftpRoot, e2eNode, "config"))
		if !bytes.Equal(cfg, want) || !bytes.HasPrefix(cfg, []byte("default deploy\n")) || !bytes.Contains(cfg, []byte("deployment_key="+e2eKey)) {
			t.Errorf("config over TFTP:\n%s", cfg)
		}
		for name, want := range map[string][]byte{
			e2eNode + "/deploy_kernel":  dkData,
			e2eNode + "/deploy_ramdisk": []byte("deploy ramdisk"),
			"token-" + e2eNode:          []byte("the-token"),
			"pxelinux.cfg/" + e2eNode:   cfg,
		} {
			got, err := tftpGet(t, b.tftpPort, name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s over TFTP: %d bytes, %v", name, len(got), err)
			}
		}
		for name, src := range map[string]string{"pxelinux.0": "/usr/lib/PXELINUX/pxelinux.0", "ldlinux.c32": "/usr/lib/syslinux/modules/bios/ldlinux.c32"} {
			got, err := tftpGet(t, b.tftpPort, name)
			want, _ := os.ReadFile(src)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s over TFTP: %d bytes, %v", name, len(got), err)
			}
		}
	})

	t.Run("ipxe over curl and tftp-hpa", func(t *testing.T) {
		b := startBed(t, true, "")
		if err := b.iface.PrepareRamdisk(t.Context(), b.task(node()), nil); err != nil {
			t.Fatal(err)
		}
		script, err := curlGet(t, b.httpURL+"/boot.ipxe")
		if err != nil || !bytes.HasPrefix(script, []byte("#!ipxe\n")) || !bytes.Contains(script, []byte("chain pxelinux.cfg/${mac:hexhyp}")) {
			t.Errorf("boot.ipxe: %v\n%s", err, script)
		}
		cfg, err := curlGet(t, b.httpURL+"/pxelinux.cfg/52-54-00-7a-00-01")
		if err != nil || !bytes.HasPrefix(cfg, []byte("#!ipxe\n")) || !bytes.Contains(cfg, []byte("kernel "+b.httpURL+"/"+e2eNode+"/deploy_kernel ")) {
			t.Errorf("node script: %v\n%s", err, cfg)
		}
		got, err := curlGet(t, b.httpURL+"/"+e2eNode+"/deploy_kernel")
		if err != nil || !bytes.Equal(got, dkData) {
			t.Errorf("deploy_kernel over HTTP: %d bytes, %v", len(got), err)
		}
		for name, src := range map[string]string{"undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe", "ipxe.efi": "/usr/lib/ipxe/ipxe.efi"} {
			got, err := tftpGet(t, b.tftpPort, name)
			want, _ := os.ReadFile(src)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s over TFTP: %d bytes, %v", name, len(got), err)
			}
		}
		if _, err := tftpGet(t, b.tftpPort, "token-"+e2eNode); err == nil {
			t.Error("a token file exists though none was given")
		}
		h, ok := b.hosts.Lookup(b.ports[0].Address)
		if !ok || h.IPXEScript != b.httpURL+"/boot.ipxe" || h.BIOSBootFile != "undionly.kpxe" || h.UEFIBootFile != "ipxe.efi" {
			t.Errorf("dhcp host %+v", h)
		}
	})
}
