package disk

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// BenchmarkPartitionImage1GiB compares the conductor's partition-image
// deploy (wipe, label, root partition, 1 GiB image written, fsync, root UUID
// read back) onto a fresh sparse 2 GiB file with
// `dd if=img of=disk bs=4M conv=notrunc,fsync` of the same image bytes.
// ci/bench/images.sh turns the two into a ratio.
func BenchmarkPartitionImage1GiB(b *testing.B) {
	mkfs := testenv.RequireTool(b, "mkfs.ext4", "e2fsprogs")
	dd := testenv.RequireTool(b, "dd", "coreutils")
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	// 900 MiB of random data so the image is not mostly holes.
	data, err := os.Create(filepath.Join(tree, "data"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(data, rand.Reader, 900<<20); err != nil {
		b.Fatal(err)
	}
	data.Close()
	imgPath := filepath.Join(dir, "root.ext4")
	if out, err := exec.Command(mkfs, "-F", "-q", "-d", tree, imgPath, "1G").CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	os.RemoveAll(tree)
	img, err := os.Open(imgPath)
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	// Flush mkfs's dirty pages now, so neither side pays for them.
	if err := img.Sync(); err != nil {
		b.Fatal(err)
	}
	st, _ := img.Stat()
	diskPath := filepath.Join(dir, "disk.img")
	fresh := func() *os.File {
		os.Remove(diskPath)
		f, err := os.Create(diskPath)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(2 << 30); err != nil {
			b.Fatal(err)
		}
		return f
	}
	b.Run("metalbed", func(b *testing.B) {
		b.SetBytes(st.Size())
		for b.Loop() {
			b.StopTimer()
			disk := fresh()
			b.StartTimer()
			if _, err := DeployPartitionImage(b.Context(), disk, 2<<30, img, st.Size(), PartitionParams{RootMB: 1024}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			disk.Close()
			b.StartTimer()
		}
	})
	b.Run("dd", func(b *testing.B) {
		b.SetBytes(st.Size())
		for b.Loop() {
			b.StopTimer()
			fresh().Close()
			b.StartTimer()
			// dd opens the disk itself, as it would open /dev/sdX.
			if out, err := exec.Command(dd, "if="+imgPath, "of="+diskPath, "bs=4M", "conv=notrunc,fsync", "status=none").CombinedOutput(); err != nil {
				b.Fatalf("dd: %v %s", err, out)
			}
		}
	})
}
