package testbed

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

// TestInjectNMI: PUT /v1/nodes/{node}/management/inject_nmi (what
// `baremetal node inject nmi` sends) reaches the powered machine as a
// diagnostic interrupt over IPMI: the machine records an NMI in the node's
// timeline. Before microversion 1.29 the route is not there (404).
func TestInjectNMI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free(), Enroll: true})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := NewClient(tb.APIURL())
	if err := c.Provision(ctx, "node-0", "manage"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitState(ctx, "node-0", "manageable", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPut, "/v1/nodes/node-0/states/power", map[string]any{"target": "power on"}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, func() bool {
		n, err := c.Node(ctx, "node-0")
		return err == nil && n.PowerState != nil && *n.PowerState == "power on"
	}, "node-0 powered on")
	if hasKind(tb, "node-0", events.MachineNMI) {
		t.Fatal("an NMI before any was injected")
	}
	if err := c.Do(ctx, http.MethodPut, "/v1/nodes/node-0/management/inject_nmi", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return hasKind(tb, "node-0", events.MachineNMI) }, "machine.NMI in node-0's timeline")

	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, tb.APIURL()+"/v1/nodes/node-0/management/inject_nmi", nil)
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.28")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("inject_nmi at 1.28: %d, want 404", resp.StatusCode)
	}
}
