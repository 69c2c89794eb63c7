package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestImageBuild(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("METALBED_INTEROP") == "required" {
				t.Fatalf("%s missing", tool)
			}
			t.Skipf("%s missing (e2fsprogs / Go toolchain)", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "p.img")
	var stdout, stderr bytes.Buffer
	if err := Run(t.Context(), []string{"image", "build", "--kind", "partition", "--size-mb", "48", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) < 4 || lines[0] != "file: "+out || lines[1] != "size: 50331648" ||
		!strings.HasPrefix(lines[2], "md5: ") || lines[3] != "sha256: "+hex.EncodeToString(sum[:]) {
		t.Fatalf("output:\n%s", stdout.String())
	}
}

// TestImageBuildWholeDiskLoader builds whole-disk images with GRUB and with
// the placeholder, and fails naming the Debian packages without GRUB.
func TestImageBuildWholeDiskLoader(t *testing.T) {
	testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	testenv.RequireTool(t, "grub-mkimage", "grub-common")
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boot-mode", "uefi"}, "boot_loader: grub"},
		{[]string{"--boot-mode", "bios", "--placeholder-loader"}, "boot_loader: metalbed"},
		{[]string{"--boot-mode", "bios", "--grub-dir", t.TempDir()}, "grub-pc-bin"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"image", "build", "--kind", "whole-disk", "--size-mb", "160", "--out", filepath.Join(dir, "d.img")}, c.args...)
		err := Run(t.Context(), args, &stdout, &stderr)
		if got := stdout.String() + stderr.String() + fmt.Sprint(err); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q lacks %q", c.args, got, c.want)
		}
	}
}

func TestImageBuildUsage(t *testing.T) {
	for _, args := range [][]string{
		{"image", "build", "--out", "x"},
		{"image", "build", "--kind", "iso", "--out", "x"},
		{"image", "build", "--kind", "partition"},
		{"image", "build", "--kind", "whole-disk", "--boot-mode", "efi", "--out", "x"},
	} {
		var o, e bytes.Buffer
		if err := Run(t.Context(), args, &o, &e); ExitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, ExitCode(err), err)
		}
	}
}
