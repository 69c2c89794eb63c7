package disk

import (
	"bytes"
	"fmt"
	"testing"
)

// zeroingDisk is a memDisk that can write zeroes, recording what crossed
// to it.
type zeroingDisk struct {
	memDisk
	written, zeroed int64
	calls           []string
}

func (d *zeroingDisk) WriteAt(p []byte, off int64) (int, error) {
	d.written += int64(len(p))
	d.calls = append(d.calls, fmt.Sprintf("write %d+%d", off, len(p)))
	return d.memDisk.WriteAt(p, off)
}

func (d *zeroingDisk) WriteZeroesAt(off, n int64) error {
	if off%SectorSize != 0 || n%SectorSize != 0 {
		return fmt.Errorf("zeroes at %d+%d: not whole sectors", off, n)
	}
	d.zeroed += n
	d.calls = append(d.calls, fmt.Sprintf("zero %d+%d", off, n))
	clear(d.memDisk[off : off+n])
	return nil
}

// TestWriteSparse: the zero runs of whole 64 KiB units go as zeroes, the
// rest as bytes, and the disk ends up holding exactly p, whatever it held
// and wherever p lands.
func TestWriteSparse(t *testing.T) {
	const unit = zeroUnit
	p := make([]byte, 10*unit+300)
	copy(p[5:], "boot sector")
	p[3*unit+7] = 1 // unit 3 has data
	p[7*unit-1] = 2 // unit 6 ends in data
	p[len(p)-3] = 3 // the ragged end
	for _, off := range []int64{0, SectorSize, unit, 3*unit + 1536} {
		d := &zeroingDisk{memDisk: bytes.Repeat([]byte{0xee}, int(off)+len(p)+unit)}
		if err := WriteSparse(d, p, off); err != nil {
			t.Fatalf("at %d: %v", off, err)
		}
		if !bytes.Equal(d.memDisk[off:off+int64(len(p))], p) {
			t.Fatalf("at %d: the disk does not hold p (%v)", off, d.calls)
		}
		outside := append(bytes.Clone(d.memDisk[:off]), d.memDisk[off+int64(len(p)):]...)
		if len(bytes.Trim(outside, "\xee")) != 0 {
			t.Fatalf("at %d: bytes outside p changed (%v)", off, d.calls)
		}
		if d.written+d.zeroed != int64(len(p)) {
			t.Errorf("at %d: %d written + %d zeroed for %d bytes (%v)", off, d.written, d.zeroed, len(p), d.calls)
		}
		if d.zeroed < 5*unit {
			t.Errorf("at %d: only %d bytes went as zeroes (%v)", off, d.zeroed, d.calls)
		}
		t.Logf("at %d: %v", off, d.calls)
	}
	// A disk without WriteZeroesAt gets p whole.
	m := memDisk(make([]byte, len(p)))
	if err := WriteSparse(m, p, 0); err != nil || !bytes.Equal(m, p) {
		t.Fatalf("plain disk: %v", err)
	}
}

// TestDeployWholeDiskImageSendsZeroRunsAsZeroes: the deploy's sector
// layer passes zero runs through to a disk that writes zeroes (the iSCSI
// LUN): an image of zeros and a partition table crosses as zeroes but for
// its data, and the disk holds the image.
func TestDeployWholeDiskImageSendsZeroRunsAsZeroes(t *testing.T) {
	img := make([]byte, 4<<20)
	img[510], img[511] = 0x55, 0xaa
	copy(img[2<<20:], "data in the middle")
	d := &zeroingDisk{memDisk: bytes.Repeat([]byte{0xee}, 8<<20)}
	if _, err := DeployWholeDiskImage(t.Context(), d, int64(len(d.memDisk)), memDisk(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.memDisk[:len(img)], img) {
		t.Fatal("the disk does not hold the image")
	}
	if d.written > 2*zeroUnit+64<<10 || d.zeroed < int64(len(img))-2*zeroUnit {
		t.Errorf("%d bytes written, %d zeroed, for an image of two 64 KiB units of data: %v", d.written, d.zeroed, d.calls)
	}
	// A disk that cannot write zeroes gets them as bytes.
	m := memDisk(bytes.Repeat([]byte{0xee}, 8<<20))
	if _, err := DeployWholeDiskImage(t.Context(), m, int64(len(m)), memDisk(img), int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m[:len(img)], img) {
		t.Fatal("the plain disk does not hold the image")
	}
}
