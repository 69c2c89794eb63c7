package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDiskWriteZeroesPunchesHoles: zeroes on a machine's disk (an iSCSI
// WRITE SAME of a zero block, an image's zero runs) leave a hole where
// data was, read back as zeros, and stay within the disk.
func TestDiskWriteZeroesPunchesHoles(t *testing.T) {
	const size = 8 << 20
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xab}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	allocated := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := allocated()
	rd := &runDisk{path: path, size: size, rate: 1} // 1 B/s: zeroes must not be throttled
	defer rd.detach()
	for _, z := range []interface {
		WriteZeroesAt(off, n int64) error
	}{rd, fileDisk{path: path, size: size}} {
		if err := z.WriteZeroesAt(size-1, 2); err == nil {
			t.Errorf("%T: zeroes past the end succeeded", z)
		}
	}
	if err := rd.WriteZeroesAt(1<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := (fileDisk{path: path, size: size}).WriteZeroesAt(6<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xab}, size)
	clear(want[1<<20 : 5<<20])
	clear(want[6<<20 : 7<<20])
	if !bytes.Equal(got, want) {
		t.Fatal("the disk does not read back zeros exactly where they were written")
	}
	after := allocated()
	t.Logf("allocated %d -> %d bytes", before, after)
	if before-after < 4<<20 {
		t.Errorf("allocated %d -> %d bytes: no hole punched", before, after)
	}
}
