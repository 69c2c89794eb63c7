package initiator

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/internal/fault/faulttest"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/iscsitarget/iscsitest"
)

// metalbedTarget is metalbed's own target serving a fresh file on 127.0.0.1:0.
type metalbedTarget struct {
	addr string
	iqn  string
	file string
	tg   *iscsitarget.Target
}

func startMetalbed(t testing.TB, size int64, mod func(*iscsitarget.Config)) *metalbedTarget {
	t.Helper()
	file := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	cfg := iscsitarget.Config{IQN: "iqn.2024-01.io.metalbed.test:" + sanitize(t.Name()), Disk: f}
	if mod != nil {
		mod(&cfg)
	}
	tg, addr := iscsitest.Serve(t, cfg)
	return &metalbedTarget{addr: addr, iqn: cfg.IQN, file: file, tg: tg}
}

func TestMetalbedRoundTrip256MiB(t *testing.T) {
	checkNoLeak(t)
	const size = 256 << 20
	m := startMetalbed(t, size, nil)
	roundTrip(t, "metalbed", m.addr, m.iqn, m.file, 11, size)
	eventually(t, 5*time.Second, "the target to drop the session", func() bool { return m.tg.Sessions() == 0 })
}

func TestMetalbedUnalignedAndDigests(t *testing.T) {
	checkNoLeak(t)
	const size = 4 << 20
	m := startMetalbed(t, size, nil)
	s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, HeaderDigest: true, DataDigest: true, MaxIOSize: 64 << 10})
	t.Logf("digests: header %v data %v", s.params.headerDigest, s.params.dataDigest)
	model := randomBytes(12, size)
	writeAll(t, s, model, 1<<20)
	for i, w := range []struct {
		off int64
		n   int
	}{{1, 10}, {511, 2}, {513, 100000}, {size - 700, 700}, {4095, 4097}, {12345, 1}} {
		p := randomBytes(uint64(200+i), w.n)
		if n, err := s.WriteAt(p, w.off); err != nil || n != w.n {
			t.Fatalf("WriteAt(%d at %d) = %d, %v", w.n, w.off, n, err)
		}
		copy(model[w.off:], p)
		got := make([]byte, w.n+20)
		lo := max(0, w.off-10)
		n, _ := s.ReadAt(got, lo)
		if !bytes.Equal(got[:n], model[lo:lo+int64(n)]) {
			t.Fatalf("ReadAt around WriteAt(%d at %d) differs", w.n, w.off)
		}
	}
	if got, want := sumFile(t, m.file, size), sha256.Sum256(model); got != want {
		t.Fatal("backing file differs from the model")
	}
}

func TestMetalbedCHAP(t *testing.T) {
	checkNoLeak(t)
	m := startMetalbed(t, 1<<20, func(c *iscsitarget.Config) {
		c.CHAP = iscsitarget.CHAP{Username: "deployer", Secret: "secret-12345",
			MutualUsername: "target-side", MutualSecret: "mutual-secret-1"}
	})
	good := CHAP{Username: "deployer", Secret: "secret-12345"}
	dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, CHAP: good})
	dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, CHAP: good,
		MutualCHAP: CHAP{Username: "target-side", Secret: "mutual-secret-1"}})
	_, err := Dial(t.Context(), Config{Addr: m.addr, TargetIQN: m.iqn, CHAP: CHAP{Username: "deployer", Secret: "wrong-secret-1"}})
	if !AuthFailed(err) {
		t.Fatalf("wrong secret: %v", err)
	}
	t.Logf("wrong secret: %v", err)
	_, err = Dial(t.Context(), Config{Addr: m.addr, TargetIQN: m.iqn, CHAP: good,
		MutualCHAP: CHAP{Username: "target-side", Secret: "not-the-secret"}})
	if err == nil {
		t.Fatal("mutual CHAP with the wrong secret succeeded")
	}
	if _, err := Dial(t.Context(), Config{Addr: m.addr, TargetIQN: m.iqn}); err == nil {
		t.Fatal("login without CHAP succeeded")
	}
}

func TestMetalbedIdleNOP(t *testing.T) {
	checkNoLeak(t)
	m := startMetalbed(t, 1<<20, func(c *iscsitarget.Config) {
		c.NopInterval = 100 * time.Millisecond
		c.NopTimeout = 2 * time.Second
	})
	s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, KeepAlive: -1})
	eventually(t, 20*time.Second, "target NOP-In pings answered", func() bool { return s.nopReplies.Load() >= 5 })
	p := randomBytes(13, 4096)
	if _, err := s.WriteAt(p, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := s.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("ReadAt after idle: %v", err)
	}
	if m.tg.Sessions() != 1 {
		t.Fatalf("target has %d sessions", m.tg.Sessions())
	}
}

func TestMetalbedDiscover(t *testing.T) {
	checkNoLeak(t)
	m := startMetalbed(t, 1<<20, nil)
	names, err := Discover(t.Context(), m.addr)
	if err != nil || len(names) != 1 || names[0] != m.iqn {
		t.Fatalf("Discover = %q, %v", names, err)
	}
}

func TestMetalbedMediumError(t *testing.T) {
	checkNoLeak(t)
	m := startMetalbed(t, 1<<20, func(c *iscsitarget.Config) {
		c.Faults = faulttest.New(t, fault.Rule{Layer: fault.ISCSI, Op: "write", Action: "medium-error", Count: 1})
	})
	s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn})
	_, err := s.WriteAt(make([]byte, 4096), 64*512)
	if !IsSense(err, SenseMediumError) {
		t.Fatalf("write over the faulty block: %v", err)
	}
	t.Logf("error: %v", err)
	if _, err := s.WriteAt(make([]byte, 4096), 64*512); err != nil {
		t.Fatal(err)
	}
}

// TestMetalbedTooSmall: layer disk "too-small" (op "size") makes the
// target report Arg bytes, when fewer than the disk's; by default 512 MiB,
// more than this disk, so nothing changes.
func TestMetalbedTooSmall(t *testing.T) {
	checkNoLeak(t)
	for arg, want := range map[string]int64{"1048576": 1 << 20, "": 4 << 20} {
		m := startMetalbed(t, 4<<20, func(c *iscsitarget.Config) {
			c.Faults = faulttest.New(t, fault.Rule{Layer: fault.Disk, Op: "size", Action: "too-small", Arg: arg})
		})
		s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn})
		if s.Size() != want {
			t.Errorf("arg %q: size %d, want %d", arg, s.Size(), want)
		}
	}
}

func TestMetalbed4KBlocks(t *testing.T) {
	checkNoLeak(t)
	const size = 2 << 20
	m := startMetalbed(t, size, func(c *iscsitarget.Config) { c.BlockSize = 4096 })
	s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn})
	if s.BlockSize() != 4096 || s.Size() != size {
		t.Fatalf("BlockSize %d Size %d", s.BlockSize(), s.Size())
	}
	model := make([]byte, size)
	for i, w := range []struct {
		off int64
		n   int
	}{{0, 1}, {4095, 2}, {1000, 9000}, {size - 5000, 5000}, {8192, 4096}, {100, 3}} {
		p := randomBytes(uint64(300+i), w.n)
		if _, err := s.WriteAt(p, w.off); err != nil {
			t.Fatalf("WriteAt(%d at %d): %v", w.n, w.off, err)
		}
		copy(model[w.off:], p)
	}
	got := make([]byte, size)
	if _, err := s.ReadAt(got, 0); err != nil || !bytes.Equal(got, model) {
		t.Fatalf("ReadAt: %v (equal %v)", err, bytes.Equal(got, model))
	}
}

// TestMetalbedFaults drives the target's fault hooks: a connection dropped mid-write, and
// slow responses.
func TestMetalbedFaults(t *testing.T) {
	t.Run("dropped mid-write", func(t *testing.T) {
		checkNoLeak(t)
		m := startMetalbed(t, 16<<20, func(c *iscsitarget.Config) {
			c.Faults = faulttest.New(t, fault.Rule{Layer: fault.ISCSI, Op: "connect", Action: "reset-after", Arg: "3145728"})
		})
		s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn})
		_, err := s.WriteAt(make([]byte, 8<<20), 0)
		if err == nil {
			t.Fatal("8 MiB write succeeded over a connection dropped after 3 MiB")
		}
		t.Logf("error: %v", err)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("dropped connection error %v, want connection reset by peer", err)
		}
		if _, err := s.ReadAt(make([]byte, 512), 0); err == nil {
			t.Fatal("ReadAt succeeded on the dropped session")
		}
	})
	t.Run("slow target", func(t *testing.T) {
		checkNoLeak(t)
		m := startMetalbed(t, 1<<20, func(c *iscsitarget.Config) {
			c.ResponseDelay = 50 * time.Millisecond
		})
		s := dialT(t, Config{Addr: m.addr, TargetIQN: m.iqn, Timeout: 2 * time.Second})
		p := randomBytes(30, 256<<10)
		if _, err := s.WriteAt(p, 0); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if _, err := s.ReadAt(got, 0); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("ReadAt: %v", err)
		}
	})
}
