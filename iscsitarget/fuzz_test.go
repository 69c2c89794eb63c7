package iscsitarget

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
	"github.com/metalbed/metalbed/iscsitarget/internal/scsi"
)

// FuzzConnection logs in, then feeds arbitrary bytes to a full-feature
// connection. The target must neither panic nor hang: once the peer
// closes, the connection's goroutines all end.
func FuzzConnection(f *testing.F) {
	seed := func(ps ...*pdu.PDU) []byte {
		var b bytes.Buffer
		for _, p := range ps {
			pdu.Write(&b, p, pdu.Options{})
		}
		return b.Bytes()
	}
	cmd := func(op byte, w bool, edtl uint32, data []byte) *pdu.PDU {
		p := &pdu.PDU{}
		p.SetOpcode(pdu.OpSCSICommand)
		p.SetFinal(true)
		p.SetWriteFlag(w)
		p.SetReadFlag(!w)
		p.SetLUN(1 << 48)
		p.SetITT(1)
		p.SetCmdSN(1)
		p.CDB()[0] = op
		p.CDB()[13] = 1
		p.SetExpectedDataTransferLength(edtl)
		p.Data = data
		return p
	}
	nop := &pdu.PDU{}
	nop.SetOpcode(pdu.OpNOPOut)
	nop.SetITT(3)
	nop.SetCmdSN(1)
	f.Add(seed(cmd(scsi.OpRead16, false, 512, nil)))
	f.Add(seed(cmd(scsi.OpWrite16, true, 512, make([]byte, 100))))
	f.Add(seed(cmd(scsi.OpCompareAndWrite, true, 1024, nil), nop))
	f.Add(seed(nop, nop, nop))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Panics are recovered per connection and logged at Error level:
		// any Error record fails the fuzz case.
		errs := &testenv.SyncBuffer{}
		tg, err := New(Config{IQN: testIQN, Disk: newMemDisk(64 << 10),
			Logger:      slog.New(slog.NewTextHandler(errs, &slog.HandlerOptions{Level: slog.LevelError})),
			NopInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		server, peer := net.Pipe()
		c := tg.newConn(server)
		done := make(chan struct{})
		go func() { c.serve(context.Background()); close(done) }()
		cl := &client{t: t, nc: peer, cmdSN: 1, itt: 1, maxRecv: 8192, params: map[string]string{}}
		if err := cl.login(loginOpts{iqn: testIQN}); err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, peer); close(drained) }()
		peer.SetWriteDeadline(time.Now().Add(5 * time.Second))
		peer.Write(b)
		peer.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("connection did not end after the peer closed")
		}
		<-drained
		tg.Close()
		if s := errs.String(); s != "" {
			t.Fatalf("target logged an error: %s", s)
		}
	})
}
