package disk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// run runs a real tool and returns its standard output.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// sparseDisk makes a sparse file of size bytes.
func sparseDisk(t testing.TB, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// testInit builds the instance init once per test binary run directory.
func testInit(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "metalbed-images-test-init-"+strconv.Itoa(os.Getpid()))
	p := filepath.Join(dir, "init")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	testenv.RequireTool(t, "go", "golang-go")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := BuildInit(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(filepath.Join(os.TempDir(), "metalbed-images-test-init-"+strconv.Itoa(os.Getpid())))
	os.Exit(code)
}

// openImage opens the image file of img until the test ends.
func openImage(t testing.TB, img *Built) *os.File {
	t.Helper()
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// buildImage builds an instance image into a temp dir.
func buildImage(t testing.TB, kind Kind, bootMode string) *Built {
	t.Helper()
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	cfg := BuildConfig{Kind: kind, BootMode: bootMode, Out: filepath.Join(t.TempDir(), string(kind)+".img"), Init: testInit(t)}
	if kind == KindWholeDisk {
		cfg.Grub = grubImages(t)
	}
	b, err := Build(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

// extract copies [off, off+n) of f into a new file and returns its path.
func extract(t testing.TB, f io.ReaderAt, off, n int64, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	return p
}

// blkidAt probes [off, off+size) of path with blkid -p.
func blkidAt(t testing.TB, path string, off, size int64) map[string]string {
	t.Helper()
	blkid := testenv.RequireTool(t, "blkid", "util-linux")
	args := []string{"-p", "-o", "export", "-O", strconv.FormatInt(off, 10), "-S", strconv.FormatInt(off+size, 10), path}
	out, err := exec.Command(blkid, args...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return map[string]string{} // blkid found nothing
	}
	if err != nil {
		t.Fatalf("blkid %v: %v", args, err)
	}
	return parseExport(string(out))
}

func parseExport(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// sfdiskTable is `sfdisk --json` output.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			UUID     string `json:"uuid"`
			Name     string `json:"name"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskJSON(t testing.TB, path string) sfdiskTable {
	t.Helper()
	sfdisk := testenv.RequireTool(t, "sfdisk", "fdisk")
	var tab sfdiskTable
	if err := json.Unmarshal([]byte(run(t, sfdisk, "--json", path)), &tab); err != nil {
		t.Fatal(err)
	}
	return tab
}

// digest hashes a file's first and last MiB plus its size: enough to see
// whether a deploy touched a disk whose ends were filled with a pattern.
func fillEnds(t testing.TB, f *os.File, size int64) {
	t.Helper()
	pat := bytes.Repeat([]byte("metalbed"), int(mib/8))
	for _, off := range []int64{0, size - mib, size / 2} {
		if _, err := f.WriteAt(pat, off); err != nil {
			t.Fatal(err)
		}
	}
}

func digest(t testing.TB, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

// grubImages makes the GRUB images once per test binary (grub-mkimage
// takes a second); a test without GRUB on the machine skips.
func grubImages(t testing.TB) *GrubImages {
	t.Helper()
	testenv.RequireTool(t, "grub-mkimage", "grub-common")
	for _, m := range []struct{ file, pkg string }{
		{"i386-pc/boot.img", "grub-pc-bin"}, {"x86_64-efi/linux.mod", "grub-efi-amd64-bin"},
	} {
		if _, err := os.Stat(filepath.Join(DefaultGrubLibDir, m.file)); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("%s/%s missing: install the Debian package %s", DefaultGrubLibDir, m.file, m.pkg))
		}
	}
	g, err := makeGrubOnce()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var makeGrubOnce = sync.OnceValues(func() (*GrubImages, error) { return MakeGrubImages(context.Background(), "") })
