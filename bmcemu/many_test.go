package bmcemu

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	ipmiclient "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
	"golang.org/x/sync/errgroup"
)

// fleet is n BMCs served from this process, one UDP port each.
type fleet struct {
	machines []*testMachine
	ports    []int
}

func startFleet(t testing.TB, n int) *fleet {
	t.Helper()
	f := &fleet{}
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	conns := make([]net.PacketConn, 0, n)
	for i := range n {
		m := newTestMachine()
		srv, err := New(Config{Machine: m, Name: fmt.Sprintf("node-%d", i), Password: "password"})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		f.machines = append(f.machines, m)
		f.ports = append(f.ports, conn.LocalAddr().(*net.UDPAddr).Port)
		g.Go(func() error { return srv.Serve(gctx, conn) })
	}
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("fleet: %v", err)
		}
		for _, c := range conns {
			c.Close()
		}
	})
	return f
}

// nativeStatus opens an RMCP+ session with go-ipmi's client, reads the
// chassis status and closes the session.
func nativeStatus(ctx context.Context, port int, suite types.CipherSuiteID) (bool, error) {
	c, err := ipmiclient.NewClient("127.0.0.1", port, "admin", "password")
	if err != nil {
		return false, err
	}
	c.WithInterface(ipmiclient.InterfaceLanplus).WithCipherSuiteID(suite).WithTimeout(5 * time.Second).WithRetry(2)
	if err := c.Connect(ctx); err != nil {
		return false, fmt.Errorf("connect :%d: %w", port, err)
	}
	defer c.Close(ctx)
	st, err := c.GetChassisStatus(ctx)
	if err != nil {
		return false, fmt.Errorf("chassis status :%d: %w", port, err)
	}
	return st.PowerIsOn, nil
}

func TestThousandBMCs(t *testing.T) {
	if testing.Short() {
		t.Skip("1 000 BMCs: not in -short")
	}
	const n = 1000
	f := startFleet(t, n)
	// Every other machine on, so each answer is checked against its own machine.
	for i := 0; i < n; i += 2 {
		if err := f.machines[i].Control(t.Context(), PowerUp); err != nil {
			t.Fatal(err)
		}
	}
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(32)
	start := time.Now()
	for i, port := range f.ports {
		suite := types.CipherSuiteID3
		if i%2 == 1 {
			suite = types.CipherSuiteID17
		}
		g.Go(func() error {
			on, err := nativeStatus(ctx, port, suite)
			if err != nil {
				return err
			}
			if on != (i%2 == 0) {
				return fmt.Errorf("node-%d: power on = %v", i, on)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("native client: %d BMCs answered in %v", n, time.Since(start).Round(time.Millisecond))

	// And real ipmitool against a spread of them.
	for _, i := range []int{0, 1, 499, 998, 999} {
		ipmi := newIpmitool(t, f.ports[i], ipmitoolModes[i%len(ipmitoolModes)], "password")
		want := "Chassis Power is off"
		if i%2 == 0 {
			want = "Chassis Power is on"
		}
		mustContain(t, ipmi.must("power", "status"), want)
		mustContain(t, ipmi.must("chassis", "bootdev", "pxe"), "Set Boot Device to pxe")
		if fl, _ := f.machines[i].BootFlags(t.Context()); fl[1] != 0x04 {
			t.Errorf("node-%d on port %s: boot flags % x", i, strconv.Itoa(f.ports[i]), fl)
		}
	}
}
