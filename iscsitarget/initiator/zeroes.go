package initiator

import (
	"context"
	"errors"
	"fmt"
)

// maxSameBlocks is the most blocks one WRITE SAME covers: what metalbed's
// target accepts (its Block Limits page), and well within tgtd's.
const maxSameBlocks = 1 << 16

// zeroIO is the zeros the fallback WRITEs send, shared and never written.
var zeroIO = make([]byte, defaultMaxIOSize)

// WriteZeroesAt makes n bytes at off read back as zeros without sending
// them: WRITE SAME(16) of one zero block over the whole blocks (a thin
// target can keep them as a hole), the partial blocks at either end
// read, patched and written. A target that refuses WRITE SAME(16) gets the
// zeros as ordinary WRITEs, from then on. What an image writer uses for an
// image's zero runs, as qemu-img convert does.
func (s *Session) WriteZeroesAt(off, n int64) error {
	return s.WriteZeroesAtContext(context.Background(), off, n)
}

// WriteZeroesAtContext is WriteZeroesAt bounded by ctx.
func (s *Session) WriteZeroesAtContext(ctx context.Context, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("iscsi: WriteZeroesAt: negative offset or length (%d, %d)", off, n)
	}
	if size := s.Size(); off+n > size {
		return fmt.Errorf("zeroes at %d..%d of a %d-byte LUN: %w", off, off+n, size, ErrOutOfRange)
	}
	bs := int64(s.blockSize)
	start, end := (off+bs-1)/bs*bs, (off+n)/bs*bs
	if end <= start {
		return s.writeZeroBytes(ctx, off, n)
	}
	if start > off {
		if err := s.writeZeroBytes(ctx, off, start-off); err != nil {
			return err
		}
	}
	if err := s.zeroBlocks(ctx, uint64(start/bs), uint64((end-start)/bs)); err != nil {
		return err
	}
	return s.writeZeroBytes(ctx, end, off+n-end)
}

// zeroBlocks zeroes count whole blocks from lba on.
func (s *Session) zeroBlocks(ctx context.Context, lba, count uint64) error {
	block := zeroIO[:s.blockSize]
	for count > 0 && !s.noSame.Load() {
		k := min(count, maxSameBlocks)
		_, err := s.command(ctx, writeSameCmd(lba, uint32(k), block))
		if IsSense(err, SenseIllegalRequest) {
			s.log.Debug("iscsi target refuses WRITE SAME(16); zeros go as WRITEs", "err", err)
			s.noSame.Store(true)
			break
		}
		if err != nil {
			return err
		}
		lba, count = lba+k, count-k
	}
	if count == 0 {
		return nil
	}
	bs := int64(s.blockSize)
	return s.writeZeroBytes(ctx, int64(lba)*bs, int64(count)*bs)
}

// writeZeroBytes writes n zero bytes at off as WRITE commands.
func (s *Session) writeZeroBytes(ctx context.Context, off, n int64) error {
	if n == 0 {
		return nil
	}
	bs := int64(s.blockSize)
	if off%bs != 0 || n%bs != 0 {
		if n > int64(len(zeroIO)) {
			return errors.New("iscsi: unaligned zeroes longer than a transfer") // WriteZeroesAt splits them off
		}
		_, err := s.WriteAtContext(ctx, zeroIO[:n], off)
		return err
	}
	step := int64(len(zeroIO)) / bs * bs
	segs := make([]segment, 0, (n+step-1)/step)
	for o := int64(0); o < n; o += step {
		segs = append(segs, segment{lba: uint64((off + o) / bs), buf: zeroIO[:min(step, n-o)]})
	}
	return s.transfer(ctx, true, segs)
}
