//go:build libvirt_dlopen

package libvirt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/initiator"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// passDeployInfo is the body the deploy ramdisk POSTs.
type passDeployInfo struct {
	Address string `json:"address"`
	Key     string `json:"key"`
	IQN     string `json:"iqn"`
	Error   string `json:"error"`
}

// TestRamdiskISCSIDeploy boots metalbed's real deploy ramdisk (`metalbed
// ramdisk build`: the gokrazy kernel and a static metalbed as /init) in a
// real VM over PXE with the kernel parameters of the iSCSI deploy. The
// ramdisk gets its address by DHCP, finds vda in /sys/block, exports it
// over iSCSI and calls pass_deploy_info on this test's API handler; the
// test logs in with metalbed's initiator, writes an image, reads it back,
// sends the conductor's notice on port 10000 and sees the ramdisk reboot;
// with the VM powered off, the image is in the VM's disk file.
func TestRamdiskISCSIDeploy(t *testing.T) {
	requireLibvirt(t)
	bin := metalbedBinary(t)
	rd := t.TempDir()
	t0 := time.Now()
	build := exec.CommandContext(t.Context(), bin, "ramdisk", "build", "--out", rd, "--src", "../..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("metalbed ramdisk build: %v\n%s", err, out)
	}
	t.Logf("metalbed ramdisk build: %v", time.Since(t0).Round(time.Millisecond))
	for i, mode := range []vms.BootMode{vms.BIOS, vms.UEFI} {
		t.Run(string(mode), func(t *testing.T) { testRamdiskISCSIDeploy(t, bin, rd, mode, i) })
	}
}

func testRamdiskISCSIDeploy(t *testing.T, bin, rd string, mode vms.BootMode, idx int) {
	ctx := t.Context()
	dir := t.TempDir()
	linkRamdisk(t, rd, dir)
	subnet := fmt.Sprintf("10.233.%d", 8+idx)
	id := fmt.Sprintf("d%d%d", os.Getpid()%1e6, idx)
	netw := createNetwork(t, id, subnet+".1/24")
	srv := netw.Addr()

	// The API: only pass_deploy_info for this node, in the namespace.
	uuidB := make([]byte, 16)
	rand.Read(uuidB)
	h := hex.EncodeToString(uuidB)
	uuid := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	keyB := make([]byte, 16)
	rand.Read(keyB)
	key := hex.EncodeToString(keyB)
	iqn := "iqn.2008-10.org.openstack:" + uuid
	infos := make(chan passDeployInfo, 4)
	mux := http.NewServeMux()
	handlePassthru(mux, uuid, "pass_deploy_info", infos)
	serveAPI(t, netw, mux)

	base := "http://" + srv.String() + ":8080"
	params := strings.Join([]string{
		"console=ttyS0,115200", "panic=-1", "selinux=0", "disk=vda",
		"iscsi_target_iqn=" + iqn, "deployment_id=" + uuid, "deployment_key=" + key,
		"ironic_api_url=http://" + srv.String() + ":6385", "troubleshoot=0", "text",
		"boot_option=netboot", "boot_mode=" + string(mode),
	}, " ")
	writeBootScript(t, dir, base, "vmlinuz", "initramfs", params, mode)

	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xde, byte(os.Getpid()), byte(idx)}
	servers := serveNetboot(t, netw, bin, dir, subnet+".100-"+subnet+".199", mac)

	consoleLog := filepath.Join(dir, "console.log")
	diskPath := filepath.Join(dir, "disk.img")
	const diskBytes = 64 << 20
	m := newMachine(t, libvirt.Config{
		Name: "mbtest-" + id, MAC: mac, Bridge: netw.Bridge,
		Disk: diskPath, DiskBytes: diskBytes,
		SerialLog: consoleLog, BootMode: mode,
	})
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootPXE, false, mode == vms.UEFI)); err != nil {
		t.Fatal(err)
	}
	console := func() string {
		b, _ := os.ReadFile(consoleLog)
		return string(tail(b, 4000))
	}
	start := time.Now()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}

	var info passDeployInfo
	select {
	case info = <-infos:
	case <-time.After(5 * time.Minute):
		t.Fatalf("no pass_deploy_info after %v\nservers:\n%s\nconsole:\n%s", time.Since(start), servers.String(), console())
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	callback := time.Since(start)
	if info.Key != key || info.IQN != iqn || info.Error != "" {
		t.Fatalf("pass_deploy_info %+v, want key %s iqn %s and no error\nconsole:\n%s", info, key, iqn, console())
	}
	addr, err := netip.ParseAddr(info.Address)
	if err != nil || !netw.Prefix().Contains(addr) {
		t.Fatalf("pass_deploy_info address %q: want the VM's lease in %s (%v)", info.Address, netw.Prefix(), err)
	}

	// The ramdisk read its parameters from /proc/cmdline.
	if up := fmt.Sprintf("deploy ramdisk up: node %s, boot_option=netboot boot_mode=%s", uuid, mode); !strings.Contains(console(), up) {
		t.Errorf("console lacks %q:\n%s", up, console())
	}

	// Log in from the namespace, as the conductor does, and write an image.
	t1 := time.Now()
	s, err := initiator.Dial(ctx, initiator.Config{Addr: info.Address + ":3260", TargetIQN: iqn, DialContext: dialIn(netw)})
	if err != nil {
		t.Fatalf("iSCSI login to the ramdisk: %v\nconsole:\n%s", err, console())
	}
	if s.Size() != diskBytes {
		t.Errorf("LUN 1 is %d bytes, want the VM disk's %d", s.Size(), diskBytes)
	}
	img := make([]byte, 8<<20)
	rand.Read(img)
	const tailOff = diskBytes - 4096
	if _, err := s.WriteAt(img, 0); err != nil {
		t.Fatalf("write image: %v", err)
	}
	if _, err := s.WriteAt(img[:4096], tailOff); err != nil {
		t.Fatalf("write last block: %v", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	written := time.Since(t1)
	back := make([]byte, len(img))
	if _, err := s.ReadAt(back, 0); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(back, img) {
		t.Fatal("image read back over iSCSI differs from what was written")
	}
	if err := s.Close(); err != nil {
		t.Errorf("logout: %v", err)
	}

	// The conductor's notice: the ramdisk stops the target and reboots.
	notice(t, netw, info.Address)
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(console(), "metalbed-ramdisk: rebooting") {
		if time.Now().After(deadline) {
			t.Fatalf("the ramdisk did not reboot after the notice\nconsole:\n%s", console())
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := m.Power(ctx, vms.ActionOff); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)

	// The bytes reached the VM's real disk.
	f, err := os.Open(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	onDisk := make([]byte, len(img))
	if _, err := f.ReadAt(onDisk, 0); err != nil {
		t.Fatal(err)
	}
	last := make([]byte, 4096)
	if _, err := f.ReadAt(last, tailOff); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, img) || !bytes.Equal(last, img[:4096]) {
		t.Error("the VM's disk file does not hold the image written over iSCSI")
	}
	t.Logf("%s: power on to pass_deploy_info %v; login+write+sync of 8 MiB %v; power on to reboot+off %v",
		mode, callback.Round(time.Millisecond), written.Round(time.Millisecond), total.Round(time.Millisecond))
}

// linkRamdisk links the deploy ramdisk's vmlinuz and initramfs from rd
// (`metalbed ramdisk build --out rd`) into dir.
func linkRamdisk(t *testing.T, rd, dir string) {
	t.Helper()
	for _, name := range []string{"vmlinuz", "initramfs"} {
		if err := os.Link(filepath.Join(rd, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// handlePassthru sends what the ramdisk POSTs to node's vendor passthru
// method (JSON) into ch.
func handlePassthru[T any](mux *http.ServeMux, node, method string, ch chan<- T) {
	mux.HandleFunc("POST /v1/nodes/"+node+"/vendor_passthru/"+method, func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ch <- body
		w.WriteHeader(http.StatusAccepted)
	})
}

// serveAPI serves h on port 6385 of netw's host address, inside the
// namespace, until the test ends.
func serveAPI(t *testing.T, netw *libvirt.Network, h http.Handler) {
	t.Helper()
	ln, err := netw.Listen("tcp4", netw.Addr().String()+":6385")
	if err != nil {
		t.Fatal(err)
	}
	api := &http.Server{Handler: h}
	go api.Serve(ln)
	t.Cleanup(func() { api.Close() })
}

// dialIn dials from netw's namespace, as the conductor does.
func dialIn(netw *libvirt.Network) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var c net.Conn
		err := netw.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp4", addr)
			return err
		})
		return c, err
	}
}

// notice sends the conductor's notice to the ramdisk at addr on port 10000.
func notice(t *testing.T, netw *libvirt.Network, addr string) {
	t.Helper()
	err := netw.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr+":10000", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("done\n"))
		return err
	})
	if err != nil {
		t.Fatalf("notice on port 10000: %v", err)
	}
}
