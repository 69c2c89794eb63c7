package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// API microversions the agent's calls depend on (IPA's ironic_api_client).
var (
	minIronicVersion   = apiVersion{1, 31}
	agentVersionAPI    = apiVersion{1, 36} // heartbeat carries agent_version
	agentTokenAPI      = apiVersion{1, 62} // heartbeat carries agent_token
	maxKnownAPI        = apiVersion{1, 68}
	lookupEndpointAPI  = apiVersion{1, 22} // GET /v1/lookup exists
	redactedToken      = "******"
	maxLookupInterval  = 30 * time.Second
	ironicCallDeadline = 60 * time.Second
)

type apiVersion struct{ major, minor int }

func (v apiVersion) less(o apiVersion) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

func (v apiVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func minVersion(a, b apiVersion) apiVersion {
	if a.less(b) {
		return a
	}
	return b
}

func parseAPIVersion(s string) (apiVersion, error) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ".")
	a, e1 := strconv.Atoi(maj)
	b, e2 := strconv.Atoi(min)
	if !ok || e1 != nil || e2 != nil || a < 0 || b < 0 {
		return apiVersion{}, fmt.Errorf("bad API version %q", s)
	}
	return apiVersion{a, b}, nil
}

// ironicClient talks to the Ironic API as IPA's APIClient does.
type ironicClient struct {
	cfg   *Config
	say   func(string, ...any)
	fault func(op string) (action, arg string)

	mu      sync.Mutex
	version *apiVersion
}

// lookupResult is what the agent keeps of a lookup answer.
type lookupResult struct {
	UUID             string
	Node             map[string]any
	HeartbeatTimeout int
	Token            string
	TokenRequired    bool
	Legacy           bool
}

// parseLookup reads a lookup answer: modern ({"node", "config"}) or
// legacy ({"node", "heartbeat_timeout"}). It is the agent's decoder of
// untrusted server bytes.
func parseLookup(body []byte) (lookupResult, error) {
	var doc struct {
		Node             map[string]any  `json:"node"`
		Config           map[string]any  `json:"config"`
		HeartbeatTimeout json.RawMessage `json:"heartbeat_timeout"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return lookupResult{}, fmt.Errorf("decode lookup answer: %w", err)
	}
	uuid, _ := doc.Node["uuid"].(string)
	if uuid == "" {
		return lookupResult{}, errors.New("lookup answer has no node uuid")
	}
	res := lookupResult{UUID: uuid, Node: doc.Node}
	var hb any
	if doc.Config != nil {
		hb = doc.Config["heartbeat_timeout"]
		res.Token, _ = doc.Config["agent_token"].(string)
		res.TokenRequired, _ = doc.Config["agent_token_required"].(bool)
	} else if len(doc.HeartbeatTimeout) > 0 {
		json.Unmarshal(doc.HeartbeatTimeout, &hb)
	}
	switch v := hb.(type) {
	case float64:
		if v >= 1 && v <= 1e7 {
			res.HeartbeatTimeout = int(math.Round(v))
		}
	case string:
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 1e7 {
			res.HeartbeatTimeout = n
		}
	}
	if res.HeartbeatTimeout == 0 {
		return lookupResult{}, fmt.Errorf("lookup answer has no usable heartbeat_timeout (%v)", hb)
	}
	return res, nil
}

// faultString reads Ironic's error body: {"error_message": "<JSON string
// holding {faultstring, ...}>"}, falling back to the text.
func faultString(body []byte) string {
	var outer map[string]any
	if err := json.Unmarshal(body, &outer); err == nil {
		em := outer["error_message"]
		if s, ok := em.(string); ok {
			var inner map[string]any
			if json.Unmarshal([]byte(s), &inner) == nil {
				em = inner
			} else {
				return s
			}
		}
		if m, ok := em.(map[string]any); ok {
			if fs, ok := m["faultstring"].(string); ok && fs != "" {
				return fs
			}
			if t, ok := m["title"].(string); ok && t != "" {
				return t
			}
		}
		if fs, ok := outer["faultstring"].(string); ok {
			return fs
		}
	}
	return strings.TrimSpace(string(body))
}

func (ic *ironicClient) do(ctx context.Context, method, path string, body any, version string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ironicCallDeadline)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, ic.cfg.APIURL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if version != "" {
		req.Header.Set("X-OpenStack-Ironic-API-Version", version)
	}
	if ic.cfg.GlobalRequestID != "" {
		req.Header.Set("X-OpenStack-Request-ID", ic.cfg.GlobalRequestID)
	}
	resp, err := ic.cfg.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// apiVersion is the API version the agent talks: configured, or the API
// root's default_version (the newest it serves), else 1.31 as IPA falls
// back to.
func (ic *ironicClient) apiVersion(ctx context.Context) apiVersion {
	ic.mu.Lock()
	if ic.version != nil {
		v := *ic.version
		ic.mu.Unlock()
		return v
	}
	ic.mu.Unlock()
	if ic.cfg.IronicAPIVersion != "" {
		if v, err := parseAPIVersion(ic.cfg.IronicAPIVersion); err == nil {
			ic.setVersion(v)
			return v
		}
	}
	status, body, err := ic.do(ctx, http.MethodGet, "/", nil, "")
	if err == nil && status == http.StatusOK {
		var root struct {
			DefaultVersion struct {
				Version string `json:"version"`
			} `json:"default_version"`
		}
		if json.Unmarshal(body, &root) == nil {
			if v, err := parseAPIVersion(root.DefaultVersion.Version); err == nil {
				ic.setVersion(v)
				return v
			}
		}
	}
	ic.say("could not discover the Ironic API version (status %d, %v); using %s", status, err, minIronicVersion)
	return minIronicVersion
}

func (ic *ironicClient) setVersion(v apiVersion) {
	ic.mu.Lock()
	ic.version = &v
	ic.mu.Unlock()
}

// lookup retries until Ironic knows the node or LookupTimeout passes,
// waiting a random exponential backoff between tries (tenacity's
// wait_random_exponential in IPA).
func (ic *ironicClient) lookup(ctx context.Context, inv *Inventory) (lookupResult, error) {
	deadline := time.Now().Add(ic.cfg.LookupTimeout)
	var macs []string
	for _, n := range inv.Interfaces {
		if n.MACAddress != "" {
			macs = append(macs, n.MACAddress)
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := ic.lookupOnce(ctx, inv, macs)
		if err == nil {
			return res, nil
		}
		ic.say("lookup with addresses %s failed: %v", strings.Join(macs, ","), err)
		ic.cfg.Logger.Warn("lookup failed", "mac", strings.Join(macs, ","), "err", err)
		upper := float64(ic.cfg.LookupInterval) * math.Pow(2, float64(min(attempt, 20)))
		upper = min(upper, float64(maxLookupInterval))
		wait := time.Duration(rand.Float64() * upper)
		wait = max(wait, ic.cfg.LookupInterval)
		if time.Now().Add(wait).After(deadline) {
			return lookupResult{}, fmt.Errorf("Error getting configuration from Ironic: Could not look up node info. Check logs for details. (last: %w)", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return lookupResult{}, ctx.Err()
		case <-t.C:
		}
	}
}

func (ic *ironicClient) lookupOnce(ctx context.Context, inv *Inventory, macs []string) (lookupResult, error) {
	ver := ic.apiVersion(ctx)
	if !ver.less(lookupEndpointAPI) {
		q := url.Values{"addresses": {strings.Join(macs, ",")}}
		if ic.cfg.NodeUUID != "" {
			q.Set("node_uuid", ic.cfg.NodeUUID)
		}
		var status int
		var body []byte
		var err error
		if action, _ := ic.fault("lookup"); action == "lookup-404" {
			// An injected fault: the lookup never reaches Ironic (which
			// would mint the node's one agent token) and is answered
			// with the 404 Ironic gives a node not waiting for a ramdisk.
			status, body = http.StatusNotFound, lookup404(macs)
		} else {
			status, body, err = ic.do(ctx, http.MethodGet, "/v1/lookup?"+q.Encode(), nil, minVersion(ver, maxKnownAPI).String())
		}
		if err != nil {
			return lookupResult{}, err
		}
		if status == http.StatusOK {
			return parseLookup(body)
		}
		if status != http.StatusNotFound && status != http.StatusNotAcceptable {
			return lookupResult{}, fmt.Errorf("Error %d: %s", status, faultString(body))
		}
		// 404 is also a node not in a lookup state; 406 a too-old API:
		// either way try the Liberty-era endpoint before retrying.
		res, lerr := ic.legacyLookup(ctx, inv)
		if lerr == nil {
			return res, nil
		}
		return lookupResult{}, fmt.Errorf("Error %d: %s (legacy lookup: %v)", status, faultString(body), lerr)
	}
	return ic.legacyLookup(ctx, inv)
}

// legacyLookup is IPA's Liberty lookup: POST the inventory to the driver's
// vendor_passthru.
func (ic *ironicClient) legacyLookup(ctx context.Context, inv *Inventory) (lookupResult, error) {
	body := map[string]any{"version": "2", "inventory": inv}
	if ic.cfg.NodeUUID != "" {
		body["node_uuid"] = ic.cfg.NodeUUID
	}
	if action, _ := ic.fault("lookup"); action == "lookup-404" {
		return lookupResult{}, fmt.Errorf("Invalid status code: %d", http.StatusNotFound)
	}
	status, resp, err := ic.do(ctx, http.MethodPost, "/v1/drivers/"+url.PathEscape(ic.cfg.DriverName)+"/vendor_passthru/lookup", body, "")
	if err != nil {
		return lookupResult{}, err
	}
	if status != http.StatusOK {
		return lookupResult{}, fmt.Errorf("Invalid status code: %d", status)
	}
	res, err := parseLookup(resp)
	if err != nil {
		return lookupResult{}, err
	}
	res.Legacy = true
	return res, nil
}

// lookup404 is Ironic's 404 body for a lookup of addresses no waiting
// node has.
func lookup404(macs []string) []byte {
	inner, _ := json.Marshal(map[string]any{"faultcode": "Client", "debuginfo": nil,
		"faultstring": fmt.Sprintf("Node with address(es) %s could not be found.", strings.Join(macs, ","))})
	b, _ := json.Marshal(map[string]string{"error_message": string(inner)})
	return b
}

// heartbeatError is a heartbeat Ironic refused; conflict marks a 409.
type heartbeatError struct {
	conflict bool
	msg      string
}

func (e *heartbeatError) Error() string { return e.msg }

// heartbeat posts one heartbeat.
func (ic *ironicClient) heartbeat(ctx context.Context, lk lookupResult, callback, token string) error {
	var status int
	var body []byte
	var err error
	if lk.Legacy {
		status, body, err = ic.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(lk.UUID)+"/vendor_passthru/heartbeat",
			map[string]any{"agent_url": callback}, "")
	} else {
		ver := ic.apiVersion(ctx)
		data := map[string]any{"callback_url": callback}
		if !ver.less(agentTokenAPI) {
			data["agent_token"] = token
		}
		if !ver.less(agentVersionAPI) {
			data["agent_version"] = ic.cfg.Version
		}
		status, body, err = ic.do(ctx, http.MethodPost, "/v1/heartbeat/"+url.PathEscape(lk.UUID), data, minVersion(ver, maxKnownAPI).String())
	}
	if err != nil {
		return &heartbeatError{msg: "Error heartbeating to agent API: " + err.Error()}
	}
	switch status {
	case http.StatusAccepted:
		return nil
	case http.StatusConflict:
		return &heartbeatError{conflict: true, msg: fmt.Sprintf("ConflictError heartbeating to agent API: Error %d: %s", status, faultString(body))}
	}
	return &heartbeatError{msg: fmt.Sprintf("Error heartbeating to agent API: Error %d: %s", status, faultString(body))}
}
