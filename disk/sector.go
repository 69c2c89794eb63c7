package disk

import (
	"fmt"
	"io"
)

// sectorDisk turns every access into whole 512-byte sectors, so the
// underlying disk (an iSCSI LUN, where READ/WRITE move whole blocks) never
// sees a partial one: unaligned reads read the covering sectors, unaligned
// writes read, modify and write them back. Aligned accesses pass through.
type sectorDisk struct {
	r    io.ReaderAt
	w    io.WriterAt // nil for read-only use
	size int64
}

func aligned(off int64, n int) bool { return off%SectorSize == 0 && n%SectorSize == 0 }

func (s *sectorDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := len(p)
	var err error
	if int64(want) > s.size-off {
		p, err = p[:s.size-off], io.EOF
	}
	if aligned(off, len(p)) {
		n, rerr := s.r.ReadAt(p, off)
		if rerr != nil {
			return n, rerr
		}
		return n, err
	}
	start := off / SectorSize * SectorSize
	end := (off + int64(len(p)) + SectorSize - 1) / SectorSize * SectorSize
	buf := make([]byte, end-start)
	if _, rerr := s.r.ReadAt(buf, start); rerr != nil {
		return 0, rerr
	}
	n := copy(p, buf[off-start:])
	return n, err
}

func (s *sectorDisk) WriteAt(p []byte, off int64) (int, error) {
	if s.w == nil {
		return 0, fmt.Errorf("disk is read-only")
	}
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("write of %d bytes at %d beyond the %d-byte disk", len(p), off, s.size)
	}
	if aligned(off, len(p)) {
		return s.w.WriteAt(p, off)
	}
	start := off / SectorSize * SectorSize
	end := (off + int64(len(p)) + SectorSize - 1) / SectorSize * SectorSize
	// Read only the partial sectors at either end; the middle is replaced.
	buf := make([]byte, end-start)
	if _, err := s.r.ReadAt(buf[:SectorSize], start); err != nil {
		return 0, fmt.Errorf("read-modify-write at %d: %w", start, err)
	}
	if end-start > SectorSize {
		if _, err := s.r.ReadAt(buf[len(buf)-SectorSize:], end-SectorSize); err != nil {
			return 0, fmt.Errorf("read-modify-write at %d: %w", end-SectorSize, err)
		}
	}
	copy(buf[off-start:], p)
	if _, err := s.w.WriteAt(buf, start); err != nil {
		return 0, err
	}
	return len(p), nil
}

// zeroMiB is zeros, never written: what WriteZeroesAt writes where the
// disk below cannot write zeroes itself, and what WriteSparse compares
// units with.
var zeroMiB [1 << 20]byte

// WriteZeroesAt passes whole sectors of zeroes on to a disk that writes
// zeroes itself (an iSCSI LUN's WRITE SAME) and writes them as bytes
// otherwise.
func (s *sectorDisk) WriteZeroesAt(off, n int64) error {
	if s.w == nil {
		return fmt.Errorf("disk is read-only")
	}
	if off < 0 || n < 0 || off+n > s.size {
		return fmt.Errorf("zeroes of %d bytes at %d beyond the %d-byte disk", n, off, s.size)
	}
	if zw, ok := s.w.(zeroWriter); ok && off%SectorSize == 0 && n%SectorSize == 0 {
		return zw.WriteZeroesAt(off, n)
	}
	for done := int64(0); done < n; {
		k := min(n-done, int64(len(zeroMiB)))
		if _, err := s.WriteAt(zeroMiB[:k], off+done); err != nil {
			return err
		}
		done += k
	}
	return nil
}
