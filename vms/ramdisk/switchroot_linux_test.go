package ramdisk

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestParseInstanceRoot(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    InstanceRoot
		ok      bool
	}{
		{"root=UUID=6CE56DBB-d753-4fee-8382-72a5bb9e6f9d ro text console=ttyS0", InstanceRoot{UUID: "6ce56dbb-d753-4fee-8382-72a5bb9e6f9d", ReadOnly: true}, true},
		{"root=UUID=abc rw init=/bin/sh", InstanceRoot{UUID: "abc", Init: "/bin/sh"}, true},
		{"root=/dev/vda1 ro", InstanceRoot{ReadOnly: true}, false},
		// The deploy ramdisk's own boots are never instance boots.
		{"root=UUID=abc deployment_id=1234 iscsi_target_iqn=x", InstanceRoot{}, false},
		{"root=UUID=abc ipa-api-url=http://10.0.0.1:6385", InstanceRoot{}, false},
	} {
		got, ok := ParseInstanceRoot(tc.cmdline)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseInstanceRoot(%q) = %+v, %v; want %+v, %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

// TestExtUUID reads the UUID of file systems e2fsprogs made.
func TestExtUUID(t *testing.T) {
	mkfs := testenv.RequireTool(t, "mkfs.ext4", "e2fsprogs")
	const uuid = "0f0e0d0c-0b0a-4908-8706-050403020100"
	for _, tc := range []struct{ prog, fstype string }{{mkfs, "ext4"}, {mkfs[:len(mkfs)-1] + "2", "ext2"}} {
		img := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 8<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(tc.prog, "-q", "-F", "-U", uuid, img).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.prog, err, out)
		}
		got, fstype, ok := extUUID(img)
		if !ok || got != uuid || fstype != tc.fstype {
			t.Errorf("%s: extUUID = %q, %q, %v; want %q, %q", tc.prog, got, fstype, ok, uuid, tc.fstype)
		}
	}
	// Not a file system.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, make([]byte, 4096), 0o644)
	if _, _, ok := extUUID(junk); ok {
		t.Error("extUUID found a file system in zeros")
	}
}
