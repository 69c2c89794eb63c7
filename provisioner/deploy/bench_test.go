package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner/internal/deploytest"
)

// BenchmarkISCSIDeploy measures the whole iSCSI deploy of a partition
// image (API, conductor, PXE config, the real ramdisk and target, the
// initiator writing the image, notify, reboot to active; netboot, bios)
// against dd of the same image bytes into the same disk file, in the same
// run. METALBED_BENCH_IMAGE_MB sets the image size (default 256).
func BenchmarkISCSIDeploy(b *testing.B) {
	sizeMB := int64(256)
	if s := os.Getenv("METALBED_BENCH_IMAGE_MB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 16 || n > 1000 {
			b.Fatalf("METALBED_BENCH_IMAGE_MB=%q: want 16..1000", s)
		}
		sizeMB = n
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		b.Skip("mkfs.ext4 not available (Debian package e2fsprogs)")
	}
	img, err := disk.Build(context.Background(), disk.BuildConfig{Kind: disk.KindPartition,
		Out: filepath.Join(b.TempDir(), "part.img"), SizeMB: sizeMB})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("metalbed", func(b *testing.B) {
		bed := iscsiBed(b)
		uuid, _ := bed.Enroll("bench0", "boot_mode:bios,boot_option:netboot", false)
		bed.SetInstanceInfo(uuid, map[string]any{"image_source": img.Path, "image_checksum": img.MD5, "root_gb": 1,
			"kernel": bed.File("kernel"), "ramdisk": bed.File("ramdisk")})
		b.SetBytes(img.Size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			verb := "active"
			if i > 0 {
				verb = "rebuild"
			}
			bed.Provision(uuid, verb)
			testenv.Eventually(b, 5*time.Minute, func() bool {
				n := bed.Node(uuid)
				if n.ProvisionState == "deploy failed" {
					b.Fatalf("deploy: %s %s", n.ProvisionState, n.Error())
				}
				return n.ProvisionState == "active" && (n.TargetProvisionState == nil || *n.TargetProvisionState == "")
			}, "node %s active", uuid)
		}
	})
	b.Run("dd", func(b *testing.B) {
		disk := filepath.Join(b.TempDir(), "disk.img")
		f, err := os.Create(disk)
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(deploytest.DiskSize)
		f.Close()
		b.SetBytes(img.Size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out, err := exec.Command("dd", "if="+img.Path, "of="+disk, "bs=4M", "seek=1048576", "oflag=seek_bytes",
				"conv=notrunc,fsync", "status=none").CombinedOutput()
			if err != nil {
				b.Fatalf("dd: %v %s", err, out)
			}
		}
	})
}
