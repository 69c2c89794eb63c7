package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
