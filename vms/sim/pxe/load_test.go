package pxe

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// TestLoad: a loaded file keeps its head, size and SHA-256 and what
// unpacking it found — a real kernel is no initramfs, metalbed's ramdisk
// is one — not its bytes; a transfer that breaks off is an error.
func TestLoad(t *testing.T) {
	kernel, initrd := realKernel(t), realRamdisk(t)
	k, err := Load("vmlinuz", iotest.HalfReader(bytes.NewReader(kernel)))
	if err != nil {
		t.Fatal(err)
	}
	if k.Size != int64(len(kernel)) || k.Sum != Checksum(kernel) || len(k.Head) != HeadSize || k.Whole() {
		t.Errorf("kernel: %d bytes, head %d, whole %v", k.Size, len(k.Head), k.Whole())
	}
	if err := CheckBzImage(k.Head); err != nil {
		t.Errorf("kernel head: %v", err)
	}
	if k.Initramfs != nil || !errors.Is(k.NotInitramfs, ramdisk.ErrNotRamdisk) {
		t.Errorf("a kernel unpacked as an initramfs: %v", k.NotInitramfs)
	}

	rd := LoadBytes("deploy_ramdisk", initrd)
	if rd.Initramfs == nil || rd.Initramfs.Marker.Version != "test" || rd.Sum != Checksum(initrd) || !rd.Whole() {
		t.Errorf("ramdisk: %+v, %v", rd.Initramfs, rd.NotInitramfs)
	}

	broken := io.MultiReader(bytes.NewReader(initrd[:len(initrd)/2]), iotest.ErrReader(errors.New("connection reset")))
	if _, err := Load("deploy_ramdisk", broken); err == nil || err.Error() != "connection reset" {
		t.Errorf("a broken transfer: %v", err)
	}
}
