package testbed

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660/isotest"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// Kernel parameters as Ironic's redfish-virtual-media boot puts them on the
// ISO's command line ([redfish] kernel_append_params, then its own).
const vmediaParams = "ipa-api-url=http://127.0.0.1:6385 ipa-agent-token=t0k3n ipa-global-request-id=req-7 ipa-debug=1 boot_method=vmedia"

// deployISOs builds the ISOs Ironic builds from a deploy kernel and
// metalbed's ramdisk, with Ironic's isolinux and GRUB templates: "bios"
// (ISOLINUX only) and "both" (ISOLINUX and an El Torito EFI image whose
// grub.cfg boots the same kernel).
func deployISOs(t *testing.T) map[string][]byte { return deployISOsWith(t, vmediaParams) }

func deployISOsWith(t *testing.T, vmediaParams string) map[string][]byte {
	t.Helper()
	kernel, initrd := deployKernelInitrd(t)
	files := map[string][]byte{
		"vmlinuz": kernel, "initrd": initrd,
		"isolinux/isolinux.cfg": []byte("default boot\n\nlabel boot\nkernel /vmlinuz\nappend initrd=/initrd text " + vmediaParams + " --\n"),
	}
	grub := "menuentry \"install\" {\nlinux /vmlinuz " + vmediaParams + " --\ninitrd /initrd\n}\n"
	out := map[string][]byte{}
	for name, spec := range map[string]isotest.Spec{
		"bios": {BIOS: true, Files: files},
		"both": {BIOS: true, Files: files, ESP: map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ"), "EFI/BOOT/grub.cfg": []byte(grub)}},
	} {
		b, err := os.ReadFile(isotest.Build(t, spec))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	// A FAT USB stick holding the same, booted by UEFI through BOOTX64.EFI.
	out["stick"] = isotest.ESPImage(t, map[string][]byte{"EFI/BOOT/BOOTX64.EFI": []byte("MZ"),
		"EFI/BOOT/grub.cfg": []byte(grub), "vmlinuz": kernel, "initrd": initrd})
	return out
}

// deployKernelInitrd are a kernel the simulated firmware accepts and
// metalbed's deploy ramdisk.
func deployKernelInitrd(t *testing.T) (kernel, initrd []byte) {
	t.Helper()
	kernel = make([]byte, 8192) // passes the boot protocol check
	kernel[510], kernel[511] = 0x55, 0xAA
	copy(kernel[0x202:], "HdrS")
	init := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(init, []byte("\x7fELF stand-in for the metalbed binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var rd bytes.Buffer
	if err := ramdisk.BuildInitramfs(&rd, ramdisk.ImageConfig{Init: init, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return kernel, rd.Bytes()
}

// builtISO is the deploy ISO metalbed's conductor builds
// (disk.BuildBootISO), BIOS and UEFI, from the same kernel and ramdisk.
func builtISO(t *testing.T, vmediaParams string) []byte {
	t.Helper()
	loaders, err := disk.DefaultISOLoaders(t.Context(), true, true)
	if err != nil {
		testenv.Unavailable(t, err.Error())
	}
	kernel, initrd := deployKernelInitrd(t)
	dir := t.TempDir()
	k, i, out := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd"), filepath.Join(dir, "boot.iso")
	if err := os.WriteFile(k, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(i, initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	err = disk.BuildBootISO(t.Context(), disk.BootISOConfig{Kernel: k, Initrd: i, Cmdline: vmediaParams, BIOS: true, UEFI: true, Loaders: loaders}, out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveISOs serves each image at /<name>.iso with range support; other
// paths are 404.
func serveISOs(t *testing.T, isos map[string][]byte) string {
	files := map[string][]byte{}
	for name, b := range isos {
		files["/"+name+".iso"] = b
	}
	return serveFiles(t, files)
}

// serveFiles serves each file at its path with range support; other paths
// are 404.
func serveFiles(t *testing.T, files map[string][]byte) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// redfishClient drives one system of a plain-HTTP Redfish service as
// Ironic does for virtual media: InsertMedia/EjectMedia on the Manager's
// Cd, a Once Cd override, Reset.
type redfishClient struct {
	t        *testing.T
	base     string
	sys, mgr string
}

func (c redfishClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	req.SetBasicAuth("admin", "password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (c redfishClient) must(method, path string, body any, want int) {
	c.t.Helper()
	if st, b := c.do(method, path, body); st != want {
		c.t.Fatalf("%s %s: %d %v", method, path, st, b)
	}
}

// bootCd inserts image (ejecting what is there), sets Cd Once in mode, and
// powers the machine on from off.
func (c redfishClient) bootCd(image, mode string) {
	c.t.Helper()
	c.must("POST", c.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, 204)
	c.must("POST", c.mgr+"/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", map[string]any{}, 204)
	c.must("POST", c.mgr+"/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": image, "Inserted": true, "WriteProtected": true}, 204)
	c.must("PATCH", c.sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Once"}}, 200)
	c.must("PATCH", c.sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideMode": mode}}, 200)
	c.must("POST", c.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
}

func newRedfishClient(t *testing.T, tb *Testbed, node int) redfishClient {
	r := tb.Inventory().Nodes[node].Redfish
	c := redfishClient{t: t, base: r.Address, sys: r.SystemID}
	_, s := c.do("GET", c.sys, nil)
	links, _ := s["Links"].(map[string]any)
	mb, _ := links["ManagedBy"].([]any)
	if len(mb) == 0 {
		t.Fatalf("system without Links.ManagedBy: %v", s)
	}
	c.mgr = mb[0].(map[string]any)["@odata.id"].(string)
	return c
}

// consoleSince waits until the console log, from byte off on, holds every
// string of want, and returns it.
func consoleSince(t *testing.T, m fleetMachine, off int, want ...string) string {
	t.Helper()
	var text string
	testenv.Eventually(t, 20*time.Second, func() bool {
		b, _ := os.ReadFile(m.ConsoleLog())
		if len(b) < off {
			return false
		}
		text = string(b[off:])
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	}, "console to show %q (it shows %s)", want, stringer(func() string { return text }))
	return text
}

type stringer func() string

func (s stringer) String() string { return s() }

func consoleLen(m fleetMachine) int {
	b, _ := os.ReadFile(m.ConsoleLog())
	return len(b)
}

// TestRedfishVirtualMediaBoot: an ISO built with genisoimage the way Ironic
// builds it (isolinux, a kernel, metalbed's ramdisk as the initrd), served
// over HTTP, inserted through Redfish InsertMedia and booted with a Once
// Cd override: the simulated machine boots it from the virtual CD (BIOS
// through isolinux.cfg, UEFI through the El Torito EFI image's grub.cfg),
// runs the ramdisk, and the override reads Disabled afterwards. A 404
// image and a BIOS-only ISO on UEFI fail on the console and as
// boot-failed events.
func TestRedfishVirtualMediaBoot(t *testing.T) {
	isos := serveISOs(t, deployISOs(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Redfish: &Redfish{Listener: ln, PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	m := tb.fleet.nodes[0].machine
	var mu sync.Mutex
	var failed []string
	cancel := m.Subscribe(func(ev vms.Event) {
		if ev.Kind == vms.EventBootFail {
			mu.Lock()
			failed = append(failed, ev.Detail)
			mu.Unlock()
		}
	})
	defer cancel()
	bootFailed := func(n int, want string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(failed) >= n && strings.Contains(failed[n-1], want)
		}, "boot-failed event %d with %q (have %q)", n, want, stringer(func() string { mu.Lock(); defer mu.Unlock(); return strings.Join(failed, " | ") }))
	}
	rf := newRedfishClient(t, tb, 0)
	override := func() string {
		_, s := rf.do("GET", rf.sys, nil)
		b, _ := s["Boot"].(map[string]any)
		return b["BootSourceOverrideEnabled"].(string)
	}

	// Legacy BIOS: ISOLINUX's default label; the ramdisk runs (and, with no
	// boot network here, finds no DHCP server).
	off := consoleLen(m)
	rf.bootCd(isos+"/bios.iso", "Legacy")
	con := consoleSince(t, m, off,
		"Boot device: cdrom (one-time override)",
		"Booting from virtual CD (legacy BIOS)...",
		"ISOLINUX reads /isolinux/isolinux.cfg",
		"Command line: BOOT_IMAGE=/vmlinuz initrd=/initrd text "+vmediaParams+" --",
		"Unpacking initramfs /initrd (metalbed-ramdisk",
		"no DHCP server")
	t.Logf("BIOS boot from the virtual CD:\n%s", con)
	if o := override(); o != "Disabled" {
		t.Errorf("Once Cd after the boot reads %s", o)
	}
	bootFailed(1, "no DHCP server")

	// UEFI: the El Torito EFI image's BOOTX64.EFI and grub.cfg.
	off = consoleLen(m)
	rf.bootCd(isos+"/both.iso", "UEFI")
	consoleSince(t, m, off,
		"Booting from virtual CD (UEFI)...",
		"GRUB reads /EFI/BOOT/grub.cfg on the EFI image",
		"Command line: BOOT_IMAGE=/vmlinuz "+vmediaParams+" --",
		"Unpacking initramfs /initrd")
	if o := override(); o != "Disabled" {
		t.Errorf("Once Cd after the UEFI boot reads %s", o)
	}
	bootFailed(2, "no DHCP server")

	// A USB stick through UsbStick and a Usb override.
	off = consoleLen(m)
	rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "ForceOff"}, 204)
	rf.must("POST", rf.mgr+"/VirtualMedia/UsbStick/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": isos + "/stick.iso"}, 204)
	rf.must("PATCH", rf.sys, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Usb", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}, 200)
	rf.must("POST", rf.sys+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}, 204)
	consoleSince(t, m, off, "Booting from virtual USB stick (UEFI)...", "GRUB reads /EFI/BOOT/grub.cfg",
		"Command line: BOOT_IMAGE=/vmlinuz "+vmediaParams+" --", "Unpacking initramfs /initrd")
	bootFailed(3, "no DHCP server")

	// A BIOS-only ISO on UEFI, and an image that is not there.
	for i, c := range []struct{ image, mode, console, reason string }{
		{isos + "/bios.iso", "UEFI", "no El Torito EFI entry", "no El Torito EFI entry"},
		{isos + "/gone.iso", "Legacy", "404 Not Found", "404 Not Found"},
	} {
		off = consoleLen(m)
		rf.bootCd(c.image, c.mode)
		consoleSince(t, m, off, c.console, "No bootable device.")
		bootFailed(4+i, c.reason)
		if o := override(); o != "Disabled" {
			t.Errorf("Once Cd after a failed boot reads %s", o)
		}
	}
}

// TestVirtualMediaBootFailedTimeline: with the provisioner, a boot from a
// virtual CD whose image is 404 is machine.boot-failed in the timeline,
// with the reason.
func TestVirtualMediaBootFailedTimeline(t *testing.T) {
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free(), Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	isos := serveISOs(t, nil)
	newRedfishClient(t, tb, 0).bootCd(isos+"/gone.iso", "Legacy")
	testenv.Eventually(t, 20*time.Second, func() bool {
		for _, e := range tb.Timeline().Node("node-0") {
			if e.Kind == events.MachineBootFailed && strings.Contains(e.Detail, "404") {
				return true
			}
		}
		return false
	}, "machine.boot-failed with the 404 in node-0's timeline")
}

// TestVirtualMediaAgentLooksUp: booted from an ISO whose command line
// carries ipa-api-url and no BOOTIF (as Ironic's virtual media ISO), the
// ramdisk brings its NIC up by DHCP (the network's server: here
// Config.ExternalDHCP, as for a real Ironic) and the agent looks the node
// up by its MAC and heartbeats with the command line's token. The ISO is
// the one genisoimage builds as Ironic does, or disk.BuildBootISO's,
// booted in legacy BIOS mode and in UEFI mode.
func TestVirtualMediaAgentLooksUp(t *testing.T) {
	for _, tc := range []struct {
		name, image, mode, loader string
	}{
		{"ironic-bios", "bios", "Legacy", "ISOLINUX reads /isolinux/isolinux.cfg"},
		{"built-bios", "built", "Legacy", "ISOLINUX reads /isolinux/isolinux.cfg"},
		{"built-uefi", "built", "UEFI", "GRUB reads /EFI/BOOT/grub.cfg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leased := net.IPv4(127, 77, 0, 9)
			dhcpAddr := plainDHCP(t, leased)
			tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), ExternalDHCP: dhcpAddr,
				Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
			if err != nil {
				t.Fatal(err)
			}
			serve(t, tb)
			m := tb.fleet.nodes[0].machine
			mac := m.NICs()[0].MAC.String()
			// Ironic hides the token it put on the ISO's command line.
			api := testenv.NewFakeIronic(t, mac, testenv.IronicLookup("******"))
			params := "ipa-api-url=" + api.URL + " ipa-agent-token=vm3d1a ipa-global-request-id=req-9 boot_method=vmedia"
			var isos map[string][]byte
			if tc.image == "built" {
				isos = map[string][]byte{"built": builtISO(t, params)}
			} else {
				isos = deployISOsWith(t, params)
			}
			url := serveISOs(t, isos)
			newRedfishClient(t, tb, 0).bootCd(url+"/"+tc.image+".iso", tc.mode)
			select {
			case hb := <-api.Heartbeats:
				tok := hb.AgentToken
				if tok != "vm3d1a" {
					t.Errorf("heartbeat token %q, want the command line's", tok)
				}
			case <-time.After(60 * time.Second):
				b, _ := os.ReadFile(m.ConsoleLog())
				t.Fatalf("no heartbeat; console:\n%s", b)
			}
			consoleSince(t, m, 0, tc.loader, "eth0: "+leased.String()+"/8 via DHCP", "lookup succeeded")
		})
	}
}

// plainDHCP answers every DISCOVER and REQUEST with ip: the network's DHCP
// server as a booted OS sees it.
func plainDHCP(t *testing.T, ip net.IP) string { return bootDHCP(t, ip, "") }

// bootDHCP is plainDHCP naming bootFile (when not "") to network boot
// clients, as a boot network's server does for iPXE.
func bootDHCP(t *testing.T, ip net.IP, bootFile string) string {
	t.Helper()
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		typ := dhcpv4.MessageTypeOffer
		if m.MessageType() == dhcpv4.MessageTypeRequest {
			typ = dhcpv4.MessageTypeAck
		}
		mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(ip),
			dhcpv4.WithNetmask(net.CIDRMask(8, 32)), dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))}
		if bootFile != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptBootFileName(bootFile)))
		}
		resp, err := dhcpv4.NewReplyFromRequest(m, mods...)
		if err == nil {
			conn.WriteTo(resp.ToBytes(), peer)
		}
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server4.NewServer("", nil, handler, server4.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return conn.LocalAddr().String()
}
