package testbed

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
)

// TestFaultAPIRefusesWhatTheCLIRefuses: POST /v1/faults answers 400 with
// a clear message for an unknown node, a malformed arg and an unknown
// action, as `metalbed fault add` refuses them; DELETE /v1/faults/{id}
// removes one rule and answers 404 for an unknown ID.
func TestFaultAPIRefusesWhatTheCLIRefuses(t *testing.T) {
	b := &bed{tl: events.New(events.Config{}), faults: fault.NewSet()}
	b.tl.Learn(events.Identity{Machine: "node-0", NodeName: "bm0", Node: "6d3c9e3a-0d1c-4c4b-9d5e-4f0c2b1a7e10"})
	b.tl.Record(events.Event{Kind: events.MachineUp, Who: events.Who{Machine: "node-0"}})
	srv := httptest.NewServer(faultHandler(b.faults, HTTPBootInfo{}, knownNode(b.tl), http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"node":"node-9","layer":"ipmi","action":"drop"}`, 400, `fault node \"node-9\": no such machine or node here (machines: node-0)`},
		{`{"node":"node-0","layer":"ipmi","action":"cc","arg":"zz"}`, 400, `fault ipmi cc: arg \"zz\": want a completion code`},
		{`{"layer":"redfish","action":"status","arg":"abc"}`, 400, `fault redfish status: arg \"abc\": want an HTTP error status`},
		{`{"layer":"ipmi","action":"explode"}`, 400, `layer ipmi has no action \"explode\"`},
		{`{"node":"node-0","layer":"ipmi","action":"cc","arg":"0xc3"}`, 201, `"id":"f1"`},
		{`{"node":"bm0","layer":"ipmi","action":"drop"}`, 201, `"id":"f2"`},
		{`{"node":"6D3C9E3A-0D1C-4C4B-9D5E-4F0C2B1A7E10","layer":"ipmi","action":"drop"}`, 201, `"id":"f3"`},
		{`{"node":"*","layer":"redfish","action":"status","arg":"503"}`, 201, `"id":"f4"`},
	} {
		code, body := do(http.MethodPost, "/v1/faults", c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %d %s, want %d with %s", c.body, code, body, c.code, c.want)
		}
	}
	if code, body := do(http.MethodDelete, "/v1/faults/f2", ""); code != http.StatusNoContent {
		t.Errorf("DELETE f2: %d %s", code, body)
	}
	if code, body := do(http.MethodDelete, "/v1/faults/f2", ""); code != http.StatusNotFound || !strings.Contains(body, "no such fault rule") {
		t.Errorf("DELETE f2 again: %d %s", code, body)
	}
	_, body := do(http.MethodGet, "/v1/faults", "")
	var doc FaultsDoc
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range doc.Faults {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "f1 f3 f4" {
		t.Errorf("rules after DELETE f2: %v", ids)
	}
}
