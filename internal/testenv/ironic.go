package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Heartbeat is what an agent's heartbeat told the fake Ironic.
type Heartbeat struct {
	CallbackURL string `json:"callback_url"`
	AgentToken  string `json:"agent_token"`
}

// FakeIronic is the part of Ironic's API a deploy ramdisk's agent talks
// to: the version document, a lookup answered for one MAC (404 for any
// other address), and heartbeats, which arrive on Heartbeats (extra ones
// are dropped). It stops when the test ends.
type FakeIronic struct {
	URL        string
	Heartbeats <-chan Heartbeat
}

// IronicLookup is a lookup answer in Ironic 21.4's shape handing out
// token ("******" when Ironic hides one it handed out before).
func IronicLookup(token string) []byte {
	b, _ := json.Marshal(map[string]any{
		"node": map[string]any{"uuid": "603c03f7-93d4-4e40-99ff-26d6c463d0d3", "properties": map[string]any{},
			"instance_info": map[string]any{}, "driver_internal_info": map[string]any{}},
		"config": map[string]any{"heartbeat_timeout": 300, "agent_token": token, "agent_token_required": true},
	})
	return b
}

// NewFakeIronic serves lookup to lookups naming mac.
func NewFakeIronic(t testing.TB, mac string, lookup []byte) *FakeIronic {
	t.Helper()
	hbs := make(chan Heartbeat, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/lookup":
			if !strings.Contains(r.URL.Query().Get("addresses"), mac) {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(lookup)
		case strings.HasPrefix(r.URL.Path, "/v1/heartbeat/"):
			var hb Heartbeat
			json.NewDecoder(r.Body).Decode(&hb)
			select {
			case hbs <- hb:
			default:
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"versions":[{"id":"v1","status":"CURRENT","version":"1.82","min_version":"1.1"}],"default_version":{"id":"v1","status":"CURRENT","version":"1.82","min_version":"1.1"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return &FakeIronic{URL: srv.URL, Heartbeats: hbs}
}
