//go:build libvirt_dlopen

package libvirt

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchImageDial: InsertMedia fetches the image through Config.Dial —
// the testbed's HTTP boot server listens in the boot network's namespace,
// which the host reaches only through the namespace's dialer. Here the
// URL's host is one no resolver knows; only the dialer leads to the server.
func TestFetchImageDial(t *testing.T) {
	iso := bytes.Repeat([]byte("CD001"), 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/redfish/boot.iso" {
			http.NotFound(w, r)
			return
		}
		w.Write(iso)
	}))
	defer srv.Close()
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "cd.iso")
	if err := fetchImage(t.Context(), dial, "http://boot-network.invalid:8080/redfish/boot.iso", file); err != nil {
		t.Fatalf("fetchImage through the dialer: %v", err)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, iso) {
		t.Fatalf("fetched %d bytes (%v), want the %d-byte image", len(got), err, len(iso))
	}
	if len(dialed) != 1 || dialed[0] != "boot-network.invalid:8080" {
		t.Errorf("dialed %q, want the URL's host once", dialed)
	}

	err := fetchImage(t.Context(), dial, "http://boot-network.invalid:8080/redfish/missing.iso", filepath.Join(dir, "missing.iso"))
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("fetchImage of a missing image: %v, want the 404", err)
	}
	refused := errors.New("no route into the boot network")
	err = fetchImage(t.Context(), func(context.Context, string, string) (net.Conn, error) { return nil, refused },
		"http://boot-network.invalid:8080/redfish/boot.iso", filepath.Join(dir, "refused.iso"))
	if !errors.Is(err, refused) {
		t.Errorf("fetchImage with a failing dialer: %v, want %v", err, refused)
	}
	if _, err := os.Stat(filepath.Join(dir, "refused.iso")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed fetch left a file: %v", err)
	}
}
