//go:build libvirt_dlopen

package libvirt_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner/images"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/libvirt"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// localBootVMs bounds the VMs TestLocalBoot runs at once (2 cores, TCG).
const localBootVMs = 4

// TestLocalBoot boots metalbed's instance images from local disk on real
// firmware — SeaBIOS and OVMF (secure boot off) — through real GRUB 2:
// whole-disk images as `metalbed image build` makes them, and partition
// images laid out as the conductor does for local boot
// (images.DeployPartitionImage) with the deploy ramdisk's bootloader step
// (ramdisk.InstallBootloaderFrom over the GRUB images that `metalbed
// ramdisk build` puts into the initramfs) run on the disk file. Each VM
// must announce the instance on its serial console with the root
// partition's PARTUUID, which GRUB's probe put on the command line.
func TestLocalBoot(t *testing.T) {
	requireLibvirt(t)
	ctx := t.Context()
	work := t.TempDir()
	t0 := time.Now()
	grub, err := images.MakeGrubImages(ctx, "")
	if err != nil {
		t.Fatalf("GRUB images (apt-get install grub-pc-bin grub-efi-amd64-bin): %v", err)
	}
	if len(grub.BIOSCore) == 0 || len(grub.EFI) == 0 {
		t.Fatalf("GRUB images: BIOS %d bytes, EFI %d bytes: install grub-pc-bin and grub-efi-amd64-bin", len(grub.BIOSCore), len(grub.EFI))
	}
	grubDir := filepath.Join(work, "grub")
	if err := os.Mkdir(grubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range grub.Files() {
		if err := os.WriteFile(filepath.Join(grubDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	initBin, err := images.BuildInit(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	part, err := images.Build(ctx, images.BuildConfig{Kind: images.KindPartition, Out: filepath.Join(work, "part.img"), Init: initBin, Hostname: "lb-part"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GRUB images and instance images: %v", time.Since(t0).Round(time.Millisecond))

	id := fmt.Sprintf("lb%d", os.Getpid()%1e6)
	netw, err := libvirt.CreateNetwork(ctx, libvirt.NetworkConfig{Name: id, Addr: netip.MustParsePrefix("10.233.30.1/24")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netw.Close(); err != nil {
			t.Errorf("remove network: %v", err)
		}
	})

	slots := make(chan struct{}, localBootVMs)
	cases := []struct {
		name  string
		mode  vms.BootMode
		kind  images.Kind
		label string // partition images: the conductor's disk label
	}{
		{"whole-disk-bios", vms.BIOS, images.KindWholeDisk, ""},
		{"whole-disk-uefi", vms.UEFI, images.KindWholeDisk, ""},
		{"partition-bios-msdos", vms.BIOS, images.KindPartition, images.LabelMSDOS},
		{"partition-bios-gpt", vms.BIOS, images.KindPartition, images.LabelGPT},
		{"partition-uefi-gpt", vms.UEFI, images.KindPartition, images.LabelGPT},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			disk := filepath.Join(dir, "disk.img")
			var diskBytes int64
			var rootPartUUID string
			if c.kind == images.KindWholeDisk {
				b, err := images.Build(ctx, images.BuildConfig{Kind: images.KindWholeDisk, BootMode: string(c.mode), Out: disk, Init: initBin, Hostname: "lb-" + c.name, Grub: grub})
				if err != nil {
					t.Fatal(err)
				}
				if b.BootLoader != "grub" {
					t.Fatalf("whole-disk image built with loader %q", b.BootLoader)
				}
				diskBytes = b.Size
				rootPartUUID = inspectRoot(t, disk, diskBytes)
			} else {
				diskBytes = 512 << 20
				rootPartUUID = deployPartition(t, disk, diskBytes, part, c.mode, c.label, grubDir)
			}

			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			defer func() { <-slots }()

			consoleLog := filepath.Join(dir, "console.log")
			m, err := libvirt.New(libvirt.Config{
				Name: fmt.Sprintf("mblb-%s-%d", id, i), MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0xb0, byte(os.Getpid()), byte(i)},
				Bridge: netw.Bridge, Disk: disk, DiskBytes: diskBytes,
				SerialLog: consoleLog, BootMode: c.mode,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := m.Remove(); err != nil {
					t.Errorf("remove machine: %v", err)
				}
			})
			if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootDisk, true, c.mode == vms.UEFI)); err != nil {
				t.Fatal(err)
			}
			console := func() string {
				b, _ := os.ReadFile(consoleLog)
				return string(b)
			}
			start := time.Now()
			if err := m.Power(ctx, vms.ActionOn); err != nil {
				t.Fatal(err)
			}
			want := "metalbed-instance: booted lb-"
			if c.kind == images.KindPartition {
				want += "part"
			} else {
				want += c.name
			}
			want += " root=PARTUUID=" + rootPartUUID
			deadline := time.Now().Add(2 * time.Minute)
			for !strings.Contains(console(), want) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q on the serial console after %v; console tail:\n%s", want, time.Since(start).Round(time.Second), tail([]byte(console()), 4000))
				}
				select {
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				case <-time.After(250 * time.Millisecond):
				}
			}
			t.Logf("%s: power on to instance booted: %v", c.name, time.Since(start).Round(100*time.Millisecond))
			if err := m.Power(ctx, vms.ActionOff); err != nil {
				t.Errorf("power off: %v", err)
			}
		})
	}
}

// deployPartition lays the partition image out on a new disk file as the
// conductor does for local boot and runs the ramdisk's bootloader step on
// it with the GRUB images of grubDir; it returns the root's PARTUUID.
func deployPartition(t *testing.T, path string, size int64, part *images.Built, mode vms.BootMode, label, grubDir string) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	img, err := os.Open(part.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	res, err := images.DeployPartitionImage(t.Context(), f, size, img, part.Size, images.PartitionParams{
		BootMode: string(mode), BootOption: images.BootOptionLocal, DiskLabel: label, RootMB: 100, SwapMB: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	step := ramdisk.InstallBootloaderFrom(grubDir)
	if err := step(t.Context(), ramdisk.Disk{Name: "vda", SizeBytes: size, Dev: fileDev{f, size}}, string(mode)); err != nil {
		t.Fatalf("bootloader step: %v", err)
	}
	ins, err := images.Inspect(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if (mode == vms.UEFI && !ins.ESPLoaderGrub) || (mode == vms.BIOS && ins.BootLoader != "grub") {
		t.Fatalf("after the bootloader step: MBR loader %q, ESP GRUB %v", ins.BootLoader, ins.ESPLoaderGrub)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return res.Layout.Find(images.RoleRoot).PartUUID
}

// inspectRoot returns the PARTUUID of a whole-disk image's root partition.
func inspectRoot(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ins, err := images.Inspect(f, size)
	if err != nil {
		t.Fatal(err)
	}
	root := ins.Layout.Find(images.RoleRoot)
	if root == nil {
		t.Fatalf("no root partition in %+v", ins.Layout)
	}
	return root.PartUUID
}

// fileDev is a disk file as the ramdisk's block device.
type fileDev struct {
	*os.File
	size int64
}

func (d fileDev) Size() int64 { return d.size }
