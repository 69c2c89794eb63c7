package service

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store/sqlite"
)

// newService makes a Service over the fake hardware with its state in dir,
// and a listener on a free port for it.
func newService(t *testing.T, dir string) (*Service, net.Listener) {
	t.Helper()
	reg, err := drivers.NewRegistry(drivers.NewFakeHardware())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{StateDir: dir, Drivers: reg, Hostname: "svc-test"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return svc, ln
}

func serve(t *testing.T, dir string) (url string, stop func()) {
	t.Helper()
	svc, ln := newService(t, dir)
	return serveOn(t, svc, ln)
}

// serveOn serves svc on ln until stop or the test's end, and returns once
// svc is ready.
func serveOn(t *testing.T, svc *Service, ln net.Listener) (url string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ln) }()
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("service not ready")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.78")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

func waitState(t *testing.T, url, node, want string) map[string]any {
	t.Helper()
	var n map[string]any
	testenv.Eventually(t, 20*time.Second, func() bool {
		_, n = call(t, "GET", url+"/v1/nodes/"+node, "")
		return n["provision_state"] == want && n["reservation"] == nil
	}, "node %s %s", node, want)
	return n
}

// TestSurvivesRestartAndRecovers stops the service, leaves a node as a
// crashed conductor would (deploying, reserved by this host) and starts
// the service again on the same state directory.
func TestSurvivesRestartAndRecovers(t *testing.T) {
	dir := t.TempDir()
	url, stop := serve(t, dir)
	code, n := call(t, "POST", url+"/v1/nodes", `{"driver":"fake-hardware","name":"r0"}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, n)
	}
	code, _ = call(t, "POST", url+"/v1/ports", `{"address":"52:54:00:00:00:01","node_uuid":"`+n["uuid"].(string)+`"}`)
	if code != 201 {
		t.Fatalf("port create: %d", code)
	}
	call(t, "PUT", url+"/v1/nodes/r0/states/provision", `{"target":"manage"}`)
	waitState(t, url, "r0", "manageable")
	code, _ = call(t, "POST", url+"/v1/nodes", `{"driver":"fake-hardware","name":"crashed"}`)
	if code != 201 {
		t.Fatal("create crashed")
	}
	stop()

	st, err := sqlite.Open(t.Context(), filepath.Join(dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := st.Node(t.Context(), "crashed")
	c.ProvisionState, c.Reservation = provisioner.StateDeploying, "svc-test"
	if err := st.UpdateNode(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	st.Close()

	url, _ = serve(t, dir)
	got := waitState(t, url, "r0", "manageable")
	if got["power_state"] != "power off" {
		t.Errorf("r0 after restart: %v", got)
	}
	_, ports := call(t, "GET", url+"/v1/nodes/r0/ports", "")
	if len(ports["ports"].([]any)) != 1 {
		t.Errorf("ports after restart: %v", ports)
	}
	failed := waitState(t, url, "crashed", "deploy failed")
	if failed["last_error"] != "The deploying state can't be resumed by conductor svc-test. Moving to fail state." {
		t.Errorf("recovered node: %v", failed["last_error"])
	}
	_, conds := call(t, "GET", url+"/v1/conductors", "")
	if l := conds["conductors"].([]any); len(l) != 1 || l[0].(map[string]any)["alive"] != true {
		t.Errorf("conductors: %v", conds)
	}
}

// TestStopDuringStartIsClean: a stop (SIGINT) that lands while the store is
// still opening is a clean stop, not an error.
func TestStopDuringStartIsClean(t *testing.T) {
	svc, ln := newService(t, t.TempDir())
	defer ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := svc.Serve(ctx, ln); err != nil {
		t.Fatalf("Serve with a stopped context = %v, want nil", err)
	}
}
