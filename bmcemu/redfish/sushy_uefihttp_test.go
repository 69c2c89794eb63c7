package redfish

import (
	"strings"
	"testing"
)

// TestSushyUefiHttp: sushy sets a UefiHttp override on a legacy machine
// (refused), in UEFI mode with an HttpBootUri PATCHed through its
// connector (accepted, read back), and powers the machine on: the machine
// is told the URI and its boot consumes the override.
func TestSushyUefiHttp(t *testing.T) {
	requireSushy(t)
	b := startBed(t, bedOptions{})
	m := b.machines[0]
	const uri = "https://127.0.0.1:8443/boot/ipxe.efi"
	out := b.runSushy(t, "sushy_uefihttp.py", []string{"RF_HTTP_URI=" + uri})
	if !strings.Contains(out, "ALL OK") {
		t.Fatalf("sushy script did not finish:\n%s", out)
	}
	if got, http := m.lastBoot(), m.lastHTTPBoot(); got != "1 efi=true" || http != uri {
		t.Errorf("boot %q fetching %q, want a UEFI HTTP boot of %s", got, http, uri)
	}
}
