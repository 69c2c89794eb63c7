//go:build libvirt_dlopen

package testbed

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms/libvirt"
)

// TestBootNetworkWithoutProvisioner: with the libvirt backend and no
// provisioner, the VMs' boot network still exists, inventory.json names
// it, and the Redfish service answers inside it at the address the
// inventory gives, over HTTPS verified with its CA (what a real Ironic run
// in the namespace uses). Needs root and libvirtd (ci/libvirt/start.sh);
// skips without them unless METALBED_LIBVIRT=required. No VM is started.
func TestBootNetworkWithoutProvisioner(t *testing.T) {
	testenv.RequireLibvirt(t)
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Backend: "libvirt",
		Libvirt: Libvirt{BootNetwork: "10.236.7.1/24", RemoveVMs: true}, Redfish: &Redfish{Addr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)

	inv := tb.Inventory()
	bn := inv.BootNetwork
	if bn == nil || bn.Address != "10.236.7.1" || bn.Prefix != "10.236.7.0/24" || bn.Interface == "" {
		t.Fatalf("inventory boot_network %+v, want 10.236.7.1 in 10.236.7.0/24 with its interface", bn)
	}
	if _, err := os.Stat("/run/netns/" + bn.Namespace); err != nil {
		t.Fatalf("boot network namespace: %v", err)
	}
	if inv.API != "" {
		t.Errorf("inventory names an API (%s) without the provisioner", inv.API)
	}
	rf := inv.Nodes[0].Redfish
	if rf == nil || rf.BootNetworkAddress != "https://10.236.7.1:8000" {
		t.Fatalf("redfish %+v, want boot_network_address https://10.236.7.1:8000", rf)
	}
	ca, err := os.ReadFile(rf.VerifyCA.(string))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("CA %s: no certificate", rf.VerifyCA)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: libvirt.NamespaceDialer(bn.Namespace),
		TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rf.BootNetworkAddress+rf.SystemID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(rf.Username, rf.Password)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s from inside the boot network: %v", rf.SystemID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s from inside the boot network: %s", rf.SystemID, resp.Status)
	}
}
