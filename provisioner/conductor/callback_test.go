package conductor

import (
	"context"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// panicky is a deploy interface whose ramdisk callback panics.
type panicky struct{ drivers.FakeDeploy }

func (panicky) CallbackMethods() []drivers.VendorMethod {
	return []drivers.VendorMethod{{Name: "pass_deploy_info", HTTPMethods: []string{"POST"}, Async: true}}
}
func (panicky) ValidateCallback(context.Context, *provisioner.Node, string, map[string]any) error {
	return nil
}
func (panicky) Continue(context.Context, *drivers.Task, string, map[string]any) (drivers.Step, error) {
	panic("corrupt disk")
}

// TestRamdiskCallbackPanicFailsNode: a panicking callback fails its node
// and leaves the conductor serving; callbacks outside a wait are refused.
func TestRamdiskCallbackPanicFailsNode(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, panicky{}), nil)
	n := newNode(t, h, provisioner.StateAvailable)
	if _, _, err := h.c.VendorPassthru(t.Context(), n.UUID, "pass_deploy_info", "POST", nil); KindOf(err) != KindInvalid {
		t.Fatalf("callback while available: %v", err)
	}
	n, err := h.st.Node(t.Context(), n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	n.ProvisionState = provisioner.StateWaitCallback
	if err := h.st.UpdateNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if _, async, err := h.c.VendorPassthru(t.Context(), n.UUID, "pass_deploy_info", "POST", nil); err != nil || !async {
		t.Fatalf("callback: async %v err %v", async, err)
	}
	got := waitState(t, h.st, n.UUID, provisioner.StateDeployFailed)
	if got.LastError == "" {
		t.Error("no last_error")
	}
	if _, _, err := h.c.VendorPassthru(t.Context(), n.UUID, "pass_deploy_info", "POST", nil); KindOf(err) != KindInvalid {
		t.Errorf("callback after the failure: %v", err)
	}
}
