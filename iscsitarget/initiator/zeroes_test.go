package initiator

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
)

// countingConn counts the bytes the initiator sends.
type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func countingDialer(sent *atomic.Int64, dial func(context.Context, string) (net.Conn, error)) func(context.Context, string) (net.Conn, error) {
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, sent: sent}, nil
	}
}

// zeroRanges are WriteZeroesAt calls over a disk of zeroesDiskSize: whole
// blocks, unaligned ends, within one block, more than one WRITE SAME
// covers, up to the LUN's end.
var zeroRanges = []struct{ off, n int64 }{
	{0, 64 << 10}, {1000, 3<<20 + 17}, {5<<20 + 3, 100}, {6 << 20, 33 << 20}, {zeroesDiskSize - 700, 700},
}

const zeroesDiskSize = 40 << 20

// checkWriteZeroes fills the LUN with random bytes, zeroes zeroRanges and
// reads it all back against the model; it returns the bytes the zeroing
// sent.
func checkWriteZeroes(t *testing.T, s *Session, sent *atomic.Int64) int64 {
	t.Helper()
	model := randomBytes(21, zeroesDiskSize)
	writeAll(t, s, model, 1<<20)
	before := sent.Load()
	var zeroed int64
	for _, r := range zeroRanges {
		if err := s.WriteZeroesAtContext(t.Context(), r.off, r.n); err != nil {
			t.Fatalf("WriteZeroesAt(%d, %d): %v", r.off, r.n, err)
		}
		clear(model[r.off : r.off+r.n])
		zeroed += r.n
	}
	cost := sent.Load() - before
	got := make([]byte, zeroesDiskSize)
	if _, err := s.ReadAtContext(t.Context(), got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		for i := range got {
			if got[i] != model[i] {
				t.Fatalf("after WriteZeroesAt the LUN differs from the model first at byte %d", i)
			}
		}
	}
	if err := s.WriteZeroesAt(zeroesDiskSize-10, 11); err == nil {
		t.Error("WriteZeroesAt past the LUN's end succeeded")
	}
	t.Logf("zeroed %d bytes in %d ranges sending %d bytes", zeroed, len(zeroRanges), cost)
	return cost
}

// TestWriteZeroesMetalbed: against metalbed's target the zeros do not
// cross the wire (WRITE SAME).
func TestWriteZeroesMetalbed(t *testing.T) {
	checkNoLeak(t)
	m := startMetalbed(t, zeroesDiskSize, nil)
	var sent atomic.Int64
	s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, DialContext: countingDialer(&sent, nil)})
	if cost := checkWriteZeroes(t, s, &sent); cost > 64<<10 {
		t.Errorf("zeroing sent %d bytes: the zeros crossed the wire", cost)
	}
}

// TestWriteZeroesTGTD: the same against Linux tgtd, a target nobody here
// wrote.
func TestWriteZeroesTGTD(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, zeroesDiskSize)
	var sent atomic.Int64
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, DialContext: countingDialer(&sent, nil)})
	if cost := checkWriteZeroes(t, s, &sent); cost > 64<<10 {
		t.Errorf("zeroing sent %d bytes: tgtd refused WRITE SAME(16)?", cost)
	}
	if s.noSame.Load() {
		t.Error("tgtd refused WRITE SAME(16)")
	}
}

// TestWriteZeroesWithoutWriteSame: a target without WRITE SAME(16) gets
// the zeros as WRITEs and the same result.
func TestWriteZeroesWithoutWriteSame(t *testing.T) {
	f := newFake(t, zeroesDiskSize/512)
	var sent atomic.Int64
	s := dialFake(t, f, Config{DialContext: countingDialer(&sent, f.dialer())})
	if cost := checkWriteZeroes(t, s, &sent); cost < 30<<20 {
		t.Errorf("zeroing sent %d bytes to a target without WRITE SAME", cost)
	}
	if !s.noSame.Load() {
		t.Error("the refusal was not remembered")
	}
}
