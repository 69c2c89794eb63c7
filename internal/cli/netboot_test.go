package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	tftpclient "github.com/pin/tftp/v3"

	"github.com/metalbed/metalbed/internal/testenv"
)

func TestNetbootServe(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "pxelinux.0"), []byte("nbp bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs testenv.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"netboot", "serve",
			"--dhcp-addr", "127.0.0.1:0", "--server-ip", "192.0.2.1", "--range", "192.0.2.100-192.0.2.110",
			"--host", "52:54:00:00:00:01",
			"--tftp-root", root, "--tftp-addr", "127.0.0.1:0",
			"--http-root", root, "--http-addr", "127.0.0.1:0",
		}, &out, &errs)
	}()
	re := regexp.MustCompile(`(?m)^dhcp  (\S+) .*\n(?:.*\n)?tftp  (\S+) .*\nhttp  (\S+) `)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil; {
		select {
		case err := <-done:
			t.Fatalf("netboot serve exited: %v\n%s", err, errs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listen lines in %q", out.String())
		}
		m = re.FindStringSubmatch(out.String())
		time.Sleep(10 * time.Millisecond) // polling output with a deadline
	}

	// DHCP: a BIOS PXE client gets an address and pxelinux.0.
	srv, _ := net.ResolveUDPAddr("udp4", m[1])
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	c, err := nclient4.NewWithConn(conn, mac, nclient4.WithServerAddr(srv), nclient4.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lease, err := c.Request(t.Context(), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if err != nil {
		t.Fatal(err)
	}
	if lease.ACK.BootFileName != "pxelinux.0" || lease.ACK.YourIPAddr.String() != "192.0.2.100" {
		t.Fatalf("ack %s", lease.ACK.Summary())
	}

	// TFTP.
	tc, err := tftpclient.NewClient(m[2])
	if err != nil {
		t.Fatal(err)
	}
	wt, err := tc.Receive("pxelinux.0", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil || got.String() != "nbp bytes" {
		t.Fatalf("tftp: %q, %v", got.String(), err)
	}

	// HTTP.
	resp, err := http.Get(m[3] + "pxelinux.0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "nbp bytes" {
		t.Fatalf("http: %q", b)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNetbootServeUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--dhcp-addr", "127.0.0.1:0", "--range", "192.0.2.100-192.0.2.110"},                      // nobody to answer
		{"--dhcp-addr", "127.0.0.1:0", "--range", "bogus", "--answer-unknown"},                    // bad range
		{"--dhcp-addr", "0.0.0.0:0", "--range", "192.0.2.100-192.0.2.110", "--answer-unknown"},    // no server ip
		{"--dhcp-addr", "127.0.0.1:0", "--range", "192.0.2.100-192.0.2.110", "--host", "notamac"}, // bad MAC
	} {
		err := Run(t.Context(), append([]string{"netboot", "serve"}, args...), io.Discard, io.Discard)
		if ExitCode(err) != 2 {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
