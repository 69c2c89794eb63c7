package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/metalbed/metalbed/internal/fault"
)

// TestMetrics serves a testbed with its provisioner, Redfish and a metrics
// listener, drives the API (manage, power on), the BMC (through the
// conductor), Redfish and a fault, then scrapes /metrics over HTTP from
// the API and from the metrics listener and checks the counters moved,
// with no node UUID, name or MAC in any label and names that pass
// promlint.
func TestMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deploy ramdisk")
	}
	tb, err := New(Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free(), Enroll: true,
		Redfish: &Redfish{Addr: "127.0.0.1:0", PlainHTTP: true},
		Metrics: &Metrics{Addr: "127.0.0.1:0", PProf: true}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, tb)
	uuid := tb.NodeUUIDs()["node-0"]
	if uuid == "" {
		t.Fatalf("not enrolled: %v", tb.NodeUUIDs())
	}
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
	for {
		n, err := c.Node(ctx, "node-0")
		if err != nil {
			t.Fatal(err)
		}
		if n.PowerState != nil && *n.PowerState == "power on" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("node-0 never powered on")
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Redfish: one request a fault answers 500, then one answered 200.
	rule, _ := json.Marshal(fault.Rule{Node: "node-0", Layer: fault.Redfish, Op: "GET", Action: "status", Count: 1})
	res, err := http.Post(tb.TimelineURL()+"/v1/faults", "application/json", bytes.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/faults: %s", res.Status)
	}
	system := tb.RedfishURL() + "/redfish/v1/Systems/" + tb.Inventory().Nodes[0].UUID
	for _, want := range []int{http.StatusInternalServerError, http.StatusOK} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, system, nil)
		req.SetBasicAuth("admin", "password")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("GET %s: %s, want %d", system, res.Status, want)
		}
	}

	wants := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"metalbed_api_requests_total", map[string]string{"method": "PUT", "route": "/v1/nodes/{node}/states/provision", "code": "202"}, 1},
		{"metalbed_api_requests_total", map[string]string{"method": "PUT", "route": "/v1/nodes/{node}/states/power", "code": "202"}, 1},
		{"metalbed_api_requests_total", map[string]string{"method": "GET", "route": "/v1/nodes/{node}", "code": "200"}, 1},
		{"metalbed_api_request_seconds", map[string]string{"method": "GET", "route": "/v1/nodes/{node}"}, 1},
		{"metalbed_conductor_transitions_total", map[string]string{"from": "enroll", "to": "verifying"}, 1},
		{"metalbed_conductor_transitions_total", map[string]string{"from": "verifying", "to": "manageable"}, 1},
		{"metalbed_conductor_state_seconds", map[string]string{"state": "verifying"}, 1},
		{"metalbed_conductor_power_actions_total", map[string]string{"target": "power on", "result": "success"}, 1},
		{"metalbed_bmc_commands_total", nil, 1},
		{"metalbed_bmc_power_actions_total", nil, 1},
		{"metalbed_redfish_requests_total", map[string]string{"method": "GET", "code": "500"}, 1},
		{"metalbed_redfish_requests_total", map[string]string{"method": "GET", "code": "200"}, 1},
		{"metalbed_fault_fired_total", map[string]string{"layer": "redfish", "action": "status"}, 1},
		{"go_goroutines", nil, 1},
	}
	// A server counts a request once its handler returned, which may be
	// after the client read the answer: scrape until all have moved.
	var api map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		api = scrape(t, tb.APIURL()+"/metrics")
		var short []string
		for _, w := range wants {
			if got := value(api, w.name, w.labels); got < w.min {
				short = append(short, fmt.Sprintf("%s%v = %v, want at least %v", w.name, w.labels, got, w.min))
			}
		}
		if len(short) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters that did not move:\n%s", strings.Join(short, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Bounded cardinality: nothing that names a node or a NIC in a label.
	mac := machines(1)[0].MACs[0].String()
	for name, mf := range api {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, uuid) || strings.Contains(v, "node-0") || strings.Contains(v, mac) {
					t.Errorf("%s has label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}
	// The metrics listener serves the same registry, and pprof.
	own := scrape(t, tb.MetricsURL()+"/metrics")
	if got := value(own, "metalbed_conductor_transitions_total", map[string]string{"from": "enroll", "to": "verifying"}); got != 1 {
		t.Errorf("metrics listener: enroll → verifying %v times, want 1", got)
	}
	res, err = http.Get(tb.MetricsURL() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("goroutine")) {
		t.Errorf("GET /debug/pprof/: %s %.200q", res.Status, body)
	}
	// Names and help follow Prometheus' conventions (promtool check metrics).
	problems, err := testutil.GatherAndLint(tb.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "metalbed_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// scrape GETs url and parses Prometheus' text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return mfs
}

// value sums the samples of name whose labels include want: counters and
// gauges by value, histograms by count.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return 0
	}
	var sum float64
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		default:
			panic(fmt.Sprintf("%s: unexpected type", name))
		}
	}
	return sum
}
