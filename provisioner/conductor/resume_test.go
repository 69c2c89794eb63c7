package conductor

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// countingDeploy is testDeploy counting, per node, the calls a restart
// makes.
type countingDeploy struct {
	testDeploy
	mu                        sync.Mutex
	prepared, deployed, taken map[string]int
}

func newCountingDeploy() *countingDeploy {
	return &countingDeploy{testDeploy: testDeploy{result: drivers.StepWait},
		prepared: map[string]int{}, deployed: map[string]int{}, taken: map[string]int{}}
}

func (d *countingDeploy) count(m map[string]int, t *drivers.Task) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m[t.Node.UUID]++
}

func (d *countingDeploy) calls(uuid string) (prepared, deployed, taken int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prepared[uuid], d.deployed[uuid], d.taken[uuid]
}

func (d *countingDeploy) Prepare(ctx context.Context, t *drivers.Task) error {
	d.count(d.prepared, t)
	return nil
}

func (d *countingDeploy) Deploy(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	d.count(d.deployed, t)
	return d.result, nil
}

func (d *countingDeploy) TakeOver(ctx context.Context, t *drivers.Task) error {
	d.count(d.taken, t)
	return nil
}

// TestRestartResumesWaitingNodes: a conductor starting on a store where a
// node waits in "wait call-back" prepares its ramdisk boot again and
// boots it (Prepare, Deploy: the node waits again, unlocked), takes an
// active node over (TakeOver), and leaves a node in maintenance alone.
func TestRestartResumesWaitingNodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st := openStore(t, path)
	first := newCountingDeploy()
	h := start(t, st, testTypes(t, &testPower{}, first), nil)
	waiting := newNode(t, h, provisioner.StateWaitCallback)
	active := newNode(t, h, provisioner.StateActive)
	maint := newNode(t, h, provisioner.StateWaitCallback)
	if _, err := h.c.UpdateNode(t.Context(), maint.UUID, func(n *provisioner.Node) error {
		n.Maintenance = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.stop()
	st.Close()

	st2 := openStore(t, path)
	d := newCountingDeploy()
	h2 := start(t, st2, testTypes(t, &testPower{}, d), nil)
	waitFor(t, "the waiting node booted again and the active one taken over", func() bool {
		_, deployed, _ := d.calls(waiting.UUID)
		_, _, taken := d.calls(active.UUID)
		return deployed == 1 && taken == 1
	})
	got := waitState(t, st2, waiting.UUID, provisioner.StateWaitCallback)
	if p, _, _ := d.calls(waiting.UUID); p != 1 || got.LastError != "" || got.TargetProvisionState != provisioner.StateActive {
		t.Errorf("waiting node: %d prepares, %+v", p, got)
	}
	hist, err := st2.History(t.Context(), waiting.UUID)
	if err != nil || len(hist) == 0 || !strings.Contains(hist[len(hist)-1].Event, "restarted while the node was in wait call-back") {
		t.Errorf("history %+v, %v", hist, err)
	}
	waitState(t, st2, active.UUID, provisioner.StateActive)
	if p, dep, tk := d.calls(maint.UUID); p+dep+tk != 0 {
		t.Errorf("node in maintenance: %d prepares, %d deploys, %d take-overs", p, dep, tk)
	}
	if p, dep, tk := first.calls(waiting.UUID); p+dep+tk != 0 {
		t.Errorf("first start resumed a node created after it: %d %d %d", p, dep, tk)
	}
	h2.stop()
}

// TestResumeWaitsForItsGate: with ResumeAfter set, a waiting node is left
// as it is (unlocked, not prepared) until the gate closes, then carried on.
func TestResumeWaitsForItsGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st := openStore(t, path)
	h := start(t, st, testTypes(t, &testPower{}, newCountingDeploy()), nil)
	waiting := newNode(t, h, provisioner.StateWaitCallback)
	h.stop()
	st.Close()

	st2 := openStore(t, path)
	d := newCountingDeploy()
	gate := make(chan struct{})
	h2 := start(t, st2, testTypes(t, &testPower{}, d), func(c *Config) { c.ResumeAfter = gate })
	// The API answers meanwhile: a node call goes through, the node is
	// not locked.
	if _, err := h2.c.UpdateNode(t.Context(), waiting.UUID, func(n *provisioner.Node) error {
		n.DriverInfo["address"] = "127.0.0.2"
		return nil
	}); err != nil {
		t.Fatalf("node locked before the gate closed: %v", err)
	}
	if p, _, _ := d.calls(waiting.UUID); p != 0 {
		t.Fatalf("prepared before the gate closed")
	}
	close(gate)
	waitFor(t, "the node booted again", func() bool {
		_, deployed, _ := d.calls(waiting.UUID)
		return deployed == 1
	})
	if got := waitState(t, st2, waiting.UUID, provisioner.StateWaitCallback); got.DriverInfo["address"] != "127.0.0.2" {
		t.Errorf("driver_info %v", got.DriverInfo)
	}
}
