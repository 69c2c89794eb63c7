package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestUpServesWeb: `up --web-addr 127.0.0.1:0` serves the dashboard,
// names it in the ready line and in inventory.json ("web"), and the fleet
// page lists the machines.
func TestUpServesWeb(t *testing.T) {
	u := startUp(t, t.TempDir(), "--nodes", "2")
	if u.inv.Web == "" || !strings.Contains(u.stdout.String(), ", web "+u.inv.Web) {
		t.Fatalf("inventory web %q; ready line %q", u.inv.Web, u.stdout)
	}
	body := httpGet(t, u.inv.Web+"/")
	for _, n := range u.inv.Nodes {
		if !strings.Contains(body, `id="row-`+n.Name+`"`) {
			t.Errorf("fleet page lacks %s", n.Name)
		}
	}
}

// TestUpWebDisabled: --web-addr "" serves no dashboard.
func TestUpWebDisabled(t *testing.T) {
	u := startUp(t, t.TempDir(), "--nodes", "1", "--web-addr", "")
	if u.inv.Web != "" || strings.Contains(u.stdout.String(), ", web ") {
		t.Errorf("inventory web %q; ready line %q", u.inv.Web, u.stdout)
	}
}

// TestWebReplayCommand: `metalbed web --replay FILE` serves the recorded
// timeline; without --replay it is a usage error.
func TestWebReplayCommand(t *testing.T) {
	if err := Run(t.Context(), []string{"web"}, io.Discard, io.Discard); ExitCode(err) != 2 {
		t.Errorf("web without --replay: %v", err)
	}
	path := filepath.Join(t.TempDir(), "timeline.jsonl")
	log := `{"time":"2026-12-01T10:00:00Z","node":"node-0","key":"m:node-0","source":"conductor","kind":"conductor.state","detail":"deploying → active","machine":"node-0"}
{"time":"2026-12-01T10:00:01Z","node":"node-0","key":"m:node-0","source":"conductor","kind":"conductor.state","detail":"active","machine":"node-0"}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"web", "--replay", path, "--web-addr", "127.0.0.1:0", "--speed", "0"}, out, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("web: %v", err)
		}
	}()
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	testenv.Eventually(t, 10*time.Second, func() bool { return url.MatchString(out.String()) }, "the URL printed: %v", out)
	base := url.FindString(out.String())
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(httpGet(t, base+"/"), `data-state="active"`)
	}, "the replay to reach active")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
