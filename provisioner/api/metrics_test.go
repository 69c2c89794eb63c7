package api_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"
)

// registerer is reg as a Registerer, nil (no metrics) when reg is nil.
func registerer(reg *prometheus.Registry) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return reg
}

// TestMetricsRoute: /metrics answers the Gatherer, counting requests by
// the route's pattern (never the node in the path) and status; it is
// public on a noauth API and behind the basic auth of an htpasswd.
func TestMetricsRoute(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("admin:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, htpasswd := range []string{"", path} {
		reg := prometheus.NewRegistry()
		s := newStack(t, stackOpts{htpasswd: htpasswd, metrics: reg})
		get := func(path string, auth bool) (int, string) {
			t.Helper()
			req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
			if auth {
				req.SetBasicAuth("admin", "s3cret")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		get("/v1/nodes/no-such-node", true)
		get("/v1/nodes/no-such-node/", true)
		if htpasswd != "" {
			if code, _ := get("/metrics", false); code != http.StatusUnauthorized {
				t.Errorf("with htpasswd, /metrics without credentials: %d", code)
			}
		}
		// A request is counted once its handler returned, which may be
		// after the client read the answer: scrape until it shows.
		want := `metalbed_api_requests_total{code="404",method="GET",route="/v1/nodes/{node}"} 2`
		var body string
		for deadline := time.Now().Add(10 * time.Second); ; {
			var code int
			if code, body = get("/metrics", htpasswd != ""); code != http.StatusOK {
				t.Fatalf("htpasswd %q: /metrics: %d %s", htpasswd, code, body)
			}
			if strings.Contains(body, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("htpasswd %q: no %s in\n%s", htpasswd, want, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if strings.Contains(body, "no-such-node") {
			t.Errorf("a node from a path in a label:\n%s", body)
		}
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		s.stop()
	}
}
