package initiator

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

func TestR2TSplitting(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		immediate, initialR2T    bool
		mrdsl, firstBurst, burst int
		maxR2T                   int
	}{
		{"R2T only, small PDUs", false, true, 512, 65536, 3 * 4096, 1},
		{"immediate then R2T", true, true, 4096, 65536, 8192, 1},
		{"immediate and unsolicited then R2T", true, false, 4096, 16384, 32768, 1},
		{"unsolicited without immediate", false, false, 8192, 32768, 65536, 1},
		{"bursts bigger than MaxIOSize", true, false, 65536, 65536, 1 << 20, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeak(t)
			f := newFake(t, 8192)
			f.immediateData, f.initialR2T, f.mrdsl = tc.immediate, tc.initialR2T, tc.mrdsl
			f.firstBurst, f.maxBurst, f.maxR2T = tc.firstBurst, tc.burst, tc.maxR2T
			s := dialFake(t, f, Config{MaxIOSize: 256 << 10})
			p := s.params
			if p.immediateData != tc.immediate || p.initialR2T != tc.initialR2T || int(p.targetMRDSL) != tc.mrdsl ||
				int(p.maxBurst) != min(tc.burst, ourMaxBurstLength) || int(p.firstBurst) != min(tc.firstBurst, ourFirstBurstLength, int(p.maxBurst)) {
				t.Fatalf("negotiated %+v for %+v", p, tc)
			}
			data := randomBytes(9, 3<<20+777)
			if n, err := s.WriteAt(data, 1000); err != nil || n != len(data) {
				t.Fatalf("WriteAt = %d, %v", n, err)
			}
			if !bytes.Equal(f.disk[1000:1000+len(data)], data) {
				t.Fatal("the fake's disk differs from what was written")
			}
			got := make([]byte, len(data))
			if n, err := s.ReadAt(got, 1000); err != nil || n != len(got) || !bytes.Equal(got, data) {
				t.Fatalf("ReadAt = %d, %v (equal %v)", n, err, bytes.Equal(got, data))
			}
		})
	}
}

func TestCmdSNWindowClosedThenReopened(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 16384)
	f.window = 1
	f.closeWindowAfterResponse = true
	s := dialFake(t, f, Config{MaxIOSize: 64 << 10, MaxOutstanding: 8})
	data := randomBytes(10, 4<<20)
	if _, err := s.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := s.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt: %v (equal %v)", err, bytes.Equal(got, data))
	}
	if s.windowWaits.Load() == 0 {
		t.Fatal("no command ever waited for the window, so the test tested nothing")
	}
}

func TestNOPInPingAnswered(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	answered := make(chan *pdu.PDU, 1)
	f.onNOPOut = func(f *fake, p *pdu.PDU) { answered <- p }
	s := dialFake(t, f, Config{KeepAlive: -1})
	ping := &pdu.PDU{Data: []byte("are you there")}
	ping.SetOpcode(pdu.OpNOPIn)
	ping.SetFinal(true)
	ping.SetLUN(encodeLUN(1))
	ping.SetITT(reservedTag)
	ping.SetTTT(0x1234)
	if err := f.send(ping, false); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-answered:
		if p.TTT() != 0x1234 || p.ITT() != reservedTag || !p.Immediate() || string(p.Data) != "are you there" || p.LUN() != encodeLUN(1) {
			t.Fatalf("NOP-Out reply %v ttt=0x%x imm=%v data=%q lun=%x", p, p.TTT(), p.Immediate(), p.Data, p.LUN())
		}
	case <-t.Context().Done():
		t.Fatal("no NOP-Out reply")
	}
	eventually(t, 5*time.Second, "the reply counted", func() bool { return s.nopReplies.Load() == 1 })
}

func TestKeepalivePing(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	s := dialFake(t, f, Config{KeepAlive: 50 * time.Millisecond})
	eventually(t, 10*time.Second, "three keepalive pings answered", func() bool { return s.pings.Load() >= 3 })
	if _, err := s.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
}

func TestTargetRequestsLogout(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	f.disk[600] = 0xab
	asked := false
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if cmd.CDB()[0] != opRead10 || asked {
			return false
		}
		asked = true
		a := &pdu.PDU{}
		a.SetOpcode(pdu.OpAsync)
		a.SetFinal(true)
		a.SetITT(reservedTag)
		a.SetAsyncEvent(asyncLogoutRequest)
		a.SetAsyncParameter(2, 5)
		f.send(a, true)
		f.scsi(cmd) // the command in flight still completes
		return true
	}
	s := dialFake(t, f, Config{})
	b := make([]byte, 512)
	if _, err := s.ReadAt(b, 512); err != nil || b[600-512] != 0xab {
		t.Fatalf("ReadAt in flight during the logout request: %v", err)
	}
	eventually(t, 10*time.Second, "the session to log out", func() bool { return s.sessionErr() != nil })
	if _, err := s.ReadAt(b, 0); !errors.Is(err, errTargetLogout) {
		t.Fatalf("ReadAt after the target's logout: %v", err)
	}
	if f.logouts != 1 {
		t.Fatalf("target saw %d logouts", f.logouts)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestSenseBecomesError(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 1024)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if lba, _ := rwRange(cmd.CDB()); (cmd.CDB()[0] == opRead10 || cmd.CDB()[0] == opWrite10) && lba == 100 {
			sense := fixedSense(SenseMediumError, 0x11, 0x00)
			sense[0] |= 0x80 // INFORMATION valid
			sense[6] = 100
			f.respond(cmd, statusCheckCondition, sense)
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{})
	_, err := s.ReadAt(make([]byte, 4096), 100*512)
	if !IsSense(err, SenseMediumError) {
		t.Fatalf("err %v is not a MEDIUM ERROR", err)
	}
	for _, want := range []string{"READ(10) lba 100", "CHECK CONDITION", "MEDIUM ERROR", "0x11/0x00", "unrecovered read error", "information 0x64"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := s.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("session unusable after a CHECK CONDITION: %v", err)
	}
}

func TestBusyRetried(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	busy := 0
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if cmd.CDB()[0] == opRead10 && busy < 3 {
			busy++
			f.respond(cmd, []byte{statusBusy, statusTaskSetFull, statusBusy}[busy-1], nil)
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{})
	f.disk[5] = 9
	b := make([]byte, 512)
	if _, err := s.ReadAt(b, 0); err != nil || b[5] != 9 {
		t.Fatalf("ReadAt through BUSY and TASK SET FULL: %v", err)
	}
	if busy != 3 {
		t.Fatalf("target said busy %d times", busy)
	}
}

func TestUnitAttentionRetried(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	ua := 2
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if ua > 0 {
			ua--
			f.respond(cmd, statusCheckCondition, fixedSense(SenseUnitAttention, 0x29, 0))
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{})
	if s.Size() != 64*512 {
		t.Fatalf("size %d", s.Size())
	}
}

func TestCommandTimeoutAborts(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 1024)
	stuck := make(chan uint32, 1)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if lba, _ := rwRange(cmd.CDB()); cmd.CDB()[0] == opRead10 && lba == 200 {
			stuck <- cmd.ITT()
			return true // never answered
		}
		return false
	}
	s := dialFake(t, f, Config{Timeout: 300 * time.Millisecond, KeepAlive: -1})
	_, err := s.ReadAt(make([]byte, 512), 200*512)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck read: %v, want deadline exceeded", err)
	}
	itt := <-stuck
	select {
	case ref := <-f.aborts:
		if ref != itt {
			t.Fatalf("ABORT TASK for ITT 0x%x, the stuck command was 0x%x", ref, itt)
		}
	case <-t.Context().Done():
		t.Fatal("no ABORT TASK for the stuck command")
	}
	if _, err := s.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("session unusable after an aborted command: %v", err)
	}
}

func TestTargetDropsConnection(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if cmd.CDB()[0] == opRead10 {
			f.conn.Close()
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{})
	if _, err := s.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("ReadAt succeeded on a dropped connection")
	}
	if _, err := s.WriteAt(make([]byte, 512), 0); err == nil {
		t.Fatal("WriteAt succeeded on a dropped connection")
	}
}

func TestRejectFailsCommand(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if cmd.CDB()[0] == opRead10 {
			r := &pdu.PDU{Data: append([]byte(nil), cmd.BHS[:]...)}
			r.SetOpcode(pdu.OpReject)
			r.SetFinal(true)
			r.SetITT(reservedTag)
			r.SetRejectReason(0x09)
			f.send(r, true)
			return true
		}
		return false
	}
	s := dialFake(t, f, Config{})
	_, err := s.ReadAt(make([]byte, 512), 0)
	if err == nil || !strings.Contains(err.Error(), "invalid PDU field") {
		t.Fatalf("rejected read: %v", err)
	}
}

func TestLoginRedirectAndErrors(t *testing.T) {
	checkNoLeak(t)
	first, second := newFake(t, 64), newFake(t, 128)
	first.loginStatus, first.redirectTo = 0x0101, "second.example:3261"
	var dialled []string
	cfg := Config{Addr: "first.example:3260", TargetIQN: "iqn.2024-01.io.metalbed:fake",
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
			dialled = append(dialled, addr)
			if addr == "second.example:3261" {
				return second.dialer()(ctx, addr)
			}
			return first.dialer()(ctx, addr)
		}}
	s, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != 128*512 || len(dialled) != 2 {
		t.Fatalf("size %d after dialling %q", s.Size(), dialled)
	}

	refused := newFake(t, 64)
	refused.loginStatus = 0x0201
	_, err = Dial(t.Context(), Config{Addr: "x:1", TargetIQN: "iqn.2024-01.io.metalbed:fake", DialContext: refused.dialer()})
	if err == nil || err.Error() != "login to iqn.2024-01.io.metalbed:fake: authentication failure (status 0x0201)" || !AuthFailed(err) {
		t.Fatalf("refused login: %v", err)
	}

	loop := newFake(t, 64)
	loop.loginStatus, loop.redirectTo = 0x0102, "x:1"
	if _, err = Dial(t.Context(), Config{Addr: "x:1", TargetIQN: "iqn.2024-01.io.metalbed:fake", DialContext: loop.dialer()}); err == nil ||
		!strings.Contains(err.Error(), "redirections") {
		t.Fatalf("redirect loop: %v", err)
	}
}

func TestDialContextCancelled(t *testing.T) {
	checkNoLeak(t)
	ctx, cancel := context.WithCancel(t.Context())
	cfg := Config{Addr: "x:1", TargetIQN: "iqn.x", DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
		c, s := net.Pipe()
		go func() { // a target that never answers
			defer s.Close()
			b := make([]byte, 4096)
			for {
				if _, err := s.Read(b); err != nil {
					return
				}
				cancel()
			}
		}()
		return c, nil
	}}
	if _, err := Dial(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a silent target and a cancelled context: %v", err)
	}
}

func TestKeepaliveUnansweredFailsSession(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 64)
	f.ignorePings = true
	s := dialFake(t, f, Config{KeepAlive: 50 * time.Millisecond, Timeout: 300 * time.Millisecond})
	eventually(t, 10*time.Second, "the session to fail", func() bool { return s.sessionErr() != nil })
	if err := s.sessionErr(); !strings.Contains(err.Error(), "NOP-Out ping") {
		t.Fatalf("session error %v", err)
	}
	if _, err := s.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("ReadAt succeeded on a dead session")
	}
}

func TestDataDigestErrorFailsOnlyTheCommand(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 1024)
	f.digests = true
	f.corrupt = func(p *pdu.PDU) bool {
		return p.Opcode() == pdu.OpDataIn && len(p.Data) == 512 && p.Data[0] == 0xee
	}
	f.disk[300*512] = 0xee
	s := dialFake(t, f, Config{HeaderDigest: true, DataDigest: true})
	if !s.params.headerDigest || !s.params.dataDigest {
		t.Fatal("digests not negotiated")
	}
	_, err := s.ReadAt(make([]byte, 512), 300*512)
	if !errors.Is(err, pdu.ErrDataDigest) {
		t.Fatalf("corrupted read: %v", err)
	}
	b := make([]byte, 4096)
	if _, err := s.ReadAt(b, 0); err != nil {
		t.Fatalf("session unusable after a data digest error: %v", err)
	}
}

// TestSeveralCommandsInFlight answers no READ until four are outstanding at once: it
// passes only if the initiator really keeps MaxOutstanding commands in flight.
func TestSeveralCommandsInFlight(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 2048)
	var held []*pdu.PDU
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if cmd.CDB()[0] != opRead10 {
			return false
		}
		held = append(held, cmd)
		if len(held) == 4 {
			for _, c := range held {
				f.scsi(c)
			}
			held = nil
		}
		return true
	}
	s := dialFake(t, f, Config{MaxOutstanding: 4, MaxIOSize: 64 << 10, Timeout: 5 * time.Second})
	f.disk[3*65536] = 0x5a
	b := make([]byte, 8*65536)
	if _, err := s.ReadAt(b, 0); err != nil {
		t.Fatalf("ReadAt of 8 commands, answered four at a time: %v", err)
	}
	if b[3*65536] != 0x5a {
		t.Fatal("data of the fourth command misplaced")
	}
}

// TestCloseDuringIO closes the session while several callers have commands in flight:
// every call returns, none hangs, and no goroutine is left behind.
func TestCloseDuringIO(t *testing.T) {
	t.Run("fake", func(t *testing.T) {
		checkNoLeak(t)
		closeDuringIO(t, dialFake(t, newFake(t, 16384), Config{MaxIOSize: 64 << 10}))
	})
	t.Run("tgtd", func(t *testing.T) {
		checkNoLeak(t)
		d := startTGTD(t, 8<<20)
		closeDuringIO(t, dialT(t, Config{Addr: d.addr, TargetIQN: d.iqn, MaxIOSize: 64 << 10}))
	})
}

func closeDuringIO(t *testing.T, s *Session) {
	done := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			var err error
			b := make([]byte, 1<<20)
			for err == nil {
				if i%2 == 0 {
					_, err = s.ReadAt(b, int64(i)<<20)
				} else {
					_, err = s.WriteAt(b, int64(i)<<20)
				}
			}
			done <- err
		}()
	}
	eventually(t, 5*time.Second, "I/O under way", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.tasks) > 0
	})
	s.Close()
	for i := 0; i < 8; i++ {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("caller ended with %v, want ErrClosed", err)
		}
	}
}

// TestWriteCancelledWaitingForR2T cancels a write the target never asks data for.
func TestWriteCancelledWaitingForR2T(t *testing.T) {
	checkNoLeak(t)
	f := newFake(t, 1024)
	f.immediateData, f.initialR2T = false, true
	stuck := make(chan uint32, 1)
	f.onCommand = func(f *fake, cmd *pdu.PDU) bool {
		if lba, _ := rwRange(cmd.CDB()); cmd.CDB()[0] == opWrite10 && lba == 300 {
			stuck <- cmd.ITT()
			return true // no R2T, no status
		}
		return false
	}
	s := dialFake(t, f, Config{KeepAlive: -1})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.WriteAtContext(ctx, make([]byte, 4096), 300*512); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck write: %v", err)
	}
	itt := <-stuck
	select {
	case ref := <-f.aborts:
		if ref != itt {
			t.Fatalf("ABORT TASK for 0x%x, stuck write was 0x%x", ref, itt)
		}
	case <-t.Context().Done():
		t.Fatal("no ABORT TASK")
	}
	p := randomBytes(31, 4096)
	if _, err := s.WriteAt(p, 0); err != nil || !bytes.Equal(f.disk[:4096], p) {
		t.Fatalf("write after the abort: %v", err)
	}
}
