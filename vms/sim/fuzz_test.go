package sim

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/metalbed/metalbed/vms"
)

// memDisk is a disk in memory for firmware tests.
type memDisk []byte

func (d memDisk) Size() int64 { return int64(len(d)) }

func (d memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(d)) {
		return 0, io.EOF
	}
	n := copy(p, d[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d)) {
		return 0, io.ErrShortWrite
	}
	return copy(d[off:], p), nil
}

// FuzzCheckBootable feeds arbitrary disk contents (what a deploy wrote) to
// the firmware's boot-sector and GPT reader: it must never panic or
// allocate without bound.
func FuzzCheckBootable(f *testing.F) {
	for _, seed := range gptDisk(true) {
		f.Add(seed, uint64(2), uint32(4), uint32(128))
	}
	f.Add([]byte{}, uint64(1<<63), uint32(1<<31), uint32(1<<31))
	f.Fuzz(func(t *testing.T, content []byte, lba uint64, count, size uint32) {
		d := make(memDisk, 64<<10)
		copy(d[512:], "EFI PART")
		binary.LittleEndian.PutUint64(d[512+72:], lba)
		binary.LittleEndian.PutUint32(d[512+80:], count)
		binary.LittleEndian.PutUint32(d[512+84:], size)
		copy(d[1024:], content)
		checkBootable(d, vms.UEFI)
		copy(d, content)
		checkBootable(d, vms.BIOS)
		checkBootable(d, vms.UEFI)
	})
}

// FuzzLoadState: a damaged state.json gives an error, never a panic, and
// whatever loads is internally consistent.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"name":"n","uuid":"4f1e5c2a-0000-5000-8000-000000000000","macs":["52:54:00:00:00:01"],"disk_size_bytes":1048576,"boot_mode":"bios","power":"off","boot_flags":"a004000000"}`))
	f.Add([]byte(`{"version":1,`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(dir)
		if err != nil || st == nil {
			return
		}
		_ = st.flags()
		if _, err := parseUUID(st.UUID); err != nil {
			t.Errorf("loaded a state with a bad uuid: %v", err)
		}
	})
}
