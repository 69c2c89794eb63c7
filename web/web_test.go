package web

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
)

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// deployEntries is a short deploy of node-0 as the timeline records it.
func deployEntries(t0 time.Time) []events.Event {
	who := events.Who{Machine: "node-0", Node: "1be26c0b-0000-4000-8000-000000000000", NodeName: "node-0"}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	return []events.Event{
		{Time: at(0), Kind: events.ConductorState, Detail: "enroll", Who: who},
		{Time: at(1), Kind: events.ConductorState, Detail: "manageable", Who: who},
		{Time: at(2), Kind: events.ConductorState, Detail: "available", Who: who},
		{Time: at(3), Kind: events.ConductorState, Detail: "deploying → active", Who: who},
		{Time: at(3.5), Kind: events.BMCChassisControl, Detail: "power on", Who: events.Who{Machine: "node-0"}},
		{Time: at(3.6), Kind: events.MachinePowerOn, Who: events.Who{Machine: "node-0"}},
		{Time: at(3.7), Kind: events.MachineBoot, Detail: "pxe", Who: events.Who{Machine: "node-0"}},
		{Time: at(4), Kind: events.DHCPAck, Detail: "127.1.0.10", Who: events.Who{Machine: "node-0", MAC: "52:54:00:00:00:01"}},
		{Time: at(5), Kind: events.ConductorState, Detail: "wait call-back → active", Who: who},
		{Time: at(6), Kind: events.RamdiskUp, Who: events.Who{Machine: "node-0"}},
		{Time: at(7), Kind: events.ISCSILogin, Who: events.Who{Machine: "node-0"}},
		{Time: at(9), Kind: events.ConductorState, Detail: "active", Who: who},
	}
}

func TestFleetAndNodePages(t *testing.T) {
	tl := events.New(events.Config{})
	for _, e := range deployEntries(time.Now().Add(-time.Minute)) {
		tl.Record(e)
	}
	s, err := New(Config{Timeline: tl, Machines: func() []Machine {
		return []Machine{{Name: "node-0", IPMI: "ipmi://127.0.0.1:6230", BootMode: "bios"}, {Name: "node-1", IPMI: "ipmi://127.0.0.1:6231"}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	fleet := get("/")
	for _, want := range []string{`id="row-node-0"`, `id="row-node-1"`, "ipmi://127.0.0.1:6230", `data-state="active"`, `data-power="on"`, "pxe"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet page lacks %q", want)
		}
	}
	node := get("/nodes/node-0")
	for _, want := range []string{`<svg class="lanes"`, `data-kind="dhcp.ack"`, `data-kind="iscsi.login"`, "wait call-back → active", "Ramdisk / agent"} {
		if !strings.Contains(node, want) {
			t.Errorf("node page lacks %q", want)
		}
	}
	if strings.Contains(node, `id="power-on"`) {
		t.Error("power buttons without an API")
	}
	if css := get("/static/style.css"); !strings.Contains(css, "#009E73") {
		t.Error("style.css not served")
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/nodes/nobody", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown node: %d", rec.Code)
	}
}

// TestLiveRows: an entry recorded while the fleet page is open reaches it
// as a re-rendered row over SSE.
func TestLiveRows(t *testing.T) {
	tl := events.New(events.Config{})
	s, err := New(Config{Timeline: tl, Machines: func() []Machine { return []Machine{{Name: "node-0"}} }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ln := mustListen(t)
	go s.Serve(ctx, ln) // subscribes to the timeline before it answers
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/events?gen=0", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	tl.Record(events.Event{Kind: events.ConductorState, Detail: "deploying → active", Who: events.Who{Machine: "node-0", Node: "u-1"}})
	br := bufio.NewReader(resp.Body)
	deadline := time.AfterFunc(10*time.Second, cancel)
	defer deadline.Stop()
	var got strings.Builder
	for !strings.Contains(got.String(), `data-state=\"deploying\"`) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended (%v) after %q", err, got.String())
		}
		got.WriteString(line)
	}
	if !strings.Contains(got.String(), "event: row") {
		t.Errorf("no row event: %q", got.String())
	}
}

// TestReplayPlays: a replay at once feeds the whole log into the
// shown timeline.
func TestReplayPlays(t *testing.T) {
	var es []events.Entry
	src := events.New(events.Config{})
	for _, e := range deployEntries(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		src.Record(e)
	}
	es = src.Node("node-0")
	s, err := New(Config{Replay: es, Speed: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Serve(ctx, mustListen(t))
	testenv.Eventually(t, 10*time.Second, func() bool { return len(s.timeline().Node("node-0")) == len(es) }, "all %d entries replayed", len(es))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/nodes/node-0", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "▶ replay") || !strings.Contains(string(body), `data-state="active"`) {
		t.Errorf("replay node page: %s", body)
	}
}

// TestActionsCallTheAPI: the node view's forms become the API's and the
// fault endpoint's requests, as a user's client sends them, and the
// browser goes back to the node view with the outcome.
func TestActionsCallTheAPI(t *testing.T) {
	type call struct{ method, path, version, body string }
	calls := make(chan call, 10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- call{r.Method, r.URL.Path, r.Header.Get("X-OpenStack-Ironic-API-Version"), string(b)}
		switch {
		case r.URL.Path == "/v1/faults" && r.Method == "GET":
			io.WriteString(w, `{"faults":[{"id":"f1","node":"node-0","layer":"ipmi","op":"power-on","action":"cc","count":1,"fired":0},{"id":"f2","node":"other","layer":"dhcp","action":"drop"}]}`)
		case r.URL.Path == "/v1/faults":
			w.WriteHeader(http.StatusCreated)
		case strings.HasSuffix(r.URL.Path, "/provision"):
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error_message": "{\"faultstring\": \"The requested action \\\"active\\\" can not be performed on node in state \\\"enroll\\\".\"}"}`)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer api.Close()
	tl := events.New(events.Config{})
	tl.Record(events.Event{Kind: events.ConductorState, Detail: "enroll", Who: events.Who{Machine: "node-0", Node: "uuid-0"}})
	s, err := New(Config{Timeline: tl, APIURL: api.URL, FaultsURL: api.URL, Machines: func() []Machine { return []Machine{{Name: "node-0"}} }})
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, form string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("POST %s = %d", path, rec.Code)
		}
		return rec.Header().Get("Location")
	}
	for _, c := range []struct {
		path, form string
		want       call
		loc        string
	}{
		{"/nodes/node-0/power", "target=power+off", call{"PUT", "/v1/nodes/uuid-0/states/power", "1.78", `{"target":"power off"}`}, "ok=asked+for+power+off"},
		{"/nodes/node-0/boot-device", "device=disk&persistent=true", call{"PUT", "/v1/nodes/uuid-0/management/boot_device", "1.78", `{"boot_device":"disk","persistent":true}`}, "ok=boot+device+disk"},
		{"/nodes/node-0/provision", "target=active", call{"PUT", "/v1/nodes/uuid-0/states/provision", "1.78", `{"target":"active"}`}, "can+not+be+performed"},
		{"/nodes/node-0/faults", "layer=ipmi&op=power-on&action=cc&arg=0xc0&count=2", call{"POST", "/v1/faults", "1.78",
			`{"id":"","node":"node-0","layer":"ipmi","op":"power-on","action":"cc","arg":"0xc0","count":2,"seed":0,"fired":0}`}, "ok=fault+ipmi+cc+injected"},
	} {
		loc := post(c.path, c.form)
		if got := <-calls; got != c.want {
			t.Errorf("POST %s %s: called %+v, want %+v", c.path, c.form, got, c.want)
		}
		if !strings.HasPrefix(loc, "/nodes/node-0?") || !strings.Contains(loc, c.loc) {
			t.Errorf("POST %s: back to %q, want %q", c.path, loc, c.loc)
		}
	}
	// Another site's page cannot post to the buttons.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/nodes/node-0/power", strings.NewReader("target=power+off"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("cross-site POST = %d, want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/nodes/node-0?ok=done", nil))
	<-calls // GET /v1/faults
	body := rec.Body.String()
	if !strings.Contains(body, "ipmi power-on cc") || strings.Contains(body, "dhcp") || !strings.Contains(body, "✔ done") {
		t.Errorf("node view: faults of the node and the outcome expected:\n%s", body)
	}
}
