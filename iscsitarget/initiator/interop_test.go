package initiator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	r.Read(b)
	return b
}

// writeAll writes data at 0 in chunks of chunk bytes through WriteAt.
func writeAll(t testing.TB, w io.WriterAt, data []byte, chunk int) {
	t.Helper()
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		n, err := w.WriteAt(data[off:end], int64(off))
		if err != nil || n != end-off {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
		}
	}
}

// sumReader hashes size bytes read from r through ReadAt in chunks.
func sumReader(t testing.TB, r io.ReaderAt, size int64, chunk int) [32]byte {
	t.Helper()
	h := sha256.New()
	buf := make([]byte, chunk)
	for off := int64(0); off < size; off += int64(chunk) {
		n := int(min(int64(chunk), size-off))
		got, err := r.ReadAt(buf[:n], off)
		if err != nil && !(errors.Is(err, io.EOF) && got == n) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
		}
		h.Write(buf[:n])
	}
	return [32]byte(h.Sum(nil))
}

func sumFile(t testing.TB, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, size); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestTGTDRoundTrip256MiB(t *testing.T) {
	checkNoLeak(t)
	const size = 256 << 20
	d := startTGTD(t, size)
	roundTrip(t, "tgtd", d.addr, d.iqn, d.file, 1, size)
}

// roundTrip writes size random bytes (from seed) through a session with
// the target at addr, reads them back, finds them in the target's backing
// file and in what qemu-img (libiscsi) reads, and closes the session.
func roundTrip(t *testing.T, name, addr, iqn, file string, seed uint64, size int) {
	s := dialT(t, Config{Addr: addr, TargetIQN: iqn, MaxOutstanding: 8})
	if s.Size() != int64(size) || s.BlockSize() != 512 {
		t.Fatalf("Size %d BlockSize %d, want %d and 512", s.Size(), s.BlockSize(), size)
	}
	data := randomBytes(seed, size)
	want := sha256.Sum256(data)
	writeAll(t, s, data, 16<<20)
	if err := s.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := sumReader(t, s, int64(size), 16<<20); got != want {
		t.Fatalf("read back sha256 %x, wrote %x", got, want)
	}
	if got := sumFile(t, file, int64(size)); got != want {
		t.Fatalf("%s's backing file sha256 %x, wrote %x", name, got, want)
	}
	qemu := testenv.RequireTool(t, "qemu-img", "qemu-utils and qemu-block-extra")
	out := filepath.Join(t.TempDir(), "out.img")
	url := fmt.Sprintf("iscsi://%s/%s/1", addr, iqn)
	if b, err := exec.CommandContext(t.Context(), qemu, "convert", "-O", "raw", url, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", url, err, b)
	}
	if got := sumFile(t, out, int64(size)); got != want {
		t.Fatalf("qemu-img (libiscsi) read sha256 %x, wrote %x", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestTGTDReadsLibiscsiWrites is the other direction: qemu-img (libiscsi) writes, we read.
func TestTGTDReadsLibiscsiWrites(t *testing.T) {
	checkNoLeak(t)
	const size = 32 << 20
	d := startTGTD(t, size)
	qemu := testenv.RequireTool(t, "qemu-img", "qemu-utils and qemu-block-extra")
	src := filepath.Join(t.TempDir(), "src.img")
	data := randomBytes(2, size)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("iscsi://%s/%s/1", d.addr, d.iqn)
	if b, err := exec.CommandContext(t.Context(), qemu, "convert", "-n", "-f", "raw", "-O", "raw", src, url).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert to %s: %v: %s", url, err, b)
	}
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	if got, want := sumReader(t, s, size, 3<<20+512), sha256.Sum256(data); got != want {
		t.Fatalf("read sha256 %x, libiscsi wrote %x", got, want)
	}
}

func TestTGTDUnaligned(t *testing.T) {
	checkNoLeak(t)
	const size = 4 << 20
	d := startTGTD(t, size)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, MaxIOSize: 64 << 10})
	model := randomBytes(3, size)
	writeAll(t, s, model, 1<<20)
	r := rand.New(rand.NewPCG(4, 5))
	for i := 0; i < 60; i++ {
		off := r.Int64N(size)
		n := r.IntN(200_000)
		if i%3 == 0 {
			n = r.IntN(700) // inside one or two blocks
		}
		p := randomBytes(uint64(100+i), n)
		got, err := s.WriteAt(p, off)
		wantN := int(min(int64(n), size-off))
		if got != wantN || (wantN < n) != errors.Is(err, ErrOutOfRange) || (wantN == n && err != nil) {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, wantN)
		}
		copy(model[off:], p[:wantN])
		// Read back a range around it, unaligned too.
		lo := max(0, off-int64(r.IntN(1500)))
		buf := make([]byte, int(off-lo)+n+r.IntN(1500))
		rn, err := s.ReadAt(buf, lo)
		wantR := int(min(int64(len(buf)), size-lo))
		if rn != wantR || (wantR < len(buf)) != errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", len(buf), lo, rn, err, wantR)
		}
		if !bytes.Equal(buf[:rn], model[lo:lo+int64(rn)]) {
			t.Fatalf("ReadAt(%d bytes at %d) differs from the model after WriteAt(%d at %d)", len(buf), lo, n, off)
		}
	}
	if got, want := sumFile(t, d.file, size), sha256.Sum256(model); got != want {
		t.Fatal("tgtd's backing file differs from the model")
	}
	if n, err := s.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := s.WriteAt([]byte{1}, size); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("WriteAt at the end: %v, want ErrOutOfRange", err)
	}
}

func TestTGTDCHAP(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	d.adm(t, "--op", "new", "--mode", "account", "--user", "deployer", "--password", "secret-12345")
	d.adm(t, "--op", "bind", "--mode", "account", "--tid", "1", "--user", "deployer")
	good := CHAP{Username: "deployer", Secret: "secret-12345"}

	t.Run("right", func(t *testing.T) {
		s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, CHAP: good})
		if s.Size() != 1<<20 {
			t.Fatalf("size %d", s.Size())
		}
	})
	for name, cfg := range map[string]Config{
		"wrong secret": {CHAP: CHAP{Username: "deployer", Secret: "wrong-secret-1"}},
		"wrong user":   {CHAP: CHAP{Username: "intruder", Secret: "secret-12345"}},
		"none":         {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Addr, cfg.TargetIQN = d.addr, d.iqn
			s, err := Dial(t.Context(), cfg)
			if err == nil {
				s.Close()
				t.Fatal("login succeeded")
			}
			t.Logf("error: %v", err)
			if name != "none" && !AuthFailed(err) {
				t.Fatalf("error %v is not an authentication failure", err)
			}
		})
	}

	d.adm(t, "--op", "new", "--mode", "account", "--user", "target-side", "--password", "mutual-secret-1")
	d.adm(t, "--op", "bind", "--mode", "account", "--tid", "1", "--user", "target-side", "--outgoing")
	t.Run("mutual right", func(t *testing.T) {
		dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, CHAP: good,
			MutualCHAP: CHAP{Username: "target-side", Secret: "mutual-secret-1"}})
	})
	t.Run("mutual wrong", func(t *testing.T) {
		s, err := Dial(t.Context(), Config{Addr: d.addr, TargetIQN: d.iqn, CHAP: good,
			MutualCHAP: CHAP{Username: "target-side", Secret: "not-the-secret"}})
		if err == nil {
			s.Close()
			t.Fatal("login succeeded though the target does not know our mutual secret")
		}
		t.Logf("error: %v", err)
	})
}

func TestTGTDIdleNOP(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	d.adm(t, "--op", "update", "--mode", "target", "--tid", "1", "-n", "nop_interval", "-v", "1")
	d.adm(t, "--op", "update", "--mode", "target", "--tid", "1", "-n", "nop_count", "-v", "3")
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, KeepAlive: 300 * time.Millisecond})
	// Stay idle until tgtd has pinged us several times (more than its nop_interval ×
	// nop_count, after which an unanswered tgtd drops the session) and we pinged it.
	eventually(t, 30*time.Second, "tgtd NOP-In pings answered", func() bool {
		return s.nopReplies.Load() >= 5 && s.pings.Load() >= 2
	})
	p := randomBytes(6, 4096)
	if _, err := s.WriteAt(p, 8192); err != nil {
		t.Fatalf("WriteAt after idle: %v", err)
	}
	got := make([]byte, len(p))
	if _, err := s.ReadAt(got, 8192); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("ReadAt after idle: %v (equal %v)", err, bytes.Equal(got, p))
	}
	if len(d.sessions(t)) != 1 {
		t.Fatalf("tgtd lists sessions %q, want one", d.sessions(t))
	}
}

func TestTGTDCloseLogsOut(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	if n := len(d.sessions(t)); n != 1 {
		t.Fatalf("tgtd lists %d sessions while logged in", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	eventually(t, 5*time.Second, "tgtd to drop the session", func() bool { return len(d.sessions(t)) == 0 })
	if _, err := s.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAt after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTGTDDiscover(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	names, err := Discover(t.Context(), d.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, d.iqn) {
		t.Fatalf("Discover = %q, want %s", names, d.iqn)
	}
}

func TestTGTDDigests(t *testing.T) {
	checkNoLeak(t)
	const size = 8 << 20
	d := startTGTD(t, size)
	// tgtd offers no digests unless told to.
	d.adm(t, "--op", "update", "--mode", "target", "--tid", "1", "-n", "HeaderDigest", "-v", "CRC32C,None")
	d.adm(t, "--op", "update", "--mode", "target", "--tid", "1", "-n", "DataDigest", "-v", "CRC32C,None")
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, HeaderDigest: true, DataDigest: true})
	if !s.params.headerDigest || !s.params.dataDigest {
		t.Fatalf("digests not agreed: header %v data %v", s.params.headerDigest, s.params.dataDigest)
	}
	data := randomBytes(7, size)
	writeAll(t, s, data, 3<<20)
	if got, want := sumReader(t, s, size, 1<<20), sha256.Sum256(data); got != want {
		t.Fatal("read back differs with CRC32C digests")
	}
}

func TestTGTDUnknownTargetAndLUN(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	_, err := Dial(t.Context(), Config{Addr: d.addr, TargetIQN: d.iqn + ".nope"})
	var le *LoginError
	if !errors.As(err, &le) || le.Class != 2 || le.Detail != 3 {
		t.Fatalf("unknown target: %v, want target not found (0x0203)", err)
	}
	t.Logf("unknown target: %v", err)
	_, err = Dial(t.Context(), Config{Addr: d.addr, TargetIQN: d.iqn, LUN: 7})
	if err == nil {
		t.Fatal("LUN 7 opened")
	}
	t.Logf("unknown LUN: %v", err)
}

func TestTGTDCancel(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 64<<20)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.WriteAtContext(ctx, make([]byte, 1<<20), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteAtContext with a cancelled context: %v", err)
	}
	// The session still works.
	if _, err := s.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
}

// TestTGTDConcurrentCallers has several goroutines reading and writing their own regions at
// once, aligned and not, through one session.
func TestTGTDConcurrentCallers(t *testing.T) {
	checkNoLeak(t)
	const region, workers = 2 << 20, 6
	d := startTGTD(t, region*workers)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, MaxOutstanding: 4, MaxIOSize: 128 << 10})
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			errs <- func() error {
				base := int64(w * region)
				model := make([]byte, region)
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := 0; i < 25; i++ {
					off := r.Int64N(region - 1)
					n := 1 + r.IntN(min(300_000, int(region-off)-1))
					p := randomBytes(uint64(w*1000+i), n)
					if _, err := s.WriteAt(p, base+off); err != nil {
						return err
					}
					copy(model[off:], p)
				}
				got := make([]byte, region)
				if _, err := s.ReadAt(got, base); err != nil {
					return err
				}
				if !bytes.Equal(got, model) {
					return fmt.Errorf("worker %d: region differs from its model", w)
				}
				return nil
			}()
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestLargeLUN16ByteCDBs uses a sparse 3 TiB LUN, beyond what READ CAPACITY(10) and the
// 32-bit LBAs of READ/WRITE(10) can address, on both targets.
func TestLargeLUN16ByteCDBs(t *testing.T) {
	const size = 3 << 40
	for _, peer := range []string{"tgtd", "metalbed"} {
		t.Run(peer, func(t *testing.T) {
			checkNoLeak(t)
			var addr, iqn string
			if peer == "tgtd" {
				d := startTGTD(t, size)
				addr, iqn = d.addr, d.iqn
			} else {
				m := startMetalbed(t, size, nil)
				addr, iqn = m.addr, m.iqn
			}
			s := dialT(t, Config{Addr: addr, TargetIQN: iqn})
			if s.Size() != size {
				t.Fatalf("Size %d, want %d", s.Size(), int64(size))
			}
			off := int64(5<<39) + 777 // 2.5 TiB: LBA above 2^32
			p := randomBytes(21, 3<<20)
			if _, err := s.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(p))
			if _, err := s.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("ReadAt at 2.5 TiB: %v (equal %v)", err, bytes.Equal(got, p))
			}
			tail := randomBytes(22, 1000)
			if _, err := s.WriteAt(tail, size-1000); err != nil {
				t.Fatal(err)
			}
			if _, err := s.ReadAt(got[:1000], size-1000); err != nil || !bytes.Equal(got[:1000], tail) {
				t.Fatalf("last bytes: %v", err)
			}
			if err := s.Sync(t.Context()); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		})
	}
}

// TestTGTDDropsSession has tgtd close the session (tgtadm --op delete --mode conn, which
// tgtd does by closing the TCP connection): the session fails at once and calls return
// errors instead of hanging.
func TestTGTDDropsSession(t *testing.T) {
	checkNoLeak(t)
	d := startTGTD(t, 1<<20)
	s := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	m := regexp.MustCompile(`I_T nexus: (\d+)`).FindStringSubmatch(d.adm(t, "--op", "show", "--mode", "target"))
	if m == nil {
		t.Fatal("tgtd lists no session")
	}
	d.adm(t, "--op", "delete", "--mode", "conn", "--tid", "1", "--sid", m[1], "--cid", "0")
	eventually(t, 10*time.Second, "the session to notice", func() bool { return s.sessionErr() != nil })
	if _, err := s.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("ReadAt succeeded after tgtd dropped the session")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a dropped session: %v", err)
	}
	// A new session works.
	s2 := dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn})
	if _, err := s2.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
}
