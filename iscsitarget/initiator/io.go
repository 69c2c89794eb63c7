package initiator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReadAt reads len(p) bytes at off (io.ReaderAt). Reads past the end of the LUN return the
// bytes before it and io.EOF.
func (s *Session) ReadAt(p []byte, off int64) (int, error) {
	return s.ReadAtContext(context.Background(), p, off)
}

// WriteAt writes p at off (io.WriterAt). Bytes past the end of the LUN are not written and
// the error wraps ErrOutOfRange. Partial blocks at either end are read, patched and written.
func (s *Session) WriteAt(p []byte, off int64) (int, error) {
	return s.WriteAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt bounded by ctx.
func (s *Session) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("iscsi: ReadAt: negative offset")
	}
	size := s.Size()
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p, eof = p[:size-off], io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.rangeIO(ctx, false, p, off); err != nil {
		return 0, err
	}
	return len(p), eof
}

// WriteAtContext is WriteAt bounded by ctx.
func (s *Session) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("iscsi: WriteAt: negative offset")
	}
	size := s.Size()
	if len(p) == 0 {
		return 0, nil
	}
	if off >= size {
		return 0, fmt.Errorf("write at %d of a %d-byte LUN: %w", off, size, ErrOutOfRange)
	}
	var short error
	if int64(len(p)) > size-off {
		p = p[:size-off]
		short = fmt.Errorf("write at %d of a %d-byte LUN: %w", size, size, ErrOutOfRange)
	}
	if err := s.rangeIO(ctx, true, p, off); err != nil {
		return 0, err
	}
	return len(p), short
}

// segment is a block-aligned run of the LUN and the buffer holding it.
type segment struct {
	lba uint64
	buf []byte
}

// rangeIO reads or writes p at off within the LUN, any alignment.
func (s *Session) rangeIO(ctx context.Context, write bool, p []byte, off int64) error {
	bs := int64(s.blockSize)
	end := off + int64(len(p))
	if off%bs == 0 && end%bs == 0 {
		return s.transfer(ctx, write, []segment{{lba: uint64(off / bs), buf: p}})
	}
	headLBA, tailLBA := off/bs, (end-1)/bs
	var edges []segment // the partial blocks at either end, as whole blocks
	if off%bs != 0 {
		edges = append(edges, segment{lba: uint64(headLBA), buf: make([]byte, bs)})
	}
	if end%bs != 0 && (tailLBA != headLBA || off%bs == 0) {
		edges = append(edges, segment{lba: uint64(tailLBA), buf: make([]byte, bs)})
	}
	var mid []segment
	if ms, me := (off+bs-1)/bs*bs, end/bs*bs; me > ms {
		mid = append(mid, segment{lba: uint64(ms / bs), buf: p[ms-off : me-off]})
	}
	if !write {
		if err := s.transfer(ctx, false, append(mid, edges...)); err != nil {
			return err
		}
		patch(edges, p, off, bs, false)
		return nil
	}
	// Read-modify-write of the partial blocks, then one write of everything.
	if err := s.transfer(ctx, false, edges); err != nil {
		return fmt.Errorf("read-modify-write: %w", err)
	}
	patch(edges, p, off, bs, true)
	return s.transfer(ctx, true, append(mid, edges...))
}

// patch copies between whole edge blocks and the unaligned caller buffer p (at off).
func patch(edges []segment, p []byte, off, bs int64, intoBlocks bool) {
	end := off + int64(len(p))
	for _, e := range edges {
		bstart := int64(e.lba) * bs
		lo, hi := max(off, bstart), min(end, bstart+bs)
		blk := e.buf[lo-bstart : hi-bstart]
		usr := p[lo-off : hi-off]
		if intoBlocks {
			copy(blk, usr)
		} else {
			copy(usr, blk)
		}
	}
}

// transfer runs the segments as READ or WRITE commands of at most MaxIOSize each, up to
// MaxOutstanding at once. The first failure cancels the commands not yet sent.
func (s *Session) transfer(ctx context.Context, write bool, segs []segment) error {
	bs := s.blockSize
	step := max(s.cfg.MaxIOSize/bs, 1) * bs
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		firstErr    error
		firstIsOurs bool
		errOff      = int64(-1)
	)
	limit := make(chan struct{}, s.cfg.MaxOutstanding)
	var seq int64
	for _, sg := range segs {
		for o := 0; o < len(sg.buf); o += step {
			buf := sg.buf[o:min(o+step, len(sg.buf))]
			lba := sg.lba + uint64(o/bs)
			order := seq
			seq++
			select {
			case limit <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-limit }()
				err := s.blockIO(ctx, write, lba, buf)
				if err != nil {
					mu.Lock()
					// A command cancelled because another failed does not hide that failure.
					ours := errors.Is(err, context.Canceled) && parent.Err() == nil
					if errOff < 0 || (order < errOff && !ours) || (firstIsOurs && !ours) {
						firstErr, errOff, firstIsOurs = err, order, ours
					}
					mu.Unlock()
					cancel()
				}
			}()
		}
	}
	wg.Wait()
	if firstErr == nil && parent.Err() != nil {
		return parent.Err()
	}
	return firstErr
}

func (s *Session) blockIO(ctx context.Context, write bool, lba uint64, buf []byte) error {
	blocks := uint32(len(buf) / s.blockSize)
	n, err := s.command(ctx, rwCmd(write, lba, blocks, buf))
	if err != nil {
		return err
	}
	if n < len(buf) {
		return fmt.Errorf("%s: target moved %d of %d bytes", rwCmd(write, lba, blocks, nil).name, n, len(buf))
	}
	return nil
}

// Sync asks the target to write its cache to the medium (SYNCHRONIZE CACHE of the whole
// LUN), falling back to the other CDB size when the target refuses the first.
func (s *Session) Sync(ctx context.Context) error {
	sixteen := s.blocks > 0xffffffff
	_, err := s.command(ctx, syncCacheCmd(sixteen))
	if IsSense(err, SenseIllegalRequest) {
		_, err = s.command(ctx, syncCacheCmd(!sixteen))
	}
	return err
}
