//go:build linux

package dhcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"

	"github.com/metalbed/metalbed/internal/testenv"
)

// netnsPair creates two network namespaces joined by a veth pair: the
// server end (192.0.2.1/24) in one, the client end (no address) in the
// other. Nothing touches the host's own namespace. Both are deleted in
// t.Cleanup.
type netnsPair struct {
	server, client     string // namespace names
	serverIf, clientIf string
	serverIP           netip.Addr
}

func newNetnsPair(t *testing.T) netnsPair {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "needs root to create network namespaces (run as root or set nothing to skip)")
	}
	ipTool := testenv.RequireTool(t, "ip", "iproute2")
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	p := netnsPair{
		server: "mbds" + id, client: "mbdc" + id,
		serverIf: "mbs" + id, clientIf: "mbc" + id,
		serverIP: netip.MustParseAddr("192.0.2.1"),
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(ipTool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", p.server)
	t.Cleanup(func() { exec.Command(ipTool, "netns", "del", p.server).Run() })
	run("netns", "add", p.client)
	t.Cleanup(func() { exec.Command(ipTool, "netns", "del", p.client).Run() })
	// Create the pair directly inside the namespaces.
	run("-n", p.server, "link", "add", p.serverIf, "type", "veth", "peer", "name", p.clientIf, "netns", p.client)
	run("-n", p.server, "addr", "add", p.serverIP.String()+"/24", "dev", p.serverIf)
	run("-n", p.server, "link", "set", p.serverIf, "up")
	run("-n", p.server, "link", "set", "lo", "up")
	run("-n", p.client, "link", "set", p.clientIf, "up")
	run("-n", p.client, "link", "set", "lo", "up")
	return p
}

// serveInNetns serves s on a socket of listenInNetns until the test ends.
func serveInNetns(t *testing.T, s *Server, ns, iface string) {
	t.Helper()
	conn := listenInNetns(t, ns, iface)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// listenInNetns opens a DHCP server socket (0.0.0.0:67, bound to iface,
// SO_BROADCAST) inside namespace ns. The socket stays in ns after the
// thread that made it is gone.
func listenInNetns(t *testing.T, ns, iface string) net.PacketConn {
	t.Helper()
	type result struct {
		conn net.PacketConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is left locked and so is discarded when this
		// goroutine ends: it never returns to the host namespace's pool.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns: %w", err)}
			return
		}
		conn, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{IP: net.IPv4zero, Port: 67})
		ch <- result{conn, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("server socket in %s: %v", ns, r.err)
	}
	return r.conn
}

// TestInteropBusyboxUdhcpc runs busybox udhcpc, a DHCP client nobody here
// wrote, against the server across a veth pair between two namespaces.
func TestInteropBusyboxUdhcpc(t *testing.T) {
	bb := testenv.RequireTool(t, "busybox", "busybox")
	if out, _ := exec.Command(bb, "--list").Output(); !strings.Contains(string(out), "udhcpc") {
		testenv.Unavailable(t, "busybox has no udhcpc applet (Debian package busybox)")
	}
	p := newNetnsPair(t)

	clientMAC := func() net.HardwareAddr {
		out, err := exec.Command("ip", "-n", p.client, "-o", "link", "show", p.clientIf).Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		for i, w := range f {
			if w == "link/ether" && i+1 < len(f) {
				return mustMAC(f[i+1])
			}
		}
		t.Fatalf("no MAC in %q", out)
		return nil
	}()

	hosts := &StaticHosts{}
	hosts.Set(clientMAC, Host{
		BIOSBootFile: "pxelinux.0",
		UEFIBootFile: "snponly.efi",
		TFTPServer:   p.serverIP,
		Hostname:     "node-0",
	})
	events := make(chan Event, 16)
	s, err := New(Config{
		ServerIP: p.serverIP,
		Pool: Pool{
			Subnet: netip.MustParsePrefix("192.0.2.0/24"),
			First:  netip.MustParseAddr("192.0.2.100"),
			Last:   netip.MustParseAddr("192.0.2.110"),
			Router: p.serverIP,
		},
		Hosts:     hosts,
		LeaseFile: filepath.Join(t.TempDir(), "leases.json"),
		Observer:  func(e Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	serveInNetns(t, s, p.server, p.serverIf)

	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	script := filepath.Join(dir, "udhcpc.sh")
	// On bound, record what udhcpc saw and configure the address so its
	// unicast RELEASE (-R) can leave from it.
	os.WriteFile(script, []byte(`#!/bin/sh
if [ "$1" = bound ]; then
	env > `+envFile+`
	ip addr add "$ip/24" dev "$interface"
fi
exit 0
`), 0o755)

	runCtx, stop := context.WithTimeout(t.Context(), 60*time.Second)
	defer stop()
	// UEFI x86-64 PXE client: option 93 = 7, vendor class PXEClient.
	// Without -q udhcpc stays bound; SIGUSR2 then makes it release.
	var out testenv.SyncBuffer
	cmd := exec.CommandContext(runCtx, "ip", "netns", "exec", p.client,
		bb, "udhcpc", "-i", p.clientIf, "-f", "-t", "5", "-T", "1",
		"-s", script, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007", "-O", "66", "-O", "67")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var envb []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, err := os.ReadFile(envFile)
		if err == nil && len(b) > 0 {
			envb = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("udhcpc never bound:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a file with a deadline
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(envb), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	leases := s.Leases()
	if len(leases) != 1 {
		t.Fatalf("leases %+v", leases)
	}
	want := map[string]string{
		"ip":        leases[0].IP.String(),
		"subnet":    "255.255.255.0",
		"router":    p.serverIP.String(),
		"serverid":  p.serverIP.String(),
		"siaddr":    p.serverIP.String(),
		"boot_file": "snponly.efi",
		"bootfile":  "snponly.efi",
		"tftp":      p.serverIP.String(),
		"hostname":  "node-0",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("udhcpc saw %s=%q, want %q", k, env[k], v)
		}
	}
	if t.Failed() {
		t.Logf("udhcpc output:\n%s\nenv:\n%s", out.String(), envb)
	}
	if err := cmd.Process.Signal(unix.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	var kinds []EventKind
	for len(kinds) < 3 {
		select {
		case e := <-events:
			kinds = append(kinds, e.Kind)
		case <-deadline:
			t.Fatalf("events so far %v, want offer, ack, release; udhcpc:\n%s", kinds, out.String())
		}
	}
	if kinds[0] != EventOffer || kinds[1] != EventAck || kinds[2] != EventRelease {
		t.Fatalf("events %v, want offer, ack, release", kinds)
	}
}

// TestInteropPerfdhcpRelay drives the server with perfdhcp (kea-admin)
// acting as a relay agent: giaddr 198.51.100.2 on the client side of the
// veth pair, so every lease must come from the relay's pool and every
// reply go back to the relay.
func TestInteropPerfdhcpRelay(t *testing.T) {
	perf := testenv.RequireTool(t, "perfdhcp", "kea-admin")
	p := newNetnsPair(t)
	giaddr := netip.MustParseAddr("198.51.100.2")
	for _, args := range [][]string{
		{"-n", p.client, "addr", "add", giaddr.String() + "/24", "dev", p.clientIf},
		{"-n", p.client, "route", "add", "192.0.2.0/24", "dev", p.clientIf},
		{"-n", p.server, "route", "add", "198.51.100.0/24", "dev", p.serverIf},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	var mu sync.Mutex
	relays := map[netip.Addr]int{}
	s, err := New(Config{
		ServerIP: p.serverIP,
		Pool: Pool{
			Subnet: netip.MustParsePrefix("192.0.2.0/24"),
			First:  netip.MustParseAddr("192.0.2.100"),
			Last:   netip.MustParseAddr("192.0.2.200"),
		},
		RelayPools: []Pool{{
			Subnet: netip.MustParsePrefix("198.51.100.0/24"),
			First:  netip.MustParseAddr("198.51.100.10"),
			Last:   netip.MustParseAddr("198.51.100.250"),
			Router: giaddr,
		}},
		Hosts:         &StaticHosts{},
		AnswerUnknown: true,
		UnknownHost:   Host{BIOSBootFile: "undionly.kpxe"},
		Observer: func(e Event) {
			if e.Kind == EventAck {
				mu.Lock()
				relays[e.Relay]++
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	serveInNetns(t, s, p.server, p.serverIf)

	const n = 40
	runCtx, stop := context.WithTimeout(t.Context(), 60*time.Second)
	defer stop()
	// -u: perfdhcp checks that no address is given to two clients.
	out, err := exec.CommandContext(runCtx, "ip", "netns", "exec", p.client, perf, "-4", "-u",
		"-r", "20", "-R", fmt.Sprint(n), "-n", fmt.Sprint(n), "-W", "2000000",
		"-l", giaddr.String(), p.serverIP.String()).CombinedOutput()
	if err != nil && runCtx.Err() != nil {
		t.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	text := string(out)
	_, section, ok := strings.Cut(text, "Statistics for: REQUEST-ACK")
	if !ok {
		t.Fatalf("perfdhcp printed no REQUEST-ACK statistics:\n%s", text)
	}
	stat := func(key string) int {
		_, rest, _ := strings.Cut(section, key+":")
		var v int
		fmt.Sscan(rest, &v)
		return v
	}
	sent, recv, nonUnique := stat("sent packets"), stat("received packets"), stat("non unique addresses")
	t.Logf("perfdhcp REQUEST-ACK: sent %d, received %d, non unique %d", sent, recv, nonUnique)
	if sent == 0 || recv != sent || nonUnique != 0 {
		t.Fatalf("perfdhcp: REQUEST-ACK sent %d received %d, non unique %d\n%s", sent, recv, nonUnique, text)
	}
	relayPool := netip.MustParsePrefix("198.51.100.0/24")
	for _, l := range s.Leases() {
		if !relayPool.Contains(l.IP) {
			t.Errorf("relayed lease %s outside the relay's pool", l.IP)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if relays[giaddr] != recv || len(relays) != 1 {
		t.Errorf("acks by relay %v, want %d via %s", relays, recv, giaddr)
	}
}
