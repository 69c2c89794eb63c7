package pxe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"
	"time"

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

// bigRamdisk is a metalbed ramdisk whose /init is 2 MiB of random bytes:
// it spans hundreds of transfer blocks.
func bigRamdisk(t *testing.T, version string) []byte {
	t.Helper()
	init := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{1}).Read(init)
	path := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(path, append([]byte("\x7fELF"), init...), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ramdisk.BuildInitramfs(&b, ramdisk.ImageConfig{Init: path, Version: version}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chunked writes b to l in blocks of size n (the last shorter), as a
// transfer hands them.
func chunked(l *loading, b []byte, n int) {
	for off := 0; off < len(b); off += n {
		l.Write(b[off:min(off+n, len(b))])
	}
}

// found is what unpacking a loaded file found, for comparing.
func found(f File) string {
	if f.Initramfs != nil {
		return fmt.Sprintf("initramfs %s, bootloaders %v", f.Initramfs.Marker.Version, f.Initramfs.Bootloaders.Err)
	}
	return "not an initramfs: " + f.NotInitramfs.Error()
}

// TestUnpackerFindsWhatAMachineAloneFinds: files loaded at once by many
// machines through one Unpacker — the same ramdisk, another version, one
// with a byte changed in the middle, one cut short, one with bytes added,
// a kernel — each find what loading it alone finds, whatever the block
// sizes and the order.
func TestUnpackerFindsWhatAMachineAloneFinds(t *testing.T) {
	big := bigRamdisk(t, "v1")
	flipped := bytes.Clone(big)
	flipped[len(flipped)/2] ^= 0xff
	files := map[string][]byte{
		"same":    big,
		"other":   bigRamdisk(t, "v2"),
		"flipped": flipped,
		"short":   big[:len(big)/2],
		"long":    append(bytes.Clone(big), "trailing bytes"...),
		"kernel":  realKernel(t),
	}
	// A kernel is no initramfs, found from its first bytes; so are a
	// kernel cut short and a few bytes of one.
	files["kernel half"], files["kernel head"] = files["kernel"][:len(files["kernel"])/2], files["kernel"][:3]
	want := map[string]string{}
	for name, b := range files {
		alone, err := Load("deploy_ramdisk", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = found(alone)
	}
	if want["same"] != "initramfs v1, bootloaders <nil>" || want["flipped"] == want["same"] || want["short"] == want["same"] {
		t.Fatalf("the variants alone: %v", want)
	}
	u := NewUnpacker(2)
	var wg sync.WaitGroup
	blocks := []int{1432, 4096, 32 << 10, 1 << 20}
	for i := range 4 {
		for name, b := range files {
			wg.Go(func() {
				l := newLoading("deploy_ramdisk", u)
				chunked(l, b, blocks[(i+len(name))%len(blocks)])
				f, err := l.finish(nil)
				if got := found(f); err != nil || got != want[name] || f.Sum != Checksum(b) || f.Size != int64(len(b)) {
					t.Errorf("%s (%d-byte blocks): %s (err %v), alone %s", name, blocks[(i+len(name))%len(blocks)], got, err, want[name])
				}
			})
		}
	}
	wg.Wait()
}

// TestUnpackerUnpacksOnce: two machines loading the same ramdisk at once,
// block by block, and a third after them share one unpacking; of a kernel
// only the bytes read to find it is no initramfs are held; a loading
// whose transfer breaks off leaves nothing behind.
func TestUnpackerUnpacksOnce(t *testing.T) {
	b := bigRamdisk(t, "v1")
	u := NewUnpacker(1)
	l1, l2 := newLoading("deploy_ramdisk", u), newLoading("deploy_ramdisk", u)
	for off := 0; off < len(b); off += 1432 {
		l1.Write(b[off:min(off+1432, len(b))])
		l2.Write(b[off:min(off+1432, len(b))])
	}
	f1, err1 := l1.finish(nil)
	f2, err2 := l2.finish(nil)
	l3 := newLoading("deploy_ramdisk", u)
	chunked(l3, b, 32<<10)
	f3, err3 := l3.finish(nil)
	if err1 != nil || err2 != nil || err3 != nil || f1.Initramfs == nil {
		t.Fatalf("loads: %v %v %v, %s", err1, err2, err3, found(f1))
	}
	if f1.Initramfs != f2.Initramfs || f1.Initramfs != f3.Initramfs || len(u.files) != 1 {
		t.Errorf("three loads of one ramdisk were unpacked apart (%d files held)", len(u.files))
	}

	// A kernel: what was read of it to find it is no initramfs is held,
	// not the whole.
	k := realKernel(t)
	for range 2 {
		l := newLoading("vmlinuz", u)
		chunked(l, k, 32<<10)
		if f, err := l.finish(nil); err != nil || f.Initramfs != nil {
			t.Fatalf("kernel: %v, %s", err, found(f))
		}
	}
	for _, s := range u.files {
		if s.name == "vmlinuz" && s.buf.n > 64<<10 {
			t.Errorf("%d bytes of the kernel held", s.buf.n)
		}
	}

	// Files of their own, each told no initramfs from its first bytes,
	// are not all kept.
	for i := range 3 * keepFiles {
		l := newLoading("vmlinuz", u)
		chunked(l, append([]byte{byte(i)}, k[1:200<<10]...), 32<<10)
		l.finish(nil)
	}
	if len(u.files) > keepFiles {
		t.Errorf("%d files held, want at most %d", len(u.files), keepFiles)
	}

	u = NewUnpacker(1)
	l := newLoading("deploy_ramdisk", u)
	chunked(l, b[:len(b)/2], 1432)
	s := l.s
	if _, err := l.finish(errors.New("connection reset")); err == nil {
		t.Fatal("a broken transfer loaded")
	}
	select {
	case <-s.parsed:
	case <-time.After(10 * time.Second):
		t.Fatal("the unpacking of an abandoned file still waits for bytes")
	}
	if len(u.files) != 0 {
		t.Errorf("%d files held after the only loading broke off", len(u.files))
	}
}
