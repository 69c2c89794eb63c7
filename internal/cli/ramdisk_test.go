package cli

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms/ramdisk"
)

// TestRamdiskBuild builds the real-machine ramdisk from this source tree and
// checks the archive: a metalbed marker, and an /init that is a static ELF
// (no PT_INTERP), which a dynamically linked metalbed is not.
func TestRamdiskBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("ramdisk build needs the Go toolchain on PATH")
	}
	testenv.RequireTool(t, "grub-mkimage", "grub-common")
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := Run(t.Context(), []string{"ramdisk", "build", "--out", out, "--src", "../.."}, &stdout, &stderr); err != nil {
		t.Fatalf("ramdisk build: %v\n%s", err, stderr.String())
	}
	rd, err := os.ReadFile(filepath.Join(out, "initramfs"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := ramdisk.ReadMarker(bytes.NewReader(rd), int64(len(rd))); err != nil || m.Version != version() {
		t.Errorf("marker %+v, %v; want metalbed-ramdisk %s", m, err, version())
	}
	zr, err := gzip.NewReader(bytes.NewReader(rd))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	var init []byte
	grubFiles := map[string]bool{}
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if dir, name := filepath.Split(rec.Name); filepath.Clean("/"+dir) == disk.GrubImagesDir && rec.FileSize > 0 {
			grubFiles[name] = true
		}
		if rec.Name == "init" {
			init = make([]byte, rec.FileSize)
			if _, err := rec.ReadAt(init, 0); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
		}
	}
	if init == nil {
		t.Fatal("no /init in the archive")
	}
	// GRUB for both modes, when this machine has it (CI installs it).
	for _, f := range []string{disk.GrubBootImg, disk.GrubCoreImg, disk.GrubEFIImg} {
		if !grubFiles[f] {
			t.Errorf("no %s/%s in the archive (have %v); stdout: %s", disk.GrubImagesDir, f, grubFiles, stdout.String())
		}
	}
	if err := ramdisk.CheckStatic(bytes.NewReader(init)); err != nil {
		t.Errorf("/init: %v", err)
	}
	k, err := os.ReadFile(filepath.Join(out, "vmlinuz"))
	if err != nil || len(k) < 1<<20 {
		t.Errorf("vmlinuz: %d bytes, %v", len(k), err)
	}

	var e bytes.Buffer
	err = Run(t.Context(), []string{"ramdisk", "build", "--out", t.TempDir(), "--src", "../..", "--grub-dir", t.TempDir()}, io.Discard, &e)
	if err == nil || !strings.Contains(err.Error()+e.String(), "grub-pc-bin") {
		t.Errorf("ramdisk build without GRUB: %v %s; want an error naming the Debian packages", err, e.String())
	}
	if err := Run(t.Context(), []string{"ramdisk", "build"}, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("ramdisk build without --out: %v, want a usage error", err)
	}
	if err := Run(t.Context(), []string{"ramdisk", "init"}, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("ramdisk init not as PID 1: %v, want a usage error", err)
	}
}
