package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// partitionImage is one real instance image (ext4 root with a kernel,
// init and grub.cfg), built once for the tests that deploy it.
var partitionImage = sync.OnceValues(func() (*disk.Built, error) {
	dir, err := os.MkdirTemp("", "kernel-test")
	if err != nil {
		return nil, err
	}
	return disk.Build(context.Background(), disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(dir, "part.img"), Hostname: "web-1"})
})

var grubImages = sync.OnceValues(func() (*disk.GrubImages, error) { return disk.MakeGrubImages(context.Background(), "") })

func TestMain(m *testing.M) {
	code := m.Run()
	if b, err := partitionImage(); err == nil && b != nil {
		os.RemoveAll(filepath.Dir(b.Path))
	}
	os.Exit(code)
}

// deployedDisk lays the partition image out on the machine's disk for
// local boot in mode, as the conductor does before the ramdisk's
// bootloader step, and returns the root file system's UUID.
func deployedDisk(t *testing.T, b *sim.BootContext, mode string) string {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	testenv.RequireTool(t, "mkfs.vfat", "dosfstools")
	img, err := partitionImage()
	if err != nil {
		t.Fatalf("build instance image: %v", err)
	}
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := b.Disk.(fileDisk)
	res, err := disk.DeployPartitionImage(t.Context(), d, d.size, f, img.Size,
		disk.PartitionParams{BootMode: mode, BootOption: disk.BootOptionLocal, RootMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	return res.RootUUID
}

// grubInitramfs is a deploy ramdisk as `metalbed ramdisk build` makes it:
// with GRUB (grub), or built without it, asked for (placeholder) or not.
func grubInitramfs(t *testing.T, grub, placeholder bool) []byte {
	t.Helper()
	cfg := ramdisk.ImageConfig{Init: filepath.Join(t.TempDir(), "init"), Version: "t", Placeholder: placeholder}
	os.WriteFile(cfg.Init, []byte("program"), 0o755)
	if grub {
		testenv.RequireTool(t, "grub-mkimage", "grub-common")
		g, err := grubImages()
		if err != nil {
			testenv.Unavailable(t, fmt.Sprintf("GRUB images: %v", err))
		}
		cfg.Grub = g
	}
	var buf bytes.Buffer
	if err := ramdisk.BuildInitramfs(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// kinds collects the events the kernel's programs record.
type kinds struct {
	mu sync.Mutex
	ev []events.Event
}

func (k *kinds) Record(e events.Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ev = append(k.ev, e)
}

// find returns the detail of the first event of kind, and whether there
// was one.
func (k *kinds) find(kind events.Kind) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range k.ev {
		if e.Kind == kind {
			return e.Detail, true
		}
	}
	return "", false
}

// fakeConductor answers the iSCSI deploy ramdisk's callbacks as the
// conductor does: each one is acknowledged and followed by a notice on the
// ramdisk's port 10000. The bodies arrive on the channel.
func fakeConductor(t *testing.T) (url string, calls <-chan map[string]string) {
	ch := make(chan map[string]string, 4)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := map[string]string{"method": r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]}
		json.NewDecoder(r.Body).Decode(&body)
		w.WriteHeader(http.StatusAccepted)
		ch <- body
		go func() {
			c, err := net.Dial("tcp", net.JoinHostPort(body["address"], "10000"))
			if err != nil {
				t.Errorf("notify: %v", err)
				return
			}
			io.WriteString(c, "done")
			c.Close()
		}()
	}))
	t.Cleanup(api.Close)
	return api.URL, ch
}

// TestRamdiskInstallsGrubFromInitramfs runs the iSCSI deploy ramdisk's
// local-boot step on a simulated machine: the GRUB 2 its initramfs carries
// goes onto the disk (MBR and core.img, or the ESP) and the console and the
// timeline name it. Without GRUB in the initramfs metalbed's placeholder
// goes on — as an error on the console and a fallback event, unless the
// ramdisk was built to do so.
func TestRamdiskInstallsGrubFromInitramfs(t *testing.T) {
	for _, c := range []struct {
		name              string
		mode              string
		grub, placeholder bool
	}{
		{"bios grub", disk.BootModeBIOS, true, false},
		{"uefi grub", disk.BootModeUEFI, true, false},
		{"bios no grub", disk.BootModeBIOS, false, false},
		{"uefi no grub", disk.BootModeUEFI, false, false},
		{"bios placeholder asked", disk.BootModeBIOS, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rd := grubInitramfs(t, c.grub, c.placeholder)
			b, con := bootContext(t)
			deployedDisk(t, b, c.mode)
			url, calls := fakeConductor(t)
			rec := &kinds{}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			cfg := Config{
				Export: func(ctx context.Context, _ net.Listener, _ string, _ ramdisk.BlockDevice) error {
					<-ctx.Done()
					return nil
				},
				Reset:    cancel,
				Recorder: rec,
			}
			img := pxe.Image{
				KernelName: "deploy_kernel", Kernel: pxe.LoadBytes("deploy_kernel", bzImage()),
				Initrds: []pxe.File{pxe.LoadBytes("deploy_ramdisk", rd)},
				Cmdline: "deployment_id=u1 deployment_key=k1 iscsi_target_iqn=iqn.2008-10.org.openstack:u1 ironic_api_url=" + url +
					" disk=vda boot_option=local boot_mode=" + c.mode,
				Lease: pxe.Lease{IP: net.IPv4(127, 80, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))},
			}
			if err := Executor(cfg)(ctx, b, img); err != nil {
				t.Fatalf("executor: %v; console:\n%s", err, con)
			}
			var bl map[string]string
			for i := 0; i < 2; i++ {
				select {
				case bl = <-calls:
				case <-time.After(10 * time.Second):
					t.Fatalf("callback %d missing; console:\n%s", i, con)
				}
			}
			if bl["method"] != "pass_bootloader_install_info" || bl["status"] != "SUCCEEDED" {
				t.Fatalf("bootloader callback %v; console:\n%s", bl, con)
			}
			checkLoader(t, b, c.mode, c.grub)
			detail, _ := rec.find(events.RamdiskBootloader)
			fallback, fell := rec.find(events.RamdiskBootloaderFallback)
			switch {
			case c.grub:
				if !strings.Contains(con.String(), "bootloader: GRUB 2") || detail != c.mode+" GRUB 2" || fell {
					t.Errorf("%s = %q, fallback %q; console:\n%s", events.RamdiskBootloader, detail, fallback, con)
				}
			case c.placeholder:
				if !strings.Contains(con.String(), "placeholder (the ramdisk was built without GRUB, as asked") || fell || strings.Contains(con.String(), "ERROR") {
					t.Errorf("fallback %q; console:\n%s", fallback, con)
				}
			default:
				want := "no GRUB 2 images for " + c.mode + " in deploy_ramdisk:" + disk.GrubImagesDir
				if !fell || !strings.Contains(fallback, want) || !strings.Contains(con.String(), "ERROR: "+want) {
					t.Errorf("fallback event %v %q, want %q; console:\n%s", fell, fallback, want, con)
				}
			}
		})
	}
}

// TestAgentInstallsGrubFromInitramfs runs the agent's
// image.install_bootloader, as the conductor sends it, on a simulated
// machine booted with a ramdisk that carries GRUB, and one that does not.
func TestAgentInstallsGrubFromInitramfs(t *testing.T) {
	for _, grub := range []bool{true, false} {
		t.Run(fmt.Sprintf("grub=%v", grub), func(t *testing.T) {
			const mode = disk.BootModeUEFI
			rd := grubInitramfs(t, grub, false)
			b, con := bootContext(t)
			b.Mode = vms.UEFI
			rootUUID := deployedDisk(t, b, mode)
			mac, _ := net.ParseMAC("52:54:00:12:34:57")
			b.NICs = []vms.NIC{{MAC: mac}}
			api := testenv.NewFakeIronic(t, mac.String(), testenv.IronicLookup("s3cret"))
			rec := &kinds{}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			leased := net.IPv4(127, 81, byte(rand.IntN(250)+1), byte(rand.IntN(250)+1))
			img := pxe.Image{
				KernelName: "deploy_kernel", Kernel: pxe.LoadBytes("deploy_kernel", bzImage()),
				Initrds: []pxe.File{pxe.LoadBytes("deploy_ramdisk", rd)},
				Cmdline: "ipa-api-url=" + api.URL + " BOOTIF=01-" + strings.ReplaceAll(mac.String(), ":", "-"),
				Lease:   pxe.Lease{IP: leased}, NIC: vms.NIC{MAC: mac},
			}
			done := make(chan error, 1)
			go func() { done <- Executor(Config{Recorder: rec})(ctx, b, img) }()
			var cb string
			select {
			case hb := <-api.Heartbeats:
				cb = hb.CallbackURL
			case <-time.After(30 * time.Second):
				t.Fatalf("no heartbeat; console:\n%s", con)
			}
			cmd := `{"name": "image.install_bootloader", "params": {"root_uuid": "` + rootUUID + `", "target_boot_mode": "` + mode + `"}}`
			resp, err := http.Post(cb+"/v1/commands/?wait=true&agent_token=s3cret", "application/json", strings.NewReader(cmd))
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				Status string `json:"command_status"`
				Error  any    `json:"command_error"`
			}
			json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if res.Status != "SUCCEEDED" {
				t.Fatalf("install_bootloader: %+v; console:\n%s", res, con)
			}
			checkLoader(t, b, mode, grub)
			detail, _ := rec.find(events.AgentBootloader)
			fallback, fell := rec.find(events.AgentBootloaderFallback)
			if grub && (detail != "uefi GRUB 2" || fell || !strings.Contains(con.String(), ": GRUB 2")) {
				t.Errorf("%s = %q, fallback %q; console:\n%s", events.AgentBootloader, detail, fallback, con)
			}
			if !grub && (!fell || !strings.Contains(fallback, "no GRUB 2 images for uefi in deploy_ramdisk:"+disk.GrubImagesDir) ||
				!strings.Contains(con.String(), "ERROR: no GRUB 2 images")) {
				t.Errorf("fallback event %v %q; console:\n%s", fell, fallback, con)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("executor: %v", err)
			}
		})
	}
}

// checkLoader inspects the machine's disk: GRUB 2 (grub) or metalbed's
// placeholder for the boot mode.
func checkLoader(t *testing.T, b *sim.BootContext, mode string, grub bool) {
	t.Helper()
	ins, err := disk.Inspect(b.Disk.(fileDisk), b.Disk.Size())
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case mode == disk.BootModeUEFI && ins.ESPLoaderGrub != grub:
		t.Errorf("ESP loader GRUB = %v, want %v", ins.ESPLoaderGrub, grub)
	case mode == disk.BootModeBIOS && grub && ins.BootLoader != "grub":
		t.Errorf("MBR loader %q, want grub", ins.BootLoader)
	case mode == disk.BootModeBIOS && !grub && ins.BootLoader != "metalbed":
		t.Errorf("MBR loader %q, want metalbed's placeholder", ins.BootLoader)
	}
}
