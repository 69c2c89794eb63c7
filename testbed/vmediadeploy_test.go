package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/vms"
)

// requireISOLoaders skips (fails under METALBED_INTEROP=required) when
// ISOLINUX or GRUB for the boot ISOs is not installed.
func requireISOLoaders(t *testing.T, bios, uefi bool) {
	t.Helper()
	if _, err := disk.DefaultISOLoaders(t.Context(), bios, uefi); err != nil {
		testenv.Unavailable(t, "boot ISOs need Debian's isolinux, syslinux-common and grub-efi-amd64-bin: "+err.Error())
	}
}

// vmediaBed serves simulated machines for nodes behind a plain-HTTP
// Redfish service and enrolls them with driver redfish, boot interface
// redfish-virtual-media (deploy interface direct).
func vmediaBed(t *testing.T, nodes []DemoNode) (*Testbed, map[string]string) {
	t.Helper()
	return isoBed(t, nodes, boot.VirtualMediaName)
}

// isoBed is vmediaBed with the boot interface bootIface
// (redfish-virtual-media or redfish-https).
func isoBed(t *testing.T, nodes []DemoNode, bootIface string) (*Testbed, map[string]string) {
	t.Helper()
	tb, err := New(Config{StateDir: t.TempDir(), Machines: DemoMachines(nodes, false), Provisioner: free(),
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	b := tb.provisioner()
	uuids, err := b.enroll(t.Context(), tb.fleet.enrollSpecs(b, bootIface, "redfish", tb.redfish))
	if err != nil {
		t.Fatal(err)
	}
	return tb, uuids
}

// kindsAfter returns the details of node's entries of kind recorded at or
// after since.
func kindsAfter(tb *Testbed, node string, kind events.Kind, since time.Time) []string {
	var out []string
	for _, e := range tb.Timeline().Node(node) {
		if e.Kind == kind && !e.Time.Before(since) {
			out = append(out, e.Detail)
		}
	}
	return out
}

// firstIndex is the index of node's first entry of kind whose detail
// contains sub, at or after from; -1 when none.
func firstIndex(entries []events.Entry, from int, kind events.Kind, sub string) int {
	for i := max(from, 0); i < len(entries); i++ {
		if entries[i].Kind == kind && strings.Contains(entries[i].Detail, sub) {
			return i
		}
	}
	return -1
}

// TestVirtualMediaDeploy deploys a BIOS and a UEFI simulated machine
// through metalbed's conductor with the redfish hardware type, the
// redfish-virtual-media boot interface and the agent's direct deploy, to
// active, and undeploys them back to available (automated cleaning boots
// the agent from virtual media again). Each node's timeline shows, in
// order: the ISO inserted into the Cd, a Once Cd override, the machine's
// boot from the CD, the agent's lookup and heartbeat, the image written,
// the Cd ejected, a Continuous Hdd override, the instance's boot from
// disk. The published ISO is gone after the deploy and after cleaning.
func TestVirtualMediaDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys two machines")
	}
	requireISOLoaders(t, true, true)
	nodes := []DemoNode{
		{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "agent deploy from virtual media (bios)"},
		{Mode: vms.UEFI, Option: "local", Deploy: "direct", What: "agent deploy from virtual media (uefi)"},
	}
	tb, uuids := vmediaBed(t, nodes)
	img, err := tb.BuildDemoImage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	b := tb.provisioner()
	results := make([]DemoResult, len(nodes))
	done := make(chan struct{})
	for i := range nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			name := tb.fleet.nodes[i].plan.Name
			results[i] = demoDeploy(ctx, b.client(), tb.Timeline(), name, uuids[name], nodes[i], img, nil)
		}()
	}
	for range nodes {
		<-done
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("deploy %s (%s): %v\n%s", r.Name, nodes[i].Mode, r.Err, dumpEntries(tb.Timeline().Node(r.Name)))
		}
	}
	for _, r := range results {
		entries := tb.Timeline().Node(r.Name)
		iso := b.httpURL() + "/redfish/boot-" + r.UUID + ".iso"
		steps := []struct {
			kind events.Kind
			sub  string
		}{
			{events.BMCRedfishMedia, "insert Cd " + iso},
			{events.BMCRedfishBoot, "target Cd, Once"},
			{events.MachineBoot, "cdrom"},
			{events.AgentLookup, ""},
			{events.AgentHeartbeat, ""},
			{events.AgentImageWritten, ""},
			{events.AgentPowerOff, ""},
			{events.MachineBoot, "disk"},
			{events.InstanceBooted, ""},
		}
		at, written := 0, 0
		for _, s := range steps {
			i := firstIndex(entries, at, s.kind, s.sub)
			if i < 0 {
				t.Fatalf("%s: no %s %q after entry %d in the timeline:\n%s", r.Name, s.kind, s.sub, at, dumpEntries(entries))
			}
			if s.kind == events.AgentImageWritten {
				written = i
			}
			at = i + 1
		}
		// Between the image written and the instance's boot: the Cd
		// ejected and a Continuous Hdd override, before the power on.
		boot := firstIndex(entries, written, events.MachineBoot, "disk")
		for _, s := range []struct {
			kind events.Kind
			sub  string
		}{{events.BMCRedfishMedia, "eject Cd"}, {events.BMCRedfishBoot, "target Hdd, Continuous"}} {
			if i := firstIndex(entries, written, s.kind, s.sub); i < 0 || i > boot {
				t.Errorf("%s: no %s %q between the image written and the boot from disk:\n%s", r.Name, s.kind, s.sub, dumpEntries(entries))
			}
		}
		if _, err := os.Stat(filepath.Join(b.httpRoot(), "redfish", "boot-"+r.UUID+".iso")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the ISO is still published after the deploy (%v)", r.Name, err)
		}
	}

	t0 := time.Now()
	tb.UndeployDemo(ctx, results)
	for _, r := range results {
		if r.UndeployErr != nil {
			t.Fatalf("undeploy %s: %v", r.Name, r.UndeployErr)
		}
		if !r.Wiped {
			t.Errorf("%s: cleaning did not wipe the disk", r.Name)
		}
		media := kindsAfter(tb, r.Name, events.BMCRedfishMedia, t0)
		if len(media) < 2 || !strings.HasPrefix(media[0], "insert Cd ") || media[len(media)-1] != "eject Cd" {
			t.Errorf("%s: virtual media while cleaning %q, want an insert and finally an eject", r.Name, media)
		}
		if _, err := os.Stat(filepath.Join(b.httpRoot(), "redfish", "boot-"+r.UUID+".iso")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the ISO is still published after cleaning (%v)", r.Name, err)
		}
	}
}

func dumpEntries(entries []events.Entry) string {
	var b strings.Builder
	for i, e := range entries {
		fmt.Fprintf(&b, "  %3d %s %s\n", i, e.Kind, e.Detail)
	}
	return b.String()
}
