package initiator

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/metalbed/metalbed/iscsitarget/internal/pdu"
)

// FuzzTargetPDUs feeds arbitrary target PDUs to a session with a read, a write and a ping
// in flight: nothing a target sends may panic the initiator or corrupt memory beyond the
// buffers it was given.
func FuzzTargetPDUs(f *testing.F) {
	add := func(ps ...*pdu.PDU) {
		var b []byte
		for _, p := range ps {
			m, err := pdu.Marshal(p, pdu.Options{})
			if err != nil {
				f.Fatal(err)
			}
			b = append(b, m...)
		}
		f.Add(b)
	}
	din := &pdu.PDU{Data: make([]byte, 100)}
	din.SetOpcode(pdu.OpDataIn)
	din.SetITT(1)
	din.SetFlags(pdu.FlagFinal | pdu.FlagStatus)
	r2 := &pdu.PDU{}
	r2.SetOpcode(pdu.OpR2T)
	r2.SetITT(2)
	r2.SetDesiredDataTransferLength(512)
	rsp := &pdu.PDU{Data: append([]byte{0, 18}, fixedSense(SenseMediumError, 0x11, 0)...)}
	rsp.SetOpcode(pdu.OpSCSIResponse)
	rsp.SetITT(2)
	rsp.SetStatus(statusCheckCondition)
	nop := &pdu.PDU{Data: []byte("ping")}
	nop.SetOpcode(pdu.OpNOPIn)
	nop.SetITT(reservedTag)
	nop.SetTTT(5)
	async := &pdu.PDU{}
	async.SetOpcode(pdu.OpAsync)
	async.SetAsyncEvent(asyncLogoutRequest)
	rej := &pdu.PDU{Data: make([]byte, 48)}
	rej.SetOpcode(pdu.OpReject)
	add(din, r2, rsp)
	add(nop, async, rej)
	add(din)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, peer := net.Pipe()
		go io.Copy(io.Discard, peer)
		cfg, _ := Config{Addr: "x:1"}.withDefaults()
		s := newSession(cfg, c)
		s.params = defaultParams()
		s.blockSize, s.blocks = 512, 8
		s.maxCmdSN = 100
		read := newTask("read")
		read.read = make([]byte, 1024)
		write := newTask("write")
		write.r2t = make(chan r2t, 2)
		ping := newTask("ping")
		s.tasks[1], s.tasks[2], s.tasks[3] = read, write, ping
		read.itt, write.itt, ping.itt = 1, 2, 3
		r := bytes.NewReader(b)
		for {
			var p pdu.PDU
			if err := pdu.ReadInto(r, &p, pdu.Options{MaxDataSegmentLength: 4096}, nil); err != nil {
				break
			}
			if err := s.handle(&p); err != nil {
				break
			}
		}
		s.fail(ErrClosed)
		peer.Close()
		for _, tk := range []*task{read, write, ping} {
			<-tk.done // every task ends, one way or the other
		}
	})
}

// FuzzLogin plays arbitrary bytes as the target's side of a login (and whatever follows):
// Dial must end with a session or an error, never panic or hang.
func FuzzLogin(f *testing.F) {
	resp := func(csg, nsg byte, transit bool, status uint16, kvs ...pdu.KV) []byte {
		p := &pdu.PDU{Data: pdu.EncodeText(kvs)}
		p.SetOpcode(pdu.OpLoginResp)
		p.SetCSG(csg)
		p.SetNSG(nsg)
		p.SetTransit(transit)
		p.SetTSIH(1)
		p.SetMaxCmdSN(10)
		p.SetLoginStatus(byte(status>>8), byte(status))
		b, err := pdu.Marshal(p, pdu.Options{})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(append(resp(0, 1, true, 0, pdu.KV{Key: "AuthMethod", Value: "None"}),
		resp(1, 3, true, 0, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "8192"}, pdu.KV{Key: "MaxBurstLength", Value: "0x10000"},
			pdu.KV{Key: "HeaderDigest", Value: "CRC32C"}, pdu.KV{Key: "X-Vendor", Value: "1"})...))
	f.Add(resp(0, 1, true, 0x0101, pdu.KV{Key: "TargetAddress", Value: "[::1]:3261,1"}))
	f.Add(resp(0, 1, true, 0x0201))
	f.Add(append(resp(0, 0, false, 0, pdu.KV{Key: "AuthMethod", Value: "CHAP"}),
		resp(0, 0, false, 0, pdu.KV{Key: "CHAP_A", Value: "5"}, pdu.KV{Key: "CHAP_I", Value: "1"}, pdu.KV{Key: "CHAP_C", Value: "0x0102"})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		dials := 0
		cfg := Config{Addr: "x:1", TargetIQN: "iqn.x", Timeout: 2 * time.Second, KeepAlive: -1,
			CHAP: CHAP{Username: "u", Secret: "secret-12345"}, MutualCHAP: CHAP{Username: "t", Secret: "mutual-12345"},
			DialContext: func(ctx context.Context, addr string) (net.Conn, error) {
				dials++
				c, peer := net.Pipe()
				go io.Copy(io.Discard, peer)
				go func() {
					peer.Write(b)
					peer.Close()
				}()
				return c, nil
			}}
		if bytes.Count(b, []byte("CHAP")) == 0 {
			cfg.CHAP, cfg.MutualCHAP = CHAP{}, CHAP{}
		}
		s, err := Dial(context.Background(), cfg)
		if err == nil {
			s.Close()
		}
		if dials > maxRedirects+1 {
			t.Fatalf("%d dials", dials)
		}
	})
}
