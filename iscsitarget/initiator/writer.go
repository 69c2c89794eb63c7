package initiator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Writer streams bytes to the LUN from an offset on, keeping up to MaxOutstanding writes of
// MaxIOSize in flight: what an image writer needs, where a plain io.Copy into an
// io.OffsetWriter would send one small command at a time. Write and ReadFrom return as soon
// as the bytes are buffered; a failed write surfaces on a later call and on Close, which
// must be called to flush the last bytes. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Session
	ctx  context.Context
	off  int64  // LUN offset of buf[0]
	buf  []byte // the chunk being filled
	free chan []byte
	wg   sync.WaitGroup

	mu  sync.Mutex
	err error

	closed bool
}

// NewWriter returns a Writer that writes at off and on. ctx bounds every write it issues.
func (s *Session) NewWriter(ctx context.Context, off int64) *Writer {
	chunk := max(s.cfg.MaxIOSize/s.blockSize, 1) * s.blockSize
	w := &Writer{s: s, ctx: ctx, off: off, free: make(chan []byte, s.cfg.MaxOutstanding)}
	for i := 0; i < s.cfg.MaxOutstanding; i++ {
		w.free <- make([]byte, 0, chunk)
	}
	return w
}

func (w *Writer) firstErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// next makes w.buf an empty chunk, waiting for one to come back from flight.
func (w *Writer) next() error {
	if w.buf != nil {
		return nil
	}
	select {
	case b := <-w.free:
		w.buf = b[:0]
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// chunkRoom is how many bytes still fit in w.buf so that chunks end on the chunk grid (an
// unaligned start offset costs one read-modify-write, not one per chunk).
func (w *Writer) chunkRoom() int {
	c := int64(cap(w.buf))
	end := (w.off/c + 1) * c // next grid boundary after w.off
	return int(end-w.off) - len(w.buf)
}

// send puts w.buf in flight.
func (w *Writer) send() {
	b, off := w.buf, w.off
	w.buf = nil
	w.off += int64(len(b))
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if _, err := w.s.WriteAtContext(w.ctx, b, off); err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("write of %d bytes at %d: %w", len(b), off, err)
			}
			w.mu.Unlock()
		}
		w.free <- b[:0]
	}()
}

// Write buffers p, sending each full chunk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	n := 0
	for len(p) > 0 {
		if err := w.firstErr(); err != nil {
			return n, err
		}
		if err := w.next(); err != nil {
			return n, err
		}
		k := min(len(p), w.chunkRoom())
		w.buf = append(w.buf, p[:k]...)
		n += k
		p = p[k:]
		if w.chunkRoom() == 0 {
			w.send()
		}
	}
	return n, w.firstErr()
}

// ReadFrom reads r to its end straight into the chunks (io.Copy uses it).
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if w.closed {
		return 0, ErrClosed
	}
	var total int64
	for {
		if err := w.firstErr(); err != nil {
			return total, err
		}
		if err := w.next(); err != nil {
			return total, err
		}
		room := w.chunkRoom()
		m, err := r.Read(w.buf[len(w.buf) : len(w.buf)+room])
		w.buf = w.buf[:len(w.buf)+m]
		total += int64(m)
		if w.chunkRoom() == 0 {
			w.send()
		}
		if errors.Is(err, io.EOF) {
			return total, w.firstErr()
		}
		if err != nil {
			return total, err
		}
	}
}

// Close sends the buffered bytes, waits for every write in flight and returns the first
// error. It does not close the Session, nor flush the target's cache (see Session.Sync).
func (w *Writer) Close() error {
	if w.closed {
		return w.firstErr()
	}
	w.closed = true
	if len(w.buf) > 0 && w.firstErr() == nil {
		w.send()
	}
	w.wg.Wait()
	return w.firstErr()
}
