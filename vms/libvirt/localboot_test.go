//go:build libvirt_dlopen

package libvirt_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/iscsitarget/initiator"
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
// (disk.DeployPartitionImage) with the deploy ramdisk's bootloader step
// (ramdisk.BootloadersFrom over the GRUB images that `metalbed ramdisk
// build` puts into the initramfs, unpacked under a directory) run on the disk file. Each VM
// must announce the instance on its serial console with the root
// partition's PARTUUID, which GRUB's probe put on the command line.
func TestLocalBoot(t *testing.T) {
	requireLibvirt(t)
	ctx := t.Context()
	work := t.TempDir()
	t0 := time.Now()
	grub, err := disk.MakeGrubImages(ctx, "")
	if err != nil {
		t.Fatalf("GRUB images (apt-get install grub-pc-bin grub-efi-amd64-bin): %v", err)
	}
	if len(grub.BIOSCore) == 0 || len(grub.EFI) == 0 {
		t.Fatalf("GRUB images: BIOS %d bytes, EFI %d bytes: install grub-pc-bin and grub-efi-amd64-bin", len(grub.BIOSCore), len(grub.EFI))
	}
	rdRoot := filepath.Join(work, "ramdisk")
	grubDir := filepath.Join(rdRoot, disk.GrubImagesDir)
	if err := os.MkdirAll(grubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range grub.Files() {
		if err := os.WriteFile(filepath.Join(grubDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	initBin, err := disk.BuildInit(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	part, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(work, "part.img"), Init: initBin, Hostname: "lb-part"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GRUB images and instance images: %v", time.Since(t0).Round(time.Millisecond))

	id := fmt.Sprintf("lb%d", os.Getpid()%1e6)
	netw := createNetwork(t, id, "10.233.30.1/24")

	slots := make(chan struct{}, localBootVMs)
	cases := []struct {
		name  string
		mode  vms.BootMode
		kind  disk.Kind
		label string // partition images: the conductor's disk label
	}{
		{"whole-disk-bios", vms.BIOS, disk.KindWholeDisk, ""},
		{"whole-disk-uefi", vms.UEFI, disk.KindWholeDisk, ""},
		{"partition-bios-msdos", vms.BIOS, disk.KindPartition, disk.LabelMSDOS},
		{"partition-bios-gpt", vms.BIOS, disk.KindPartition, disk.LabelGPT},
		{"partition-uefi-gpt", vms.UEFI, disk.KindPartition, disk.LabelGPT},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			diskPath := filepath.Join(dir, "disk.img")
			var diskBytes int64
			var rootPartUUID string
			if c.kind == disk.KindWholeDisk {
				b, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindWholeDisk, BootMode: string(c.mode), Out: diskPath, Init: initBin, Hostname: "lb-" + c.name, Grub: grub})
				if err != nil {
					t.Fatal(err)
				}
				if b.BootLoader != "grub" {
					t.Fatalf("whole-disk image built with loader %q", b.BootLoader)
				}
				diskBytes = b.Size
				rootPartUUID = inspectRoot(t, diskPath, diskBytes)
			} else {
				diskBytes = 512 << 20
				rootPartUUID = deployPartition(t, diskPath, diskBytes, part, c.mode, c.label, rdRoot)
			}

			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			defer func() { <-slots }()

			consoleLog := filepath.Join(dir, "console.log")
			m := newMachine(t, libvirt.Config{
				Name: fmt.Sprintf("mblb-%s-%d", id, i), MAC: net.HardwareAddr{0x52, 0x54, 0x00, 0xb0, byte(os.Getpid()), byte(i)},
				Bridge: netw.Bridge, Disk: diskPath, DiskBytes: diskBytes,
				SerialLog: consoleLog, BootMode: c.mode,
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
			if c.kind == disk.KindPartition {
				want += "part"
			} else {
				want += c.name
			}
			want += " root=PARTUUID=" + rootPartUUID
			// TCG on a loaded 2-core host: OVMF, GRUB and the kernel take
			// 50 s alone and well over 2 min beside other jobs.
			deadline := time.Now().Add(4 * time.Minute)
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
// it with the GRUB images of the ramdisk unpacked at rdRoot; it returns the
// root's PARTUUID.
func deployPartition(t *testing.T, path string, size int64, part *disk.Built, mode vms.BootMode, label, rdRoot string) string {
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
	res, err := disk.DeployPartitionImage(t.Context(), f, size, img, part.Size, disk.PartitionParams{
		BootMode: string(mode), BootOption: disk.BootOptionLocal, DiskLabel: label, RootMB: 100, SwapMB: 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	bl, err := ramdisk.BootloadersFrom(rdRoot)
	if err != nil {
		t.Fatal(err)
	}
	step := bl.Installer()
	if ins, err := step(t.Context(), ramdisk.Disk{Name: "vda", SizeBytes: size, Dev: fileDev{f, size}}, string(mode)); err != nil || !ins.Grub {
		t.Fatalf("bootloader step: %+v, %v", ins, err)
	}
	ins, err := disk.Inspect(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if (mode == vms.UEFI && !ins.ESPLoaderGrub) || (mode == vms.BIOS && ins.BootLoader != "grub") {
		t.Fatalf("after the bootloader step: MBR loader %q, ESP GRUB %v", ins.BootLoader, ins.ESPLoaderGrub)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return res.Layout.Find(disk.RoleRoot).PartUUID
}

// inspectRoot returns the PARTUUID of a whole-disk image's root partition.
func inspectRoot(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ins, err := disk.Inspect(f, size)
	if err != nil {
		t.Fatal(err)
	}
	root := ins.Layout.Find(disk.RoleRoot)
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

// TestRamdiskLocalBoot runs the whole local-boot path in real VMs: the
// real deploy ramdisk (`metalbed ramdisk build`, GRUB images in its
// initramfs) PXE-boots with boot_option=local; this test, as the
// conductor, lays the partition image out over iSCSI
// (disk.DeployPartitionImage on the initiator's session) and sends the
// notice; the ramdisk installs GRUB on /dev/vda from its initramfs and
// reports pass_bootloader_install_info SUCCEEDED; after the second notice
// it reboots, and the VM, set to boot from disk, comes up as the instance.
func TestRamdiskLocalBoot(t *testing.T) {
	requireLibvirt(t)
	bin := metalbedBinary(t)
	rd := t.TempDir()
	t0 := time.Now()
	out, err := exec.CommandContext(t.Context(), bin, "ramdisk", "build", "--out", rd, "--src", "../..").CombinedOutput()
	if err != nil {
		t.Fatalf("metalbed ramdisk build: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "GRUB 2 for bios and uefi") {
		t.Fatalf("metalbed ramdisk build did not include GRUB for both modes:\n%s", out)
	}
	part, err := disk.Build(t.Context(), disk.BuildConfig{Kind: disk.KindPartition, SizeMB: 40, Out: filepath.Join(rd, "part.img"), Hostname: "lb-ramdisk"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ramdisk and partition image: %v", time.Since(t0).Round(time.Millisecond))
	for i, mode := range []vms.BootMode{vms.BIOS, vms.UEFI} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			testRamdiskLocalBoot(t, bin, rd, part, mode, i)
		})
	}
}

func testRamdiskLocalBoot(t *testing.T, bin, rd string, part *disk.Built, mode vms.BootMode, idx int) {
	ctx := t.Context()
	dir := t.TempDir()
	linkRamdisk(t, rd, dir)
	subnet := fmt.Sprintf("10.233.%d", 31+idx)
	id := fmt.Sprintf("r%d%d", os.Getpid()%1e6, idx)
	netw := createNetwork(t, id, subnet+".1/24")
	srv := netw.Addr()

	uuid := fmt.Sprintf("%08x-0000-4000-8000-%012x", os.Getpid(), idx)
	key := fmt.Sprintf("k%d%d", os.Getpid(), idx)
	iqn := "iqn.2008-10.org.openstack:" + uuid
	type callback struct {
		Address, Key, IQN, Error, Status string
	}
	deployInfo, bootloaderInfo := make(chan callback, 4), make(chan callback, 4)
	mux := http.NewServeMux()
	handlePassthru(mux, uuid, "pass_deploy_info", deployInfo)
	handlePassthru(mux, uuid, "pass_bootloader_install_info", bootloaderInfo)
	serveAPI(t, netw, mux)

	base := "http://" + srv.String() + ":8080"
	params := strings.Join([]string{
		"console=ttyS0,115200", "panic=-1", "disk=vda",
		"iscsi_target_iqn=" + iqn, "deployment_id=" + uuid, "deployment_key=" + key,
		"ironic_api_url=http://" + srv.String() + ":6385", "troubleshoot=0",
		"boot_option=local", "boot_mode=" + string(mode),
	}, " ")
	writeBootScript(t, dir, base, "vmlinuz", "initramfs", params, mode)
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xb1, byte(os.Getpid()), byte(idx)}
	servers := serveNetboot(t, netw, bin, dir, subnet+".100-"+subnet+".199", mac)

	consoleLog := filepath.Join(dir, "console.log")
	const diskBytes = 384 << 20
	m := newMachine(t, libvirt.Config{
		Name: "mbtest-" + id, MAC: mac, Bridge: netw.Bridge,
		Disk: filepath.Join(dir, "disk.img"), DiskBytes: diskBytes,
		SerialLog: consoleLog, BootMode: mode,
	})
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootPXE, false, mode == vms.UEFI)); err != nil {
		t.Fatal(err)
	}
	console := func() string {
		b, _ := os.ReadFile(consoleLog)
		return string(b)
	}
	wait := func(ch chan callback, what string) callback {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(3 * time.Minute):
			t.Fatalf("no %s\nservers:\n%s\nconsole tail:\n%s", what, servers.String(), tail([]byte(console()), 4000))
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		return callback{}
	}
	waitConsole := func(want string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !strings.Contains(console(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q on the serial console; tail:\n%s", want, tail([]byte(console()), 4000))
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	start := time.Now()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	info := wait(deployInfo, "pass_deploy_info")
	if info.Key != key || info.IQN != iqn || info.Error != "" {
		t.Fatalf("pass_deploy_info %+v\nconsole tail:\n%s", info, tail([]byte(console()), 4000))
	}

	// The conductor's part: lay the disk out over iSCSI and write the image.
	s, err := initiator.Dial(ctx, initiator.Config{Addr: info.Address + ":3260", TargetIQN: iqn, DialContext: dialIn(netw)})
	if err != nil {
		t.Fatalf("iSCSI login to the ramdisk: %v", err)
	}
	img, err := os.Open(part.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	res, err := disk.DeployPartitionImage(ctx, s, s.Size(), img, part.Size, disk.PartitionParams{
		BootMode: string(mode), BootOption: disk.BootOptionLocal, RootMB: 48,
	})
	if err != nil {
		t.Fatalf("deploy over iSCSI: %v", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("logout: %v", err)
	}
	notice(t, netw, info.Address)

	bl := wait(bootloaderInfo, "pass_bootloader_install_info")
	if bl.Status != "SUCCEEDED" || bl.Error != "" {
		t.Fatalf("pass_bootloader_install_info %+v\nconsole tail:\n%s", bl, tail([]byte(console()), 4000))
	}
	waitConsole("bootloader: GRUB 2", 10*time.Second)
	notice(t, netw, info.Address)
	waitConsole("metalbed-ramdisk: rebooting", time.Minute)
	deployed := time.Since(start)

	// As the conductor does for local boot: off, boot from disk, on.
	if err := m.Power(ctx, vms.ActionOff); err != nil {
		t.Fatal(err)
	}
	if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootDisk, true, mode == vms.UEFI)); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	waitConsole("metalbed-instance: booted lb-ramdisk root=PARTUUID="+res.Layout.Find(disk.RoleRoot).PartUUID, 2*time.Minute)
	t.Logf("%s: power on to ramdisk reboot %v; local boot to instance booted %v",
		mode, deployed.Round(100*time.Millisecond), time.Since(t1).Round(100*time.Millisecond))
	if err := m.Power(ctx, vms.ActionOff); err != nil {
		t.Errorf("power off: %v", err)
	}
}
