package agent

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxCommandBody bounds a command request: a config drive may be up to
// 64 MiB gzipped, base64 grows it by a third.
const maxCommandBody = 128 << 20

const (
	mediaType = "application/vnd.openstack.ironic-python-agent.v1+json"
	docsURL   = "https://docs.openstack.org/ironic-python-agent"
)

// Handler is the agent REST API (IPA's api/app.py), routed by path.
func (a *Agent) Handler() http.Handler {
	return http.HandlerFunc(a.serveHTTP)
}

func (a *Agent) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	// IPA serves the same routes without the /v1 prefix.
	if path != "/v1" && !strings.HasPrefix(path, "/v1/") && path != "/" {
		path = "/v1" + path
	}
	switch {
	case path == "/":
		a.get(w, r, a.apiRoot)
	case path == "/v1" || path == "/v1/":
		a.get(w, r, a.apiV1)
	case path == "/v1/status":
		a.get(w, r, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"started_at": float64(a.started.UnixNano()) / 1e9, "version": a.cfg.Version})
		})
	case path == "/v1/commands" || path == "/v1/commands/":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			a.listCommands(w, r)
		case http.MethodPost:
			a.runCommand(w, r)
		default:
			methodNotAllowed(w)
		}
	case strings.HasPrefix(path, "/v1/commands/") && !strings.Contains(path[len("/v1/commands/"):], "/"):
		a.get(w, r, func(w http.ResponseWriter, r *http.Request) { a.getCommand(w, r, path[len("/v1/commands/"):]) })
	default:
		writeFault(w, http.StatusNotFound, "404 Not Found: The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.")
	}
}

func (a *Agent) get(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w)
		return
	}
	h(w, r)
}

func methodNotAllowed(w http.ResponseWriter) {
	writeFault(w, http.StatusMethodNotAllowed, "405 Method Not Allowed: The method is not allowed for the requested URL.")
}

func urlRoot(r *http.Request) string {
	return "http://" + r.Host
}

func link(root, rel, resource string, bookmark bool) map[string]any {
	href := root + "/v1/" + resource
	if bookmark {
		href = root + "/" + resource
	}
	l := map[string]any{"href": href, "rel": rel}
	if rel == "describedby" {
		l["href"], l["type"] = docsURL, "text/html"
	}
	return l
}

func version(root string) map[string]any {
	return map[string]any{"id": "v1", "links": []any{link(root, "self", "v1", true), link(root, "describedby", "", true)}}
}

func (a *Agent) apiRoot(w http.ResponseWriter, r *http.Request) {
	root := urlRoot(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"name":            "OpenStack Ironic Python Agent API",
		"description":     "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
		"versions":        []any{version(root)},
		"default_version": version(root),
	})
}

func (a *Agent) apiV1(w http.ResponseWriter, r *http.Request) {
	root := urlRoot(r)
	v := version(root)
	v["commands"] = []any{link(root, "self", "commands", false), link(root, "bookmark", "commands", true)}
	v["status"] = []any{link(root, "self", "status", false), link(root, "bookmark", "status", true)}
	v["media_types"] = []any{map[string]any{"base": "application/json", "type": mediaType}}
	writeJSON(w, http.StatusOK, v)
}

// tokenValid checks a request's agent token against the one this agent was
// issued, in constant time. An agent without a token (the lookup answered
// "******": someone else took it) accepts nothing, and an empty token is
// never a match — only a conductor from before agent tokens (a legacy
// lookup that issued none, and none given on the command line) is obeyed
// without one, as IPA does.
func (a *Agent) tokenValid(token string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" {
		return a.tokenless && token == ""
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(a.token)) == 1
}

// getAllowed locks the result endpoints once a GET carried a token (IPA
// 10.2's compatible lock-out: older conductors, Ironic 21.4 among them,
// poll without one).
func (a *Agent) getAllowed(r *http.Request) bool {
	token := r.URL.Query().Get("agent_token")
	a.mu.Lock()
	if token != "" {
		a.getLocked = true
	}
	locked := a.getLocked
	a.mu.Unlock()
	return !locked || a.tokenValid(token)
}

func (a *Agent) listCommands(w http.ResponseWriter, r *http.Request) {
	if !a.getAllowed(r) {
		writeFault(w, http.StatusUnauthorized, "401 Unauthorized: Token invalid.")
		return
	}
	a.mu.Lock()
	list := append([]*command{}, a.commands...)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"commands": list})
}

func (a *Agent) getCommand(w http.ResponseWriter, r *http.Request, id string) {
	if !a.getAllowed(r) {
		writeFault(w, http.StatusUnauthorized, "401 Unauthorized: Token invalid.")
		return
	}
	a.mu.Lock()
	c := a.byID[id]
	a.mu.Unlock()
	if c == nil {
		writeError(w, errNotFound("Command Result", id))
		return
	}
	if strings.EqualFold(r.URL.Query().Get("wait"), "true") {
		select {
		case <-c.done:
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *Agent) runCommand(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCommandBody))
	if err != nil {
		writeFault(w, http.StatusBadRequest, "400 Bad Request: "+err.Error())
		return
	}
	name, p, err := decodeCommandRequest(body)
	if err != nil {
		writeFault(w, http.StatusBadRequest, "400 Bad Request: "+err.Error())
		return
	}
	if !a.tokenValid(r.URL.Query().Get("agent_token")) {
		a.cfg.Logger.Warn("command refused: bad agent token", "node", a.uuid(), "event", name)
		writeFault(w, http.StatusUnauthorized, "401 Unauthorized: Token invalid.")
		return
	}
	c, err := a.execute(name, p)
	if err != nil {
		writeError(w, err)
		return
	}
	if strings.EqualFold(r.URL.Query().Get("wait"), "true") {
		select {
		case <-c.done:
		case <-r.Context().Done():
			c.markResponded()
			return
		}
	}
	writeJSON(w, http.StatusOK, c)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	c.markResponded()
}

// errBadBody marks a command request that is not IPA's shape.
var errBadBody = errors.New("Missing or invalid name or params")

// decodeCommandRequest reads {"name": "<ext>.<cmd>", "params": {...}}.
func decodeCommandRequest(body []byte) (string, params, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return "", nil, fmt.Errorf("Failed to decode JSON object: %v", err)
	}
	if dec.More() {
		return "", nil, errors.New("Failed to decode JSON object: extra data after the object")
	}
	if raw == nil {
		return "", nil, errBadBody
	}
	nameRaw, ok1 := raw["name"]
	paramsRaw, ok2 := raw["params"]
	if !ok1 || !ok2 {
		return "", nil, errBadBody
	}
	var name string
	if err := json.Unmarshal(nameRaw, &name); err != nil {
		return "", nil, errBadBody
	}
	var p params
	if err := json.Unmarshal(paramsRaw, &p); err != nil || p == nil {
		return "", nil, errBadBody
	}
	return name, p, nil
}

// writeError maps an error to IPA's fault: RESTErrors carry their status.
func writeError(w http.ResponseWriter, err error) {
	var re *restError
	if errors.As(err, &re) {
		writeFault(w, re.Code, re.Error())
		return
	}
	writeFault(w, http.StatusInternalServerError, err.Error())
}

// writeFault writes IPA's WSME-style fault body.
func writeFault(w http.ResponseWriter, status int, msg string) {
	code := "Client"
	if status >= 500 {
		code = "Server"
	}
	writeJSON(w, status, map[string]string{"faultcode": code, "faultstring": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]string{"faultcode": "Server", "faultstring": err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
