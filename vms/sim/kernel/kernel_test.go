package kernel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

type fileDisk struct {
	*os.File
	size int64
}

func (d fileDisk) Size() int64 { return d.size }

func bootContext(t *testing.T) (*sim.BootContext, *testenv.SyncBuffer) {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(1 << 30)
	con := &testenv.SyncBuffer{}
	return &sim.BootContext{
		Machine: "node-0", Device: vms.BootPXE, Mode: vms.BIOS,
		Disk: fileDisk{f, 1 << 30}, Console: con,
		Emit: func(vms.EventKind, string) {},
	}, con
}

func initramfs(t *testing.T) []byte {
	init := filepath.Join(t.TempDir(), "init")
	os.WriteFile(init, []byte("program"), 0o755)
	var b bytes.Buffer
	if err := ramdisk.BuildInitramfs(&b, ramdisk.ImageConfig{Init: init, Version: "t"}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bzImage is the smallest kernel image the boot protocol check accepts:
// these tests exercise what the simulated kernel does after the check.
func bzImage() []byte {
	k := make([]byte, 4096)
	k[510], k[511] = 0x55, 0xAA
	copy(k[0x202:], "HdrS")
	return k
}

func TestNotARamdiskPanics(t *testing.T) {
	b, con := bootContext(t)
	for _, initrds := range [][]pxe.File{nil, {pxe.LoadBytes("initrd.img", []byte("070701 someone else's initramfs"))}} {
		err := Executor(Config{})(t.Context(), b, pxe.Image{KernelName: "vmlinuz", Kernel: pxe.LoadBytes("vmlinuz", bzImage()), Cmdline: "console=ttyS0", Initrds: initrds})
		if !errors.Is(err, ErrPanic) || !strings.Contains(con.String(), "Kernel panic - not syncing") {
			t.Errorf("err = %v, console:\n%s", err, con)
		}
	}
}

// TestRamdiskRunsWithMachineDiskAndLease boots the deploy ramdisk as the
// NIC ROM hands it over (iPXE: no ip= on the command line) and checks it
// exports the machine's disk, calls back from the leased address and
// resets the machine after the conductor's notice.
func TestRamdiskRunsWithMachineDiskAndLease(t *testing.T) {
	leased := net.IPv4(127, 78, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))
	url, got := fakeConductor(t)

	b, con := bootContext(t)
	var exported ramdisk.BlockDevice
	faults := faulttest.New(t) // no rules: records what the ramdisk asks
	reset := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := Config{
		Export: func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
			exported = dev
			<-ctx.Done()
			return nil
		},
		Reset:  func() { close(reset); cancel() }, // the machine takes power away from the program
		Faults: faults,
	}
	img := pxe.Image{
		KernelName: "deploy_kernel",
		Kernel:     pxe.LoadBytes("deploy_kernel", bzImage()),
		Initrds:    []pxe.File{pxe.LoadBytes("deploy_ramdisk", initramfs(t))},
		Cmdline:    "deployment_id=u1 deployment_key=k1 iscsi_target_iqn=iqn.2008-10.org.openstack:u1 ironic_api_url=" + url + " disk=cciss/c0d0,sda,hda,vda",
		Lease:      pxe.Lease{IP: leased, NextServer: net.IPv4(127, 0, 0, 1)},
	}
	done := make(chan error, 1)
	go func() { done <- Executor(cfg)(ctx, b, img) }()

	select {
	case d := <-got:
		if d["address"] != leased.String() || d["key"] != "k1" || d["iqn"] != "iqn.2008-10.org.openstack:u1" || d["error"] != "" {
			t.Errorf("pass_deploy_info = %+v", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no callback; console:\n%s", con)
	}
	select {
	case <-reset:
	case <-time.After(20 * time.Second):
		t.Fatalf("no reset; console:\n%s", con)
	}
	if err := <-done; err != nil {
		t.Errorf("executor: %v", err)
	}
	if exported != b.Disk {
		t.Error("the ramdisk did not export the machine's disk")
	}
	if a := faults.Asked(); len(a) != 1 || a[0].Layer != fault.Ramdisk || a[0].Op != "pass_deploy_info" ||
		a[0].Who.Machine != "node-0" || a[0].Who.Node != "u1" {
		t.Errorf("ramdisk asked the faults %+v, want pass_deploy_info for machine node-0, node u1", a)
	}
	if !strings.Contains(con.String(), "using disk vda") || !strings.Contains(con.String(), "\r\n") {
		t.Errorf("console:\n%s", con)
	}
}

// TestAgentModeLooksUpAndServes boots the ramdisk with ipa-api-url: the
// agent looks the machine up by its MAC, heartbeats a callback_url on the
// leased address, and answers its API there.
func TestAgentModeLooksUpAndServes(t *testing.T) {
	leased := net.IPv4(127, 79, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))
	api := testenv.NewFakeIronic(t, "52:54:00:12:34:56", testenv.IronicLookup("s3cret"))

	b, con := bootContext(t)
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	b.NICs = []vms.NIC{{MAC: mac}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	img := pxe.Image{
		KernelName: "deploy_kernel", Kernel: pxe.LoadBytes("deploy_kernel", bzImage()),
		Initrds: []pxe.File{pxe.LoadBytes("deploy_ramdisk", initramfs(t))},
		Cmdline: "ipa-api-url=" + api.URL + " BOOTIF=01-52-54-00-12-34-56",
		Lease:   pxe.Lease{IP: leased}, NIC: vms.NIC{MAC: mac},
	}
	done := make(chan error, 1)
	go func() { done <- Executor(Config{})(ctx, b, img) }()
	var cb string
	select {
	case hb := <-api.Heartbeats:
		cb = hb.CallbackURL
	case <-time.After(30 * time.Second):
		t.Fatalf("no heartbeat; console:\n%s", con)
	}
	if want := "http://" + leased.String() + ":9999"; cb != want {
		t.Errorf("callback_url = %q, want %q", cb, want)
	}
	resp, err := http.Get(cb + "/v1/commands/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "commands") {
		t.Errorf("GET /v1/commands/: %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("executor: %v", err)
	}
}
