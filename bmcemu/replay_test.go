package bmcemu

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	ipmiclient "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// TestResentSetupGetsTheSameAnswer: a client that sends every
// session-setup request twice (a resend after a reply came late) gets the
// same answer twice, so the session it builds on the first answer works;
// go-ipmi's BMC alone would open a second session for the second Open
// Session Request and draw a new random number for the second RAKP 1.
func TestResentSetupGetsTheSameAnswer(t *testing.T) {
	_, port := startBMC(t, newTestMachine(), nil)
	for _, suite := range []types.CipherSuiteID{types.CipherSuiteID3, types.CipherSuiteID17} {
		c, err := ipmiclient.NewClient("127.0.0.1", port, "admin", "password")
		if err != nil {
			t.Fatal(err)
		}
		d := &twiceDialer{}
		c.WithUDPProxy(d).WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(suite).WithRetry(0)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("suite %d: connect with every setup request sent twice: %v", suite, err)
		}
		if _, err := c.GetChassisStatus(ctx); err != nil {
			t.Errorf("suite %d: in session: %v", suite, err)
		}
		c.Close(ctx)
		cancel()
		t.Logf("suite %d: %d resent requests answered again (the others while the first was being answered: one answer for both)", suite, d.conn.dupes)
	}
}

// twiceDialer dials a twiceConn.
type twiceDialer struct{ conn *twiceConn }

func (d *twiceDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	d.conn = &twiceConn{Conn: c}
	return d.conn, nil
}

// twiceConn sends each session-setup request twice and skips a reply
// identical to the one before it (counting them).
type twiceConn struct {
	net.Conn
	last  []byte
	dupes int
}

func (c *twiceConn) Write(p []byte) (int, error) {
	if h, err := parseHeader(p); err == nil && h.rmcpPlus && isSetupRequest(h.payloadType) {
		if _, err := c.Conn.Write(p); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

func (c *twiceConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !bytes.Equal(p[:n], c.last) {
			c.last = bytes.Clone(p[:n])
			return n, err
		}
		c.dupes++
	}
}

// TestNextClientOnTheSamePortGetsItsOwnSession: clients' Open Session
// Requests are alike byte for byte (go-ipmi and ipmitool send a fixed
// console session ID), and the kernel may give the next client the source
// port the last one had. Each must get a session of its own: the replay of
// resent setup requests failed here (ipmitool "Unable to establish IPMI v2
// / RMCP+ session" in CI) by answering the new client with the session the
// last one had closed.
func TestNextClientOnTheSamePortGetsItsOwnSession(t *testing.T) {
	_, port := startBMC(t, newTestMachine(), nil)
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := probe.LocalAddr().(*net.UDPAddr)
	probe.Close()
	for i := range 3 {
		c, err := ipmiclient.NewClient("127.0.0.1", port, "admin", "password")
		if err != nil {
			t.Fatal(err)
		}
		c.WithUDPProxy(fixedPortDialer{local}).WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID3).WithRetry(0)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("client %d from %s: connect: %v", i, local, err)
		}
		if _, err := c.GetChassisStatus(ctx); err != nil {
			t.Fatalf("client %d from %s: in session: %v", i, local, err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatalf("client %d: close: %v", i, err)
		}
		cancel()
	}
}

// fixedPortDialer dials from one local address.
type fixedPortDialer struct{ local *net.UDPAddr }

func (d fixedPortDialer) Dial(network, addr string) (net.Conn, error) {
	return (&net.Dialer{LocalAddr: d.local}).Dial(network, addr)
}
