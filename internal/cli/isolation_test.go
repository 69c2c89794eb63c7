package cli

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestUpPortsAuto: `up --ports auto` puts every port not given on a free
// one and names them in inventory.json and the ready line; the testbed
// leases from a block of its own; a second up told the first one's DHCP
// range, or its API address, is refused with the flag named; a restart
// keeps the block, the MACs and the UUIDs.
func TestUpPortsAuto(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	dir := t.TempDir()
	args := []string{"up", "--ports", "auto", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--state-dir", dir, "--nodes", "2", "--disk-size", "1MiB"}
	u := startUpArgs(t, dir, args...)
	inv := u.inv
	port := func(addr string) string {
		_, p, err := net.SplitHostPort(strings.TrimPrefix(addr, "http://"))
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		return p
	}
	if inv.Boot == nil {
		t.Fatalf("inventory without boot servers: %+v", inv)
	}
	for _, c := range []struct{ what, addr, fixed string }{
		{"api", inv.API, "6385"}, {"timeline", inv.Timeline, "6386"}, {"dhcp", inv.Boot.DHCP, "6767"},
		{"tftp", inv.Boot.TFTP, "6969"}, {"http", inv.Boot.HTTP, "8080"},
	} {
		if p := port(c.addr); p == c.fixed {
			t.Errorf("%s on its fixed port: %s", c.what, c.addr)
		}
		if !strings.Contains(u.stdout.String(), c.addr) {
			t.Errorf("ready line lacks %s %s: %q", c.what, c.addr, u.stdout)
		}
	}
	if inv.Nodes[0].BMC.Port == 6230 || inv.Nodes[1].BMC.Port == 6231 {
		t.Errorf("BMCs on the fixed ports: %+v", inv.Nodes)
	}
	if !strings.HasPrefix(inv.Boot.DHCPRange, "127.") || !strings.Contains(u.stdout.String(), "leasing "+inv.Boot.DHCPRange) {
		t.Errorf("DHCP range %q; ready line %q", inv.Boot.DHCPRange, u.stdout)
	}

	refused := func(flag, want string, extra ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		a := append([]string{"up", "--ports", "auto", "--redfish-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0", "--state-dir", t.TempDir(), "--disk-size", "1MiB"}, extra...)
		err := Run(t.Context(), a, &out, &errb)
		if err == nil || !strings.HasPrefix(err.Error(), flag+" ") || !strings.Contains(err.Error(), want) {
			t.Errorf("up %s: %v, want an error naming %s and %q", strings.Join(extra, " "), err, flag, want)
		}
		if out.Len() != 0 {
			t.Errorf("ready line although refused: %q", out.String())
		}
	}
	refused("--dhcp-range", dir, "--dhcp-range", inv.Boot.DHCPRange)
	refused("--api-addr", "address already in use", "--api-addr", strings.TrimPrefix(inv.API, "http://"))

	u.stop(t)
	again := startUpArgs(t, dir, args...)
	if again.inv.Boot.DHCPRange != inv.Boot.DHCPRange {
		t.Errorf("restart leases from %s, before %s", again.inv.Boot.DHCPRange, inv.Boot.DHCPRange)
	}
	for i, n := range again.inv.Nodes {
		if strings.Join(n.MACs, ",") != strings.Join(inv.Nodes[i].MACs, ",") || n.UUID != inv.Nodes[i].UUID {
			t.Errorf("restart: %s has MACs %v UUID %s, before %v %s", n.Name, n.MACs, n.UUID, inv.Nodes[i].MACs, inv.Nodes[i].UUID)
		}
	}
	again.stop(t)
}
