package initiator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// onlyReader hides bytes.Reader's WriterTo so that io.Copy goes through ReadFrom.
type onlyReader struct{ io.Reader }

func TestWriterStreams(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 16384)
	s := dialFake(t, f, Config{MaxIOSize: 128 << 10, MaxOutstanding: 4})
	data := randomBytes(40, 3<<20+123)

	w := s.NewWriter(t.Context(), 1000)
	if n, err := io.Copy(w, onlyReader{bytes.NewReader(data)}); err != nil || n != int64(len(data)) {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.disk[1000:1000+len(data)], data) {
		t.Fatal("disk differs after io.Copy through the Writer")
	}

	more := randomBytes(41, 1<<20+77)
	w = s.NewWriter(t.Context(), 5<<20+3)
	for p := more; len(p) > 0; {
		k := min(len(p), 4099)
		if n, err := w.Write(p[:k]); err != nil || n != k {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.disk[5<<20+3:5<<20+3+len(more)], more) {
		t.Fatal("disk differs after small Writes")
	}
	if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestWriterReportsFailure(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 16384)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if lba, n := rwRange(cmd.CDB()); cmd.CDB()[0] == opWrite10 && lba <= 2000 && 2000 < lba+n {
			f.respond(cmd, statusCheckCondition, fixedSense(SenseMediumError, 0x0c, 0))
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{MaxIOSize: 64 << 10})
	w := s.NewWriter(t.Context(), 0)
	_, err := io.Copy(w, onlyReader{bytes.NewReader(make([]byte, 4<<20))})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if !IsSense(err, SenseMediumError) {
		t.Fatalf("error %v, want the MEDIUM ERROR", err)
	}
}

func TestWriterCancelled(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 16384)
	s := dialFake(t, f, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	w := s.NewWriter(ctx, 0)
	cancel()
	_, err := io.Copy(w, onlyReader{bytes.NewReader(make([]byte, 4<<20))})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestTGTDWriterImage(t *testing.T) {
	checkNoLeak(t)
	const size = 64 << 20
	d := startTGTD(t, size)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	img := randomBytes(42, size-4096-10)
	w := s.NewWriter(t.Context(), 4096)
	if _, err := io.Copy(w, onlyReader{bytes.NewReader(img)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(img))
	if _, err := s.ReadAt(got, 4096); err != nil || sha256.Sum256(got) != sha256.Sum256(img) {
		t.Fatalf("read back: %v", err)
	}
}
