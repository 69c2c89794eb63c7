package conductor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// heartbeatDeploy is a deploy interface driven by the agent: each
// heartbeat it is handed finishes the deploy.
type heartbeatDeploy struct {
	drivers.FakeDeploy
	calls atomic.Int32
}

func (d *heartbeatDeploy) Heartbeat(context.Context, *drivers.Task) (drivers.Step, error) {
	d.calls.Add(1)
	return drivers.StepDone, nil
}

// grabbingStore takes a node's lock for "power-sync" the moment the
// conductor releases it, once armed, and gives it back a second later (longer than the heartbeat retries): a
// periodic task slipping in whenever the lock is free.
type grabbingStore struct {
	store.Store
	mu    sync.Mutex
	armed string // node UUID
	grabs int
}

func (s *grabbingStore) ReleaseNode(ctx context.Context, uuid, host string) error {
	if err := s.Store.ReleaseNode(ctx, uuid, host); err != nil {
		return err
	}
	s.mu.Lock()
	grab := s.armed == uuid && host != "power-sync"
	if grab {
		s.armed = ""
		s.grabs++
	}
	s.mu.Unlock()
	if grab {
		if _, err := s.Store.ReserveNode(ctx, uuid, "power-sync"); err == nil {
			time.AfterFunc(time.Second, func() { s.Store.ReleaseNode(context.Background(), uuid, "power-sync") })
		}
	}
	return nil
}

func (s *grabbingStore) arm(uuid string) {
	s.mu.Lock()
	s.armed = uuid
	s.mu.Unlock()
}

// waitingNode is a node in "wait call-back" whose agent holds token.
func waitingNode(t *testing.T, h *harness, token string) *provisioner.Node {
	t.Helper()
	n := newNode(t, h, provisioner.StateWaitCallback)
	n, err := h.st.Node(t.Context(), n.UUID)
	if err != nil {
		t.Fatal(err)
	}
	n.DriverInternalInfo = map[string]any{"agent_secret_token": token}
	if err := h.st.UpdateNode(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHeartbeatHoldsTheLock: a heartbeat records itself and resumes the
// node under one lock. A task taking the lock whenever it is free (a
// power sync) cannot come between recording and resuming, which left the
// heartbeat ignored and the node waiting minutes for the agent's next
// one; a node locked past the retries answers NodeLocked (409: the agent
// retries soon) and records nothing; a heartbeat that waited for the lock
// is checked against the node as it is after the wait.
func TestHeartbeatHoldsTheLock(t *testing.T) {
	d := &heartbeatDeploy{}
	st := &grabbingStore{Store: openStore(t, ":memory:")}
	h := start(t, st, testTypes(t, &testPower{state: provisioner.PowerOn}, d), func(c *Config) {
		c.LockRetries, c.LockRetryInterval = 1, 300*time.Millisecond
	})
	ctx := t.Context()

	n := waitingNode(t, h, "tok")
	st.arm(n.UUID)
	if err := h.c.Heartbeat(ctx, n.UUID, "tok", "http://127.0.0.1:9999", "9.9"); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	got := waitState(t, st, n.UUID, provisioner.StateActive)
	if d.calls.Load() != 1 || got.DriverInternalInfo["agent_url"] != "http://127.0.0.1:9999" {
		t.Errorf("deploy heartbeats %d, agent_url %v; want 1 and the callback URL", d.calls.Load(), got.DriverInternalInfo["agent_url"])
	}
	st.mu.Lock()
	if st.grabs != 1 {
		t.Errorf("the store grabbed the lock %d times, want once (the test proves nothing)", st.grabs)
	}
	st.mu.Unlock()

	// Locked past the retries: 409, nothing recorded.
	n = waitingNode(t, h, "tok2")
	if _, err := st.ReserveNode(ctx, n.UUID, "other-host"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Heartbeat(ctx, n.UUID, "tok2", "http://127.0.0.1:9998", "9.9"); KindOf(err) != KindLocked {
		t.Errorf("heartbeat on a locked node: %v, want NodeLocked", err)
	}
	if got, _ := st.Node(ctx, n.UUID); got.DriverInternalInfo["agent_url"] != nil || got.ProvisionState != provisioner.StateWaitCallback {
		t.Errorf("a refused heartbeat changed the node: %s %v", got.ProvisionState, got.DriverInternalInfo["agent_url"])
	}

	// The lock's holder gives the node a new agent token meanwhile (a new
	// deploy): the heartbeat that waited is refused.
	go func() {
		time.Sleep(100 * time.Millisecond)
		n, _ := st.Node(context.Background(), n.UUID)
		n.DriverInternalInfo["agent_secret_token"] = "new"
		st.UpdateNode(context.Background(), n)
		st.ReleaseNode(context.Background(), n.UUID, "other-host")
	}()
	if err := h.c.Heartbeat(ctx, n.UUID, "tok2", "http://127.0.0.1:9998", "9.9"); KindOf(err) != KindInvalid {
		t.Errorf("heartbeat with a token replaced while it waited: %v, want refused", err)
	}
	if err := h.c.Heartbeat(ctx, n.UUID, "new", "http://127.0.0.1:9998", "9.9"); err != nil {
		t.Fatalf("heartbeat with the new token: %v", err)
	}
	waitState(t, st, n.UUID, provisioner.StateActive)
}
