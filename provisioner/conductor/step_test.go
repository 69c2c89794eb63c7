package conductor

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

func TestStepEvent(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		step drivers.Step
		err  error
		want Event
	}{
		{drivers.StepWait, nil, EventWait},
		{drivers.StepDone, nil, EventDone},
		{0, boom, EventFail},
		{drivers.StepDone, boom, EventFail},
		{0, nil, EventFail},
	} {
		got, err := stepEvent(tc.step, tc.err)
		if got != tc.want || (tc.want == EventFail) != (err != nil) {
			t.Errorf("stepEvent(%v, %v) = %s, %v; want %s", tc.step, tc.err, got, err, tc.want)
		}
	}
}

// TestFailedStepKeepsIronicMessage: a DeployError's message becomes
// last_error as it is; another error gets the caller's context.
func TestFailedStepKeepsIronicMessage(t *testing.T) {
	p := &testPower{state: provisioner.PowerOff}
	h := start(t, openStore(t, ":memory:"), testTypes(t, p, nil), nil)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&drivers.DeployError{Msg: "Deploy failed for instance None. Error: gone", Err: fs.ErrNotExist},
			"Deploy failed for instance None. Error: gone"},
		{errors.New("power on: BMC unreachable"), "Failed to deploy: power on: BMC unreachable"},
	} {
		n := newNode(t, h, provisioner.StateDeploying)
		h.c.afterStep(t.Context(), n, 0, tc.err, func(err error) string { return "Failed to deploy: " + err.Error() })
		got, err := h.st.Node(t.Context(), n.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ProvisionState != provisioner.StateDeployFailed || got.LastError != tc.want {
			t.Errorf("after %v: %s %q, want deploy failed %q", tc.err, got.ProvisionState, got.LastError, tc.want)
		}
	}
}
