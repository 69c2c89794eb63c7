package testbed

import (
	"net"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// TestMachinesOnlyTimeline: a testbed without the provisioner, with
// Config.TimelineAddr, records what a provisioner it does not run does to
// its machines. A virtual media boot through Redfish (as a real Ironic
// does it) puts the InsertMedia, the boot override, the boot from the CD
// and the agent's lookup and heartbeat into the machine's timeline at GET
// /v1/nodes/{machine}/timeline, which inventory.json names.
func TestMachinesOnlyTimeline(t *testing.T) {
	dhcpAddr := plainDHCP(t, net.IPv4(127, 77, 0, 10))
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), ExternalDHCP: dhcpAddr, TimelineAddr: "127.0.0.1:0",
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	inv := tb.Inventory()
	if inv.Timeline == "" || inv.Timeline != tb.TimelineURL() || inv.API != "" {
		t.Fatalf("inventory timeline %q, API %q: want the machines' timeline endpoint %q and no API", inv.Timeline, inv.API, tb.TimelineURL())
	}
	m := tb.fleet.nodes[0].machine
	api := testenv.NewFakeIronic(t, m.NICs()[0].MAC.String(), testenv.IronicLookup("******"))
	isos := serveISOs(t, deployISOsWith(t, "ipa-api-url="+api.URL+" ipa-agent-token=tl1 boot_method=vmedia"))
	newRedfishClient(t, tb, 0).bootCd(isos+"/bios.iso", "Legacy")
	select {
	case <-api.Heartbeats:
	case <-time.After(60 * time.Second):
		t.Fatal("the agent booted from virtual media never heartbeat")
	}
	want := []events.Kind{events.BMCRedfishMedia, events.BMCRedfishBoot, events.MachineBoot, events.AgentLookup, events.AgentHeartbeat}
	testenv.Eventually(t, 10*time.Second, func() bool {
		kinds, _ := timelineKinds(t, inv.Timeline, "node-0")
		for _, k := range want {
			if kinds[k] == 0 {
				return false
			}
		}
		return true
	}, "node-0's timeline at %s lacks one of %v", inv.Timeline, want)
	if _, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), TimelineAddr: "127.0.0.1:0", Provisioner: free()}); err == nil {
		t.Error("New accepted Config.TimelineAddr with a provisioner")
	}
}
