package cli

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/metalbed/metalbed/internal/testenv"
)

// waitLine polls out for re's first submatch.
func waitLine(t *testing.T, out interface{ String() string }, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in %q", re, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// get GETs url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// checkScrape parses a scrape of url and checks every name in wants is in it.
func checkScrape(t *testing.T, url string, wants ...string) string {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	for _, w := range wants {
		if _, ok := mfs[w]; !ok {
			t.Errorf("GET %s: no %s", url, w)
		}
	}
	return body
}

// TestUpMetrics: `up --metrics-addr 127.0.0.1:0 --pprof` serves /metrics
// (the BMCs' counters, Go's) and /debug/pprof/ on a listener of its own;
// --pprof alone is a usage error.
func TestUpMetrics(t *testing.T) {
	u := startUp(t, t.TempDir(), "--nodes", "1", "--metrics-addr", "127.0.0.1:0", "--pprof")
	base := waitLine(t, u.stdout, regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+)/metrics`))
	checkScrape(t, base+"/metrics", "metalbed_bmc_packets_received_total", "metalbed_bmc_commands_total", "go_goroutines")
	if code, body := get(t, base+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/: %d %.200q", code, body)
	}
	u.stop(t)

	var out, errb strings.Builder
	err := Run(t.Context(), []string{"up", "--redfish-addr", "127.0.0.1:0", "--no-provisioner", "--state-dir", t.TempDir(), "--bmc-base-port", "0", "--pprof"}, &out, &errb)
	if ExitCode(err) != 2 {
		t.Errorf("up --pprof without --metrics-addr: %v", err)
	}
}

// TestProvisionerServeMetrics: `provisioner serve` answers /metrics on its
// API (requests counted by route pattern) and, with --metrics-addr, on a
// listener of its own with pprof; without --pprof there is none.
func TestProvisionerServeMetrics(t *testing.T) {
	for _, withPprof := range []bool{true, false} {
		ctx, cancel := context.WithCancel(t.Context())
		var out testenv.SyncBuffer
		done := make(chan error, 1)
		args := []string{"provisioner", "serve", "--addr", "127.0.0.1:0", "--state-dir", t.TempDir(),
			"--drivers", "fake-hardware", "--boot-servers=false", "--metrics-addr", "127.0.0.1:0"}
		if withPprof {
			args = append(args, "--pprof")
		}
		go func() { done <- Run(ctx, args, &out, io.Discard) }()
		api := waitLine(t, &out, regexp.MustCompile(`provisioner API on (http://127\.0\.0\.1:\d+)`))
		own := waitLine(t, &out, regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+)/metrics`))
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, _ := get(t, api+"/v1/drivers"); code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("API never answered /v1/drivers")
			}
			time.Sleep(20 * time.Millisecond)
		}
		want := `metalbed_api_requests_total{code="200",method="GET",route="/v1/drivers"}`
		for _, url := range []string{api + "/metrics", own + "/metrics"} {
			// Counted once the handler returned, maybe after the answer
			// arrived: scrape until it shows.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				body := checkScrape(t, url, "metalbed_api_requests_total", "metalbed_api_request_seconds", "go_goroutines")
				if strings.Contains(body, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s: no %s", url, want)
				}
			}
		}
		code, _ := get(t, own+"/debug/pprof/")
		if withPprof && code != http.StatusOK || !withPprof && code != http.StatusNotFound {
			t.Errorf("--pprof=%v: GET /debug/pprof/: %d", withPprof, code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve returned %v", err)
		}
	}
}
