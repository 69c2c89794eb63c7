package conductor

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/metalbed/metalbed/provisioner"
)

// TestMetricsDeployAndClean walks a node through a deploy (with a
// call-back wait) and a cleaning that fails: one deploy_seconds and one
// clean_seconds observation, each with its duration from the first state
// to the last, and the time in each state left. A second conductor on the
// same registry (a restart) shares the collectors.
func TestMetricsDeployAndClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newCondMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newCondMetrics(reg); err != nil {
		t.Fatalf("second conductor on one registry: %v", err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &provisioner.Node{UUID: "u1", ProvisionState: provisioner.StateAvailable, Interfaces: provisioner.Interfaces{Deploy: "iscsi"}}
	since := t0
	step := func(to provisioner.ProvisionState, ev Event, after time.Duration) {
		from := n.ProvisionState
		now := since.Add(after)
		n.ProvisionState = to
		m.transition(n, from, since, now, ev)
		since = now
	}
	step(provisioner.StateDeploying, EventDeploy, time.Second)
	step(provisioner.StateWaitCallback, EventWait, 2*time.Second)
	step(provisioner.StateDeploying, EventResume, 30*time.Second)
	step(provisioner.StateActive, EventDone, 8*time.Second)      // deploy: 40 s
	step(provisioner.StateDeleting, EventDelete, time.Minute)    // active for a minute
	step(provisioner.StateCleaning, EventClean, time.Second)     // cleaning starts
	step(provisioner.StateCleanWait, EventWait, time.Second)     //
	step(provisioner.StateCleanFailed, EventFail, 5*time.Second) // clean: 6 s, failed

	want := `
# HELP metalbed_conductor_deploy_seconds Deploys from entering deploying to active (success) or deploy failed (failure).
# TYPE metalbed_conductor_deploy_seconds histogram
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="1"} 0
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="3"} 0
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="9"} 0
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="27"} 0
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="81"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="243"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="729"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="2187"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="6561"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="19683"} 1
metalbed_conductor_deploy_seconds_bucket{deploy_interface="iscsi",result="success",le="+Inf"} 1
metalbed_conductor_deploy_seconds_sum{deploy_interface="iscsi",result="success"} 40
metalbed_conductor_deploy_seconds_count{deploy_interface="iscsi",result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "metalbed_conductor_deploy_seconds"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.transitions.WithLabelValues("wait call-back", "deploying")); got != 1 {
		t.Errorf("wait call-back → deploying: %v", got)
	}
	h := func(vec *prometheus.HistogramVec, labels ...string) (count uint64, sum float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, met := range mf.GetMetric() {
				if met.Histogram == nil || len(met.GetLabel()) != len(labels) {
					continue
				}
				match := true
				for i, l := range met.GetLabel() {
					match = match && l.GetValue() == labels[i]
				}
				if match && mf.GetName() == vecName(vec) {
					return met.GetHistogram().GetSampleCount(), met.GetHistogram().GetSampleSum()
				}
			}
		}
		return 0, 0
	}
	if c, s := h(m.cleans, "iscsi", "failure"); c != 1 || s != 6 {
		t.Errorf("clean_seconds{iscsi,failure}: count %d sum %v, want 1 and 6", c, s)
	}
	if c, s := h(m.stateTime, "active"); c != 1 || s != 60 {
		t.Errorf("state_seconds{active}: count %d sum %v, want 1 and 60", c, s)
	}
	if c, s := h(m.stateTime, "deploying"); c != 2 || s != 10 {
		t.Errorf("state_seconds{deploying}: count %d sum %v, want 2 and 10", c, s)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// vecName is the fully-qualified name of vec's metric, read from its Desc.
func vecName(vec *prometheus.HistogramVec) string {
	ch := make(chan *prometheus.Desc, 1)
	vec.Describe(ch)
	d := (<-ch).String()
	_, rest, _ := strings.Cut(d, `fqName: "`)
	name, _, _ := strings.Cut(rest, `"`)
	return name
}
