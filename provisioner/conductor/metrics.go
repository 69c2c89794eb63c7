package conductor

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/internal/metrics"
	"github.com/metalbed/metalbed/provisioner"
)

// condMetrics are the conductor's metrics. Labels are provision states,
// power targets, interface names and results: bounded sets, never a node.
type condMetrics struct {
	transitions *prometheus.CounterVec   // from, to
	stateTime   *prometheus.HistogramVec // state
	deploys     *prometheus.HistogramVec // deploy_interface, result
	cleans      *prometheus.HistogramVec // deploy_interface, result
	power       *prometheus.CounterVec   // target, result
	powerTime   *prometheus.HistogramVec // target

	// started holds when each node's deploy or cleaning began (by node
	// UUID), in memory: one after a conductor restart is not measured.
	mu      sync.Mutex
	deploy  map[string]time.Time
	cleanAt map[string]time.Time
}

func newCondMetrics(reg prometheus.Registerer) (*condMetrics, error) {
	r := &metrics.Registry{Reg: reg}
	m := &condMetrics{
		transitions: r.CounterVec("conductor", "transitions_total",
			"Provision state transitions, by the state left and the state entered.", "from", "to"),
		stateTime: r.HistogramVec("conductor", "state_seconds",
			"Time nodes spent in a provision state, observed when they leave it.", metrics.SlowBuckets, "state"),
		deploys: r.HistogramVec("conductor", "deploy_seconds",
			"Deploys from entering deploying to active (success) or deploy failed (failure).", metrics.SlowBuckets, "deploy_interface", "result"),
		cleans: r.HistogramVec("conductor", "clean_seconds",
			"Cleanings from entering cleaning to available or manageable (success) or clean failed (failure).", metrics.SlowBuckets, "deploy_interface", "result"),
		power: r.CounterVec("conductor", "power_actions_total",
			"Power actions run on nodes, by target and result (success, skipped, failure).", "target", "result"),
		powerTime: r.HistogramVec("conductor", "power_action_seconds",
			"Duration of power actions on the BMC.", nil, "target"),
		deploy:  map[string]time.Time{},
		cleanAt: map[string]time.Time{},
	}
	return m, r.Err
}

// transition records n moving from from (entered at since) to its current
// provision state at now, by event.
func (m *condMetrics) transition(n *provisioner.Node, from provisioner.ProvisionState, since, now time.Time, event Event) {
	to := n.ProvisionState
	m.transitions.WithLabelValues(string(from), string(to)).Inc()
	if !since.IsZero() && now.After(since) {
		m.stateTime.WithLabelValues(string(from)).Observe(now.Sub(since).Seconds())
	}
	iface := n.Interfaces.Deploy
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case to == provisioner.StateDeploying && from != provisioner.StateWaitCallback:
		m.deploy[n.UUID] = now
	case to == provisioner.StateActive:
		m.finish(m.deploy, m.deploys, n.UUID, iface, "success", now)
	case to == provisioner.StateDeployFailed:
		m.finish(m.deploy, m.deploys, n.UUID, iface, result(event), now)
	case to == provisioner.StateCleaning && from != provisioner.StateCleanWait:
		m.cleanAt[n.UUID] = now
	case from == provisioner.StateCleaning && (to == provisioner.StateAvailable || to == provisioner.StateManageable):
		m.finish(m.cleanAt, m.cleans, n.UUID, iface, "success", now)
	case to == provisioner.StateCleanFailed:
		m.finish(m.cleanAt, m.cleans, n.UUID, iface, result(event), now)
	}
}

// finish observes the run of node that started in started, if known.
func (m *condMetrics) finish(started map[string]time.Time, h *prometheus.HistogramVec, node, iface, res string, now time.Time) {
	t0, ok := started[node]
	if !ok {
		return
	}
	delete(started, node)
	h.WithLabelValues(iface, res).Observe(now.Sub(t0).Seconds())
}

// result names how a run that did not succeed ended.
func result(event Event) string {
	if event == EventAbort {
		return "aborted"
	}
	return "failure"
}

// powerAction records a power action driving target.
func (m *condMetrics) powerAction(target provisioner.PowerState, res string, took time.Duration) {
	m.power.WithLabelValues(string(target), res).Inc()
	if res != "skipped" {
		m.powerTime.WithLabelValues(string(target)).Observe(took.Seconds())
	}
}
