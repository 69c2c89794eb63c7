package deploytest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
)

// AgentRecorder is an http.RoundTripper recording every call the
// conductor makes to an agent before passing it on.
type AgentRecorder struct {
	mu    sync.Mutex
	calls []string
}

// RoundTrip records req as "POST <command> wait=<wait>" for a command,
// "<method> <path>" otherwise, and sends it.
func (r *AgentRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	call := req.Method + " " + req.URL.Path
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var c struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(body, &c) == nil && c.Name != "" {
			call = req.Method + " " + c.Name + " wait=" + req.URL.Query().Get("wait")
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// Calls lists the calls so far.
func (r *AgentRecorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// Lookup is an agent's GET /v1/lookup by its MAC: the node it runs on and
// the token ("******" after the first lookup).
func (b *Bed) Lookup(mac string) (node, token string) {
	b.t.Helper()
	var lk struct {
		Node struct {
			UUID string `json:"uuid"`
		} `json:"node"`
		Config struct {
			Token string `json:"agent_token"`
		} `json:"config"`
	}
	b.MustCall("GET", "/v1/lookup?addresses="+mac, nil, &lk)
	return lk.Node.UUID, lk.Config.Token
}

// Heartbeat is an agent's POST /v1/heartbeat/<node> from callbackURL.
func (b *Bed) Heartbeat(node, token, callbackURL string) error {
	return b.Call(b.t.Context(), "POST", "/v1/heartbeat/"+node, map[string]any{
		"callback_url": callbackURL, "agent_token": token, "agent_version": "9.4.0"}, nil)
}
