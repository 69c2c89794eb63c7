package loader

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// partitionImage builds one real instance image (ext4 root with the
// gokrazy kernel, metalbed's init and grub.cfg) for all tests.
var partitionImage = sync.OnceValues(func() (*disk.Built, error) {
	dir, err := os.MkdirTemp("", "loader-test")
	if err != nil {
		return nil, err
	}
	return disk.Build(context.Background(), disk.BuildConfig{
		Kind: disk.KindPartition, Out: filepath.Join(dir, "part.img"), Hostname: "web-1",
	})
})

func TestMain(m *testing.M) {
	code := m.Run()
	if b, err := partitionImage(); err == nil {
		os.RemoveAll(filepath.Dir(b.Path))
	}
	os.Exit(code)
}

func needImage(t *testing.T) *disk.Built {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if os.Getenv("METALBED_INTEROP") == "required" {
			t.Fatal("mkfs.ext4 missing (Debian package e2fsprogs)")
		}
		t.Skip("mkfs.ext4 missing (Debian package e2fsprogs)")
	}
	b, err := partitionImage()
	if err != nil {
		t.Fatalf("build instance image: %v", err)
	}
	return b
}

type fileDisk struct {
	*os.File
	size int64
}

func (d fileDisk) Size() int64 { return d.size }

func newDisk(t *testing.T) fileDisk {
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	const size = 1 << 30
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return fileDisk{f, size}
}

// deploy does what the conductor (partition, write) and the ramdisk
// (bootloader) do for a local-boot deploy.
func deploy(t *testing.T, dsk fileDisk, mode string, bootloader bool) *disk.Result {
	t.Helper()
	return deployWith(t, dsk, mode, bootloader, nil)
}

// deployWith deploys the partition image and, with bootloader, installs
// GRUB (grub non-nil) or metalbed's placeholder loader.
func deployWith(t *testing.T, dsk fileDisk, mode string, bootloader bool, grub *disk.GrubImages) *disk.Result {
	t.Helper()
	img := needImage(t)
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := disk.DeployPartitionImage(t.Context(), dsk, dsk.size, f, img.Size,
		disk.PartitionParams{BootMode: mode, BootOption: "local", RootMB: 128})
	if err != nil {
		t.Fatal(err)
	}
	if bootloader {
		if _, err := disk.InstallBootloader(t.Context(), dsk, dsk.size, mode, grub); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// boot runs the loader until the instance announces itself or Boot returns.
func boot(t *testing.T, dsk fileDisk, mode vms.BootMode) (string, error) {
	t.Helper()
	con := &testenv.SyncBuffer{}
	b := &sim.BootContext{Machine: "node-1", Device: vms.BootDisk, Mode: mode, Disk: dsk, Console: con,
		Emit: func(vms.EventKind, string) {}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Loader{}.Boot(ctx, b) }()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-done:
			return con.String(), err
		case <-deadline:
			t.Fatalf("no boot after 30 s:\n%s", con)
		case <-time.After(10 * time.Millisecond):
			if strings.Contains(con.String(), "metalbed-instance: booted") {
				cancel() // power off
				return con.String(), <-done
			}
		}
	}
}

func TestLocalBootAfterDeploy(t *testing.T) {
	grub := func(t *testing.T) *disk.GrubImages {
		testenv.RequireTool(t, "grub-mkimage", "grub-common")
		g, err := disk.MakeGrubImages(t.Context(), "")
		if err != nil {
			testenv.Unavailable(t, err.Error())
		}
		return g
	}
	for _, mode := range []vms.BootMode{vms.BIOS, vms.UEFI} {
		for _, loader := range []string{"placeholder", "grub"} {
			t.Run(string(mode)+"-"+loader, func(t *testing.T) {
				var g *disk.GrubImages
				if loader == "grub" {
					g = grub(t)
				}
				dsk := newDisk(t)
				res := deployWith(t, dsk, string(mode), true, g)
				out, err := boot(t, dsk, mode)
				if err != nil {
					t.Fatalf("boot: %v\n%s", err, out)
				}
				// grub.cfg's probe --part-uuid turned into the root's PARTUUID.
				want := "metalbed-instance: booted web-1 root=PARTUUID=" + res.Layout.Find(disk.RoleRoot).PartUUID
				if !strings.Contains(out, want) {
					t.Errorf("console lacks %q:\n%s", want, out)
				}
			})
		}
	}
}

func TestLocalBootFailsWhereHardwareWould(t *testing.T) {
	cases := []struct {
		name       string
		deployMode string
		bootloader bool
		bootMode   vms.BootMode
		console    string
	}{
		{"bios without bootloader", "bios", false, vms.BIOS, "not a bootable disk"},
		{"uefi machine, bios disk", "bios", true, vms.UEFI, "No bootable option or device was found"},
		{"uefi without bootloader", "uefi", false, vms.UEFI, "No bootable option or device was found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsk := newDisk(t)
			deploy(t, dsk, c.deployMode, c.bootloader)
			out, err := boot(t, dsk, c.bootMode)
			if !errors.Is(err, ErrNoLoader) || !strings.Contains(out, c.console) {
				t.Errorf("err = %v, console:\n%s", err, out)
			}
			if strings.Contains(out, "metalbed-instance: booted") {
				t.Error("booted anyway")
			}
		})
	}
}

// TestNetbootInstanceRootUUID is the netboot path: the kernel from the PXE
// boot label mounts root=UUID= from the disk; a wrong UUID panics.
func TestNetbootInstanceRootUUID(t *testing.T) {
	dsk := newDisk(t)
	res := deploy(t, dsk, "bios", false)
	kern, err := os.ReadFile(kernelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		root, want string
		panic      bool
	}{
		{"UUID=" + res.RootUUID, "metalbed-instance: booted web-1", false},
		{"UUID=00000000-1111-2222-3333-444444444444", "VFS: Cannot open root device", true},
	} {
		con := &testenv.SyncBuffer{}
		b := &sim.BootContext{Machine: "node-2", Mode: vms.BIOS, Disk: dsk, Console: con, Emit: func(vms.EventKind, string) {}}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := kernel.Boot(ctx, kernel.Config{}, b, pxe.Image{KernelName: "kernel", Kernel: pxe.LoadBytes("kernel", kern), Cmdline: "root=" + c.root + " ro"})
		cancel()
		if !strings.Contains(con.String(), c.want) || errors.Is(err, kernel.ErrPanic) != c.panic {
			t.Errorf("root=%s: err %v, console:\n%s", c.root, err, con)
		}
	}
}

// kernelPath finds the gokrazy bzImage the instance image was built with.
func kernelPath(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gokrazy/kernel.amd64").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "vmlinuz")
}
