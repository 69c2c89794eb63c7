package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/gokrazy/kernel.amd64" // a real bzImage for the boot tests
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
)

// interop skips (or, with METALBED_INTEROP=required, fails) when a real
// peer is missing.
func interop(t *testing.T, what, pkg string) {
	t.Helper()
	testenv.Unavailable(t, fmt.Sprintf("%s not available (Debian package %s)", what, pkg))
}

// realKernel returns the gokrazy bzImage from the module cache.
func realKernel(t *testing.T) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.amd64").Output()
	if err != nil {
		t.Fatalf("locate gokrazy kernel module: %v", err)
	}
	k, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func realRamdisk(t *testing.T) []byte {
	t.Helper()
	init := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(init, []byte("\x7fELF stand-in for the metalbed binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ramdisk.BuildInitramfs(&b, ramdisk.ImageConfig{Init: init, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dhcpResponder answers DISCOVER/REQUEST from a fixed plan, replying to the
// requester's address as a loopback DHCP server must. It stands in for the
// provisioner's DHCP server only until that lands on this branch.
type dhcpResponder struct {
	addr     *net.UDPAddr
	mu       sync.Mutex
	requests []*dhcpv4.DHCPv4
}

func startDHCP(t *testing.T, ip, next net.IP, bootfile string) *dhcpResponder {
	t.Helper()
	r := &dhcpResponder{}
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		r.mu.Lock()
		r.requests = append(r.requests, m)
		r.mu.Unlock()
		typ := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		resp, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(ip),
			dhcpv4.WithServerIP(next),
			dhcpv4.WithNetmask(net.CIDRMask(8, 32)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1))),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(bootfile)),
			dhcpv4.WithLeaseTime(3600),
		)
		if err != nil {
			t.Error(err)
			return
		}
		conn.WriteTo(resp.ToBytes(), peer)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server4.NewServer("", nil, handler, server4.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	r.addr = conn.LocalAddr().(*net.UDPAddr)
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return r
}

// startTFTPD runs tftpd-hpa's in.tftpd on loopback over root and returns
// its port.
func startTFTPD(t *testing.T, root string) int {
	t.Helper()
	bin, err := exec.LookPath("in.tftpd")
	if err != nil {
		interop(t, "in.tftpd", "tftpd-hpa")
	}
	if os.Geteuid() != 0 {
		interop(t, "root (in.tftpd -s chroots)", "tftpd-hpa")
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	os.Chmod(root, 0o755)
	cmd := exec.Command(bin, "-L", "-a", fmt.Sprintf("127.0.0.1:%d", port), "-s", root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("in.tftpd stderr: %s", stderr.String())
		}
	})
	f := &fetcher{tftpPort: port, timeout: 200 * time.Millisecond, maxBytes: 1 << 20}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := f.tftp(t.Context(), net.IPv4(127, 0, 0, 1), port, "ready", io.Discard); err == nil {
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("in.tftpd did not come up: %s", stderr.String())
		}
	}
}

func writeFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// bootCtx is a machine as the firmware sees it.
func bootCtx(mode vms.BootMode) (*sim.BootContext, *strings.Builder, *[]string) {
	var console strings.Builder
	var mu sync.Mutex
	var events []string
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	return &sim.BootContext{
		Machine: "node-0",
		UUID:    [16]byte{0x1b, 0xe2, 0x6c, 0x0b, 0x03, 0xf2, 0x4d, 0x2e, 0xae, 0x87, 0xc0, 0x2d, 0x7f, 0x33, 0xc1, 0x23},
		Device:  vms.BootPXE,
		Mode:    mode,
		NICs:    []vms.NIC{{MAC: mac}},
		Console: &syncWriter{w: &console, mu: &mu},
		Emit: func(kind vms.EventKind, detail string) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, string(kind)+" "+detail)
		},
	}, &console, &events
}

type syncWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestPXELinuxDeployLabelFromRealTFTPD(t *testing.T) {
	pxelinux0, err := os.ReadFile("/usr/lib/PXELINUX/pxelinux.0")
	if err != nil {
		interop(t, "/usr/lib/PXELINUX/pxelinux.0", "pxelinux")
	}
	kernel, initrd := realKernel(t), realRamdisk(t)
	root := t.TempDir()
	uuid := "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
	writeFiles(t, root, map[string][]byte{
		"ready":                  []byte("x"),
		"pxelinux.0":             pxelinux0,
		uuid + "/deploy_kernel":  kernel,
		uuid + "/deploy_ramdisk": initrd,
		"pxelinux.cfg/01-52-54-00-12-34-56": []byte(`default deploy

label deploy
kernel ` + uuid + `/deploy_kernel
append initrd=` + uuid + `/deploy_ramdisk deployment_id=` + uuid + ` iscsi_target_iqn=iqn.2008-10.org.openstack:` + uuid + ` boot_option=local troubleshoot=0
ipappend 3

label boot
kernel ` + uuid + `/kernel
append initrd=` + uuid + `/ramdisk root=UUID=0c2f4e19-6ad3-4d1c-a86e-0d5a4f1d7e3a ro
`),
	})
	port := startTFTPD(t, root)
	ip := net.IPv4(127, 0, 10, 5)
	dhcp := startDHCP(t, ip, net.IPv4(127, 0, 0, 1), "pxelinux.0")

	var got Image
	rom := &ROM{
		DHCPServer: dhcp.addr.String(), DHCPClient: "127.0.0.1:0", TFTPPort: port,
		Timeout: time.Second,
		Exec: func(_ context.Context, _ *sim.BootContext, img Image) error {
			got = img
			return nil
		},
	}
	b, console, events := bootCtx(vms.BIOS)
	if err := rom.Boot(t.Context(), b); err != nil {
		t.Fatalf("Boot: %v\n%s", err, console)
	}
	if got.Kernel.Sum != Checksum(kernel) || len(got.Initrds) != 1 || got.Initrds[0].Sum != Checksum(initrd) {
		t.Fatalf("booted wrong bytes: kernel %d, initrds %d", got.Kernel.Size, len(got.Initrds))
	}
	if got.Initrds[0].Initramfs == nil {
		t.Errorf("initrd not recognised: %v", got.Initrds[0].NotInitramfs)
	}
	for _, want := range []string{"BOOT_IMAGE=" + uuid + "/deploy_kernel", "deployment_id=" + uuid, "ip=127.0.10.5:127.0.0.1::255.0.0.0", "BOOTIF=01-52-54-00-12-34-56"} {
		if !strings.Contains(got.Cmdline, want) {
			t.Errorf("cmdline %q lacks %q", got.Cmdline, want)
		}
	}
	if !got.Lease.IP.Equal(ip) {
		t.Errorf("lease IP %v", got.Lease.IP)
	}
	// PXELINUX looks for its config by UUID before the MAC.
	if !strings.Contains(console.String(), "Trying to load: pxelinux.cfg/"+uuid) {
		t.Errorf("console lacks the UUID config attempt:\n%s", console)
	}
	// The DISCOVER carried the PXE options a real ROM sends.
	dhcp.mu.Lock()
	d := dhcp.requests[0]
	dhcp.mu.Unlock()
	if cls := d.ClassIdentifier(); cls != "PXEClient:Arch:00000:UNDI:002001" {
		t.Errorf("option 60 = %q", cls)
	}
	if arch := d.ClientArch(); len(arch) != 1 || arch[0] != 0 {
		t.Errorf("option 93 = %v", arch)
	}
	if len(*events) == 0 {
		t.Error("no events emitted")
	}
}

func TestIPXEScriptOverHTTP(t *testing.T) {
	kernel, initrd := realKernel(t), realRamdisk(t)
	var hits sync.Map
	fail := 2 // the first two kernel fetches fail: Ironic's retry loop must carry on
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("/boot.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "#!ipxe\n\n# comment\nchain node/${mac:hexhyp}.ipxe || goto nope\n:nope\necho no config\nexit\n")
	})
	mux.HandleFunc("/node/52-54-00-12-34-56.ipxe", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `#!ipxe
set attempts:int32 10
set i:int32 0
goto deploy
:deploy
imgfree
kernel --timeout 60000 /deploy_kernel deployment_id=abc ipa-api-url=http://x BOOTIF=${mac} initrd=deploy_ramdisk || goto retry
initrd --name deploy_ramdisk /deploy_ramdisk || goto retry
boot
:retry
iseq ${i} ${attempts} && goto fail ||
inc i
echo No response, retrying in ${i} seconds.
goto deploy
:fail
echo Failed to get a response
poweroff
`)
	})
	mux.HandleFunc("/deploy_kernel", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(kernel)
	})
	mux.HandleFunc("/deploy_ramdisk", func(w http.ResponseWriter, r *http.Request) { w.Write(initrd) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path+" "+r.RemoteAddr[:strings.LastIndex(r.RemoteAddr, ":")], true)
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ip := net.IPv4(127, 0, 10, 6)
	dhcp := startDHCP(t, ip, net.IPv4(127, 0, 0, 1), srv.URL+"/boot.ipxe")
	var got Image
	rom := &ROM{DHCPServer: dhcp.addr.String(), DHCPClient: "127.0.0.1:0", Timeout: time.Second,
		Exec: func(_ context.Context, _ *sim.BootContext, img Image) error { got = img; return nil }}
	b, console, _ := bootCtx(vms.UEFI)
	if err := rom.Boot(t.Context(), b); err != nil {
		t.Fatalf("Boot: %v\n%s", err, console)
	}
	if got.Kernel.Sum != Checksum(kernel) || len(got.Initrds) != 1 || got.Initrds[0].Name != "deploy_ramdisk" {
		t.Fatalf("booted kernel %d bytes, initrds %+v", got.Kernel.Size, len(got.Initrds))
	}
	if want := "deployment_id=abc ipa-api-url=http://x BOOTIF=52:54:00:12:34:56 initrd=deploy_ramdisk"; got.Cmdline != want {
		t.Errorf("cmdline = %q, want %q", got.Cmdline, want)
	}
	if !strings.Contains(console.String(), "retrying in 2 seconds") {
		t.Errorf("retry loop not seen on console:\n%s", console)
	}
	// Fetches come from the leased address, as from a real NIC.
	if _, ok := hits.Load("/deploy_ramdisk 127.0.10.6"); !ok {
		t.Error("ramdisk not fetched from the leased address 127.0.10.6")
	}
	dhcp.mu.Lock()
	d := dhcp.requests[0]
	dhcp.mu.Unlock()
	if arch := d.ClientArch(); len(arch) != 1 || arch[0] != 7 {
		t.Errorf("UEFI option 93 = %v, want 7", arch)
	}
	if uc := d.UserClass(); len(uc) != 1 || uc[0] != "iPXE" {
		t.Errorf("user class = %v", uc)
	}
}

func TestBootFailuresShowOnConsole(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/garbage":
			w.Write([]byte("MZ this is not a program this ROM runs"))
		case "/notkernel.ipxe":
			fmt.Fprint(w, "#!ipxe\nkernel /garbage\nboot\n")
		case "/sanboot.ipxe":
			fmt.Fprint(w, "#!ipxe\nsanboot --no-describe --drive 0x80\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cases := []struct {
		bootfile string
		want     string
		exec     bool
	}{
		{srv.URL + "/garbage", "not a boot program this ROM can run", true},
		{srv.URL + "/notkernel.ipxe", "cannot execute kernel garbage", true},
		{srv.URL + "/sanboot.ipxe", "boots no SAN devices", false},
		{srv.URL + "/missing", "404", false},
		{"", "PXE-E53", false},
	}
	for _, c := range cases {
		dhcp := startDHCP(t, net.IPv4(127, 0, 10, 7), net.IPv4(127, 0, 0, 1), c.bootfile)
		rom := &ROM{DHCPServer: dhcp.addr.String(), DHCPClient: "127.0.0.1:0", Timeout: time.Second,
			Exec: func(context.Context, *sim.BootContext, Image) error { t.Error("executed"); return nil }}
		b, console, _ := bootCtx(vms.BIOS)
		err := rom.Boot(t.Context(), b)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(console.String(), c.want) {
			t.Errorf("%s: err = %v, console:\n%s", c.bootfile, err, console)
		}
		if c.exec && !errors.Is(err, ErrExec) {
			t.Errorf("%s: %v is not ErrExec", c.bootfile, err)
		}
	}
}

func TestNoDHCPServer(t *testing.T) {
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0") // silent
	defer pc.Close()
	rom := &ROM{DHCPServer: pc.LocalAddr().String(), DHCPClient: "127.0.0.1:0", Timeout: 20 * time.Millisecond, DHCPTries: 2,
		Exec: func(context.Context, *sim.BootContext, Image) error { return nil }}
	b, console, _ := bootCtx(vms.BIOS)
	err := rom.Boot(t.Context(), b)
	if err == nil || !strings.Contains(console.String(), "PXE-E51") {
		t.Fatalf("err = %v, console:\n%s", err, console)
	}
}

func TestPXELinuxConfigNames(t *testing.T) {
	mac, _ := net.ParseMAC("88:99:AA:BB:CC:DD")
	got := pxelinuxConfigNames("B8945908-D6A6-41A9-611D-74A6AB80B83D", mac, net.IPv4(192, 0, 2, 91))
	want := []string{"b8945908-d6a6-41a9-611d-74a6ab80b83d", "01-88-99-aa-bb-cc-dd",
		"C000025B", "C000025", "C00002", "C0000", "C000", "C00", "C0", "C", "default"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != "pxelinux.cfg/"+want[i] {
			t.Errorf("[%d] = %s, want pxelinux.cfg/%s", i, got[i], want[i])
		}
	}
}

func TestParsePXELinux(t *testing.T) {
	cfg, err := parsePXELinux("default boot\nprompt 0\ntimeout 10\n\nlabel deploy\n kernel a/k\n append initrd=a/r x=1\n ipappend 3\nlabel boot\n kernel b/k\n append initrd=b/r,b/r2 root=UUID=x ro\n")
	if err != nil {
		t.Fatal(err)
	}
	l, err := cfg.pick()
	if err != nil || l.Name != "boot" {
		t.Fatalf("pick = %+v, %v", l, err)
	}
	if rs := initrds(l.Append); len(rs) != 2 || rs[1] != "b/r2" {
		t.Errorf("initrds = %v", rs)
	}
	for _, bad := range []string{"kernel x", "label", "label a\nipappend x", "label a\nfrobnicate"} {
		if _, err := parsePXELinux(bad); err == nil {
			t.Errorf("parsePXELinux(%q) accepted", bad)
		}
	}
	// Ironic 21.4's pxe_config.template has a whole-disk label that
	// chain-loads the local disk.
	cfg, err = parsePXELinux("default deploy\nlabel deploy\nkernel d/k\nappend initrd=d/r\nlabel boot_whole_disk\nCOM32 chain.c32\nappend mbr:0x12345678\n")
	if err != nil || cfg.Labels["boot_whole_disk"].COM32 != "chain.c32" {
		t.Errorf("COM32 label: %+v, %v", cfg, err)
	}
	cfg, _ = parsePXELinux("default nosuch\nlabel a\nkernel k\n")
	if _, err := cfg.pick(); err == nil {
		t.Error("missing default label accepted")
	}
}

func TestIPXEOperators(t *testing.T) {
	run := func(script string) (string, error) {
		var out strings.Builder
		vm := &ipxeVM{vars: map[string]string{"a": "1"}, say: func(f string, a ...any) { fmt.Fprintf(&out, f+"\n", a...) },
			load:  func(context.Context, string) (File, error) { return File{}, errors.New("no network") },
			sleep: func(context.Context, time.Duration) error { return nil }}
		err := vm.run(t.Context(), script, "")
		return out.String(), err
	}
	out, err := run("#!ipxe\niseq ${a} 1 && echo yes || echo no\niseq ${a} 2 && echo yes2 || echo no2\nexit\n")
	if !errors.Is(err, errExit) || out != "yes\nno2\nscript asked for exit\n" {
		t.Errorf("out %q err %v", out, err)
	}
	if _, err := run("#!ipxe\nkernel http://x/k\necho unreachable\n"); err == nil || !strings.Contains(err.Error(), "no network") {
		t.Errorf("a failing command without || must end the script: %v", err)
	}
	if _, err := run("#!ipxe\n:a\ngoto a\n"); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("endless loop: %v", err)
	}
	if _, err := run("echo no header"); err == nil {
		t.Error("script without #!ipxe accepted")
	}
	if _, err := run("#!ipxe\nfrobnicate\n"); err == nil || !strings.Contains(err.Error(), "command not found") {
		t.Errorf("unknown command: %v", err)
	}
}

// TestIronicBootIPXE runs Ironic's boot.ipxe as Ironic ships it (nested
// settings, a loop over NICs) against a per-MAC config.
func TestIronicBootIPXE(t *testing.T) {
	const bootIPXE = `#!ipxe

# NOTE(lucasagomes): Loop over all network devices and boot from
# the first one capable of booting.
set netid:int32 -1
:loop
inc netid || chain pxelinux.cfg/${mac:hexhyp} || goto old_rom
isset ${net${netid}/mac} || goto loop_done
echo Attempting to boot from MAC ${net${netid}/mac:hexhyp}
chain pxelinux.cfg/${net${netid}/mac:hexhyp} || goto loop

:loop_done
echo PXE boot failed! No configuration found for any of the present NICs.
prompt --timeout 180
reboot

:old_rom
chain pxelinux.cfg/${mac:hexhyp}
`
	var out strings.Builder
	var fetched []string
	vm := &ipxeVM{
		vars: map[string]string{"mac": "52:54:00:12:34:56", "net0/mac": "52:54:00:12:34:56"},
		say:  func(f string, a ...any) { fmt.Fprintf(&out, f+"\n", a...) },
		load: func(_ context.Context, ref string) (File, error) {
			fetched = append(fetched, ref)
			if strings.HasSuffix(ref, "/pxelinux.cfg/52-54-00-12-34-56") {
				return LoadBytes(ref, []byte("#!ipxe\nkernel /deploy_kernel a=b\nboot\n")), nil
			}
			if strings.HasSuffix(ref, "/deploy_kernel") {
				return LoadBytes(ref, []byte("kernel bytes")), nil
			}
			return File{}, errors.New("HTTP 404")
		},
		sleep: func(context.Context, time.Duration) error { return nil },
	}
	err := vm.run(t.Context(), bootIPXE, "http://127.0.0.1:8088/boot.ipxe")
	if !errors.Is(err, errBoot) || vm.kernel == nil || vm.kernel.args != "a=b" {
		t.Fatalf("err = %v, kernel %+v\n%s", err, vm.kernel, out.String())
	}
	if !strings.Contains(out.String(), "Attempting to boot from MAC 52-54-00-12-34-56") {
		t.Errorf("console:\n%s", out.String())
	}

	// No config for any NIC: the loop ends at loop_done, as on real iPXE.
	vm.vars = map[string]string{"mac": "52:54:00:99:99:99", "net0/mac": "52:54:00:99:99:99"}
	vm.kernel, vm.steps = nil, 0
	out.Reset()
	err = vm.run(t.Context(), bootIPXE, "http://127.0.0.1:8088/boot.ipxe")
	if !errors.Is(err, errExit) || !strings.Contains(out.String(), "No configuration found") {
		t.Errorf("err = %v\n%s", err, out.String())
	}
}

func FuzzIPXEScript(f *testing.F) {
	f.Add("#!ipxe\nset i 0\n:l\ninc i\niseq ${i} 3 || goto l\nkernel x || goto l\nboot\n")
	f.Fuzz(func(t *testing.T, s string) {
		vm := &ipxeVM{vars: map[string]string{}, say: func(string, ...any) {},
			load:  func(ctx context.Context, ref string) (File, error) { return LoadBytes(ref, []byte("#!ipxe\n")), nil },
			sleep: func(context.Context, time.Duration) error { return nil }}
		vm.run(context.Background(), "#!ipxe\n"+s, "http://127.0.0.1/")
	})
}

func FuzzPXELinux(f *testing.F) {
	f.Add("default a\nlabel a\nkernel k\nappend initrd=x,y ipappend\nipappend 3\n")
	f.Fuzz(func(t *testing.T, s string) {
		if cfg, err := parsePXELinux(s); err == nil {
			if l, err := cfg.pick(); err == nil {
				initrds(l.Append)
			}
		}
	})
}

// TestLinkUpBeforeDHCP: a machine paced with a link-up time waits it
// (at least, however loaded the host) before its first DHCPDISCOVER, and
// says so on the console.
func TestLinkUpBeforeDHCP(t *testing.T) {
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0") // silent
	defer pc.Close()
	rom := &ROM{DHCPServer: pc.LocalAddr().String(), DHCPClient: "127.0.0.1:0", Timeout: 20 * time.Millisecond, DHCPTries: 1,
		Exec: func(context.Context, *sim.BootContext, Image) error { return nil }}
	b, console, _ := bootCtx(vms.BIOS)
	b.Pace.LinkUp = 300 * time.Millisecond
	start := time.Now()
	rom.Boot(t.Context(), b)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("the ROM gave up after %v, before its 300ms link-up", took)
	}
	for _, want := range []string{"Waiting for link-up on net0...", "net0: link up after 300ms", "Configuring (net0"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
}
