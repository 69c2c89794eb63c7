package bmcemu

import (
	"net"
	"testing"
	"time"
)

// TestPacerResendsOnlyToSilentClients: an in-session reply is sent again
// when the client stays silent, not when it has sent something since, and
// session-less replies are never sent twice.
func TestPacerResendsOnlyToSilentClients(t *testing.T) {
	server, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p := newPacer(server, time.Millisecond, 5*time.Millisecond)
	caddr := client.LocalAddr()

	// RMCP+ in-session IPMI reply (session ID 1) and a session-less one.
	inSession := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x00, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0}
	sessionless := []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

	count := func(window time.Duration) int {
		n := 0
		buf := make([]byte, 64)
		for {
			_ = client.SetReadDeadline(time.Now().Add(window))
			if _, _, err := client.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}

	p.received(caddr)
	if _, err := p.send(inSession, caddr); err != nil {
		t.Fatal(err)
	}
	if n := count(200 * time.Millisecond); n != 2 {
		t.Errorf("silent client got %d copies, want 2", n)
	}

	p.received(caddr)
	if _, err := p.send(inSession, caddr); err != nil {
		t.Fatal(err)
	}
	p.received(caddr) // the client's next request, before the resend is due
	if n := count(200 * time.Millisecond); n != 1 {
		t.Errorf("talking client got %d copies, want 1", n)
	}

	p.received(caddr)
	if _, err := p.send(sessionless, caddr); err != nil {
		t.Fatal(err)
	}
	if n := count(200 * time.Millisecond); n != 1 {
		t.Errorf("session-less reply sent %d times, want 1", n)
	}
}
