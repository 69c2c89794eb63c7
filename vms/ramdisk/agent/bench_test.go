package agent

import (
	"crypto/rand"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// BenchmarkWholeDiskImage streams a 128 MiB raw whole-disk image over HTTP
// onto a sparse file, hashing it (sha256) on the way: the agent through
// standby.prepare_image against `curl | tee disk | sha256sum`, the same
// work done by real tools, measured in the same run.
func BenchmarkWholeDiskImage(b *testing.B) {
	const size = 128 << 20
	img := mbrImage(size)
	rand.Read(img[1<<20:])
	is := newImageServer(b)
	url := is.put("/bench.raw", img)

	b.Run("agent", func(b *testing.B) {
		disk := sparseDisk(b, "vda", 256<<20)
		ironic := newFakeIronic(b)
		h := startAgent(b, ironic, newTestEnv(disk), func(c *Config) { c.MinDiskBytes = -1 })
		info := imageInfoFor(url, img)
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			info["id"] = "bench-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
			st, got := h.command("standby.prepare_image", map[string]any{"image_info": info}, true)
			if st != 200 || got["command_status"] != statusSucceeded {
				b.Fatal(st, got)
			}
		}
	})
	b.Run("curl", func(b *testing.B) {
		curl := testenv.RequireTool(b, "curl", "curl")
		disk := filepath.Join(b.TempDir(), "disk.img")
		b.SetBytes(size)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out, err := exec.Command("sh", "-c", curl+` -sf "$1" | tee "$2" | sha256sum`, "sh", url, disk).CombinedOutput()
			if err != nil || len(out) < 64 || string(out[:64]) != sha256Hex(img) {
				b.Fatalf("curl: %v %s", err, out)
			}
		}
	})
}
