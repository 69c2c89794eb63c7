package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
)

// apiVersion is the microversion steps send unless a step names one: the
// newest Ironic 21.4 speaks, which the reference captures use.
const apiVersion = "1.82"

// Timeouts of polling steps. A power action costs Ironic's pacing (5 s
// between two commands to one BMC) a few times over.
const (
	provisionTimeout = 90 * time.Second
	powerTimeout     = 90 * time.Second
	pollEvery        = 250 * time.Millisecond
)

type apiResponse struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// apiNode is the part of a node the steps read.
type apiNode struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState any            `json:"target_provision_state"`
	PowerState           any            `json:"power_state"`
	TargetPowerState     any            `json:"target_power_state"`
	LastError            any            `json:"last_error"`
	Reservation          any            `json:"reservation"`
	DriverInfo           map[string]any `json:"driver_info"`
	DeployInterface      string         `json:"deploy_interface"`
}

// call sends one API request with a version header (none when version is
// "") and returns the whole response.
func (w *world) call(ctx context.Context, method, path, version string, body any) (*apiResponse, error) {
	if err := w.needEnv(); err != nil {
		return nil, err
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, w.env.apiURL+path, rd)
	if err != nil {
		return nil, err
	}
	if version != "" {
		req.Header.Set("X-OpenStack-Ironic-API-Version", version)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return &apiResponse{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// must sends a request and fails unless the status is want.
func (w *world) must(ctx context.Context, want int, method, path string, body any) (*apiResponse, error) {
	r, err := w.call(ctx, method, path, apiVersion, body)
	if err != nil {
		return nil, err
	}
	if r.status != want {
		return r, fmt.Errorf("%s %s: HTTP %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r, nil
}

// nodeID is the API UUID of a node the scenario enrolled.
func (w *world) nodeID(name string) (string, error) {
	id, ok := w.nodes[name]
	if !ok {
		return "", fmt.Errorf("node %q was not enrolled in this scenario", name)
	}
	return id, nil
}

func (w *world) getNode(ctx context.Context, name string, n *apiNode) (*apiResponse, error) {
	id, err := w.nodeID(name)
	if err != nil {
		return nil, err
	}
	r, err := w.must(ctx, http.StatusOK, "GET", "/v1/nodes/"+id, nil)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(r.body, n)
}

// expand replaces {node-0}-style placeholders in a path or body with the
// UUID of that node.
func (w *world) expand(s string) string {
	for name, id := range w.nodes {
		s = strings.ReplaceAll(s, "{"+name+"}", id)
	}
	return s
}

// poll calls cond until it reports done, an error, or timeout passes; the
// last status it gave is in the timeout error.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (done bool, status string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		done, status, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s (last seen: %s)", what, timeout, status)
		case <-t.C:
		}
	}
}

// ironicFault decodes Ironic's error body: {"error_message": "<JSON>"} whose
// inner JSON holds faultcode/faultstring/debuginfo, or code/title/description
// for errors raised before the API's controllers (406 on versions).
type ironicFault struct {
	Faultcode   *string `json:"faultcode"`
	Faultstring *string `json:"faultstring"`
	Debuginfo   any     `json:"debuginfo"`
	Code        *int    `json:"code"`
	Title       *string `json:"title"`
	Description *string `json:"description"`
}

func parseFault(body []byte) (*ironicFault, error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		return nil, fmt.Errorf("error body is not a JSON object: %q", body)
	}
	raw, ok := outer["error_message"]
	if !ok || len(outer) != 1 {
		return nil, fmt.Errorf("error body has keys other than just error_message: %s", body)
	}
	var inner string
	if err := json.Unmarshal(raw, &inner); err != nil {
		return nil, fmt.Errorf("error_message is not a string (Ironic sends JSON inside a string): %s", raw)
	}
	var f ironicFault
	if err := json.Unmarshal([]byte(inner), &f); err != nil {
		return nil, fmt.Errorf("error_message does not hold JSON: %q", inner)
	}
	return &f, nil
}

func (f *ironicFault) message() string {
	switch {
	case f.Faultstring != nil:
		return *f.Faultstring
	case f.Description != nil:
		return *f.Description
	}
	return ""
}

func (w *world) registerAPISteps(sc *godog.ScenarioContext) {
	// Enrollment.
	sc.Step(`^machine "([^"]*)" is enrolled with the ipmi driver$`, func(ctx context.Context, m string) error {
		return w.enroll(ctx, m, nil, nil)
	})
	sc.Step(`^machine "([^"]*)" is enrolled with the ipmi driver in (bios|uefi) boot mode$`, func(ctx context.Context, m, mode string) error {
		return w.enroll(ctx, m, nil, map[string]any{"capabilities": "boot_mode:" + mode})
	})
	sc.Step(`^machine "([^"]*)" is enrolled with the ipmi driver and driver_info:$`, func(ctx context.Context, m string, t *godog.Table) error {
		changes := map[string]string{}
		for _, row := range t.Rows[1:] {
			changes[row.Cells[0].Value] = row.Cells[1].Value
		}
		return w.enroll(ctx, m, changes, nil)
	})
	sc.Step(`^node "([^"]*)" is enrolled with the fake-hardware driver$`, func(ctx context.Context, name string) error {
		r, err := w.must(ctx, http.StatusCreated, "POST", "/v1/nodes", map[string]any{"name": name, "driver": "fake-hardware"})
		if err != nil {
			return err
		}
		var n apiNode
		if err := json.Unmarshal(r.body, &n); err != nil {
			return fmt.Errorf("node create body: %w", err)
		}
		w.nodes[name] = n.UUID
		return nil
	})
	sc.Step(`^node "([^"]*)" is moved to "([^"]*)" with "([^"]*)"$`, func(ctx context.Context, name, state, verb string) error {
		return w.provisionAction(ctx, name, verb, state)
	})
	sc.Step(`^machine "([^"]*)" has a port with its MAC address$`, func(ctx context.Context, m string) error {
		return w.addPort(ctx, m)
	})
	sc.Step(`^node "([^"]*)" is (manageable|available)$`, func(ctx context.Context, m, state string) error {
		if _, ok := w.nodes[m]; !ok {
			if err := w.enroll(ctx, m, nil, nil); err != nil {
				return err
			}
			if err := w.addPort(ctx, m); err != nil {
				return err
			}
		}
		if err := w.provisionAction(ctx, m, "manage", "manageable"); err != nil {
			return err
		}
		if state == "available" {
			return w.provisionAction(ctx, m, "provide", "available")
		}
		return nil
	})
	sc.Step(`^I ask to "([^"]*)" node "([^"]*)"$`, func(ctx context.Context, verb, m string) error {
		id, err := w.nodeID(m)
		if err != nil {
			return err
		}
		w.last, err = w.call(ctx, "PUT", "/v1/nodes/"+id+"/states/provision", apiVersion, map[string]any{"target": verb})
		return err
	})
	sc.Step(`^node "([^"]*)" reaches provision state "([^"]*)"$`, w.waitProvisionState)
	sc.Step(`^node "([^"]*)" has provision state "([^"]*)"$`, func(ctx context.Context, m, want string) error {
		var n apiNode
		if _, err := w.getNode(ctx, m, &n); err != nil {
			return err
		}
		if n.ProvisionState != want {
			return fmt.Errorf("node %s is %q, want %q (last_error %v)", m, n.ProvisionState, want, n.LastError)
		}
		return nil
	})
	sc.Step(`^node "([^"]*)" has no last_error$`, func(ctx context.Context, m string) error {
		var n apiNode
		if _, err := w.getNode(ctx, m, &n); err != nil {
			return err
		}
		if n.LastError != nil {
			return fmt.Errorf("node %s has last_error %v", m, n.LastError)
		}
		return nil
	})
	sc.Step(`^node "([^"]*)" has last_error containing "(.*)"$`, func(ctx context.Context, m, text string) error {
		var n apiNode
		if _, err := w.getNode(ctx, m, &n); err != nil {
			return err
		}
		if s, _ := n.LastError.(string); !strings.Contains(s, text) {
			return fmt.Errorf("node %s last_error is %v, want it to contain %q", m, n.LastError, text)
		}
		return nil
	})
	sc.Step(`^validating node "([^"]*)" reports:$`, w.validate)
	sc.Step(`^I create a port for node "([^"]*)" with address "([^"]*)"$`, func(ctx context.Context, m, mac string) error {
		id, err := w.nodeID(m)
		if err != nil {
			return err
		}
		w.last, err = w.call(ctx, "POST", "/v1/ports", apiVersion, map[string]any{"address": w.expandMachine(mac), "node_uuid": id})
		return err
	})

	// Power.
	sc.Step(`^I ask for "([^"]*)" on node "([^"]*)" through the API$`, func(ctx context.Context, target, m string) error {
		id, err := w.nodeID(m)
		if err != nil {
			return err
		}
		w.last, err = w.call(ctx, "PUT", "/v1/nodes/"+id+"/states/power", apiVersion, map[string]any{"target": target})
		return err
	})
	sc.Step(`^node "([^"]*)" is powered "([^"]*)" through the API$`, func(ctx context.Context, m, target string) error {
		id, err := w.nodeID(m)
		if err != nil {
			return err
		}
		if _, err := w.must(ctx, http.StatusAccepted, "PUT", "/v1/nodes/"+id+"/states/power", map[string]any{"target": target}); err != nil {
			return err
		}
		want := target
		switch target {
		case "rebooting", "soft rebooting":
			want = "power on"
		case "soft power off":
			want = "power off"
		}
		return w.waitPowerState(ctx, m, want)
	})
	sc.Step(`^node "([^"]*)" reaches power state "([^"]*)"$`, w.waitPowerState)

	// Boot device.
	sc.Step(`^I set the boot device of node "([^"]*)" to "([^"]*)" (persistently|for the next boot only) through the API$`,
		func(ctx context.Context, m, dev, how string) error {
			id, err := w.nodeID(m)
			if err != nil {
				return err
			}
			_, err = w.must(ctx, http.StatusNoContent, "PUT", "/v1/nodes/"+id+"/management/boot_device",
				map[string]any{"boot_device": dev, "persistent": how == "persistently"})
			return err
		})
	sc.Step(`^the API reports the boot device of node "([^"]*)" as "([^"]*)" with persistent (true|false)$`,
		func(ctx context.Context, m, dev, persistent string) error {
			id, err := w.nodeID(m)
			if err != nil {
				return err
			}
			r, err := w.must(ctx, http.StatusOK, "GET", "/v1/nodes/"+id+"/management/boot_device", nil)
			if err != nil {
				return err
			}
			var got struct {
				BootDevice string `json:"boot_device"`
				Persistent bool   `json:"persistent"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil {
				return fmt.Errorf("boot_device body %s: %w", r.body, err)
			}
			if got.BootDevice != dev || strconv.FormatBool(got.Persistent) != persistent {
				return fmt.Errorf("API reports %s, want boot_device %q persistent %s", r.body, dev, persistent)
			}
			return nil
		})

	// Raw requests.
	sc.Step(`^I send "(GET|POST|PUT|PATCH|DELETE)" "([^"]*)"$`, func(ctx context.Context, method, path string) error {
		var err error
		w.last, err = w.call(ctx, method, w.expand(path), apiVersion, nil)
		return err
	})
	sc.Step(`^I send "(GET|POST|PUT|PATCH|DELETE)" "([^"]*)" with API version "([^"]*)"$`, func(ctx context.Context, method, path, v string) error {
		var err error
		w.last, err = w.call(ctx, method, w.expand(path), v, nil)
		return err
	})
	sc.Step(`^I send "(GET|POST|PUT|PATCH|DELETE)" "([^"]*)" with body:$`, func(ctx context.Context, method, path string, doc *godog.DocString) error {
		var err error
		w.last, err = w.call(ctx, method, w.expand(path), apiVersion, w.expand(doc.Content))
		return err
	})
	sc.Step(`^the response status is (\d+)$`, func(code int) error {
		if w.last == nil {
			return fmt.Errorf("no API request was sent")
		}
		if w.last.status != code {
			return fmt.Errorf("%s %s: HTTP %d, want %d; body %s", w.last.method, w.last.path, w.last.status, code, w.last.body)
		}
		return nil
	})
	sc.Step(`^the response header "([^"]*)" is "([^"]*)"$`, func(h, v string) error {
		if w.last == nil {
			return fmt.Errorf("no API request was sent")
		}
		if got := w.last.header.Get(h); got != v {
			return fmt.Errorf("header %s is %q, want %q", h, got, v)
		}
		return nil
	})
	sc.Step(`^the response body has "([^"]*)" equal to "([^"]*)"$`, func(path, want string) error {
		if w.last == nil {
			return fmt.Errorf("no API request was sent")
		}
		got, err := jsonPath(w.last.body, path)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != w.expand(want) {
			return fmt.Errorf("%s is %v, want %q; body %s", path, got, want, w.last.body)
		}
		return nil
	})
	sc.Step(`^the error is Ironic's "(Client|Server)" fault saying "(.*)"$`, func(code, text string) error {
		f, err := w.lastFault()
		if err != nil {
			return err
		}
		if f.Faultcode == nil || *f.Faultcode != code || f.Faultstring == nil {
			return fmt.Errorf("want faultcode %q and a faultstring; body %s", code, w.last.body)
		}
		if f.Debuginfo != nil {
			return fmt.Errorf("debuginfo is %v, Ironic sends null", f.Debuginfo)
		}
		if want := w.expand(text); !strings.Contains(*f.Faultstring, want) {
			return fmt.Errorf("faultstring %q does not say %q", *f.Faultstring, want)
		}
		return nil
	})
	sc.Step(`^the error is Ironic's (\d+) "([^"]*)" saying "(.*)"$`, func(code int, title, text string) error {
		f, err := w.lastFault()
		if err != nil {
			return err
		}
		if f.Code == nil || *f.Code != code || f.Title == nil || *f.Title != title || f.Description == nil {
			return fmt.Errorf("want code %d title %q and a description; body %s", code, title, w.last.body)
		}
		if !strings.Contains(*f.Description, text) {
			return fmt.Errorf("description %q does not say %q", *f.Description, text)
		}
		return nil
	})
	sc.Step(`^the error message says "([^"]*)"$`, func(text string) error {
		f, err := w.lastFault()
		if err != nil {
			return err
		}
		if want := w.expand(text); !strings.Contains(f.message(), want) {
			return fmt.Errorf("error message %q does not say %q", f.message(), want)
		}
		return nil
	})
}

func (w *world) lastFault() (*ironicFault, error) {
	if w.last == nil {
		return nil, fmt.Errorf("no API request was sent")
	}
	return parseFault(w.last.body)
}

// jsonPath reads a dotted path ("versions.0.id" style is not needed: keys only).
func jsonPath(body []byte, path string) (any, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("body is not JSON: %q", body)
	}
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				return nil, fmt.Errorf("no %q in %s", path, body)
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(x) {
				return nil, fmt.Errorf("no %q in %s", path, body)
			}
			v = x[i]
		default:
			return nil, fmt.Errorf("no %q in %s", path, body)
		}
	}
	return v, nil
}

// enroll creates node <machine> with the ipmi hardware type and driver_info
// pointing at that machine's BMC. changes overrides driver_info fields; the
// value "(absent)" removes one.
func (w *world) enroll(ctx context.Context, name string, changes map[string]string, properties map[string]any) error {
	if err := w.needEnv(); err != nil {
		return err
	}
	m, err := w.env.machineNamed(name)
	if err != nil {
		return err
	}
	info := map[string]any{
		"ipmi_address":  m.BMC.Address,
		"ipmi_port":     m.BMC.Port,
		"ipmi_username": m.BMC.Username,
		"ipmi_password": m.BMC.Password,
	}
	for k, v := range changes {
		if v == "(absent)" {
			delete(info, k)
		} else {
			info[k] = v
		}
	}
	body := map[string]any{"name": name, "driver": "ipmi", "driver_info": info}
	if properties != nil {
		body["properties"] = properties
	}
	r, err := w.must(ctx, http.StatusCreated, "POST", "/v1/nodes", body)
	if err != nil {
		return err
	}
	var n apiNode
	if err := json.Unmarshal(r.body, &n); err != nil {
		return fmt.Errorf("node create body: %w", err)
	}
	if n.ProvisionState != "enroll" {
		return fmt.Errorf("a new node is %q, Ironic puts it in enroll", n.ProvisionState)
	}
	w.nodes[name] = n.UUID
	return nil
}

func (w *world) addPort(ctx context.Context, name string) error {
	id, err := w.nodeID(name)
	if err != nil {
		return err
	}
	m, err := w.env.machineNamed(name)
	if err != nil {
		return err
	}
	for _, mac := range m.MACs {
		if _, err := w.must(ctx, http.StatusCreated, "POST", "/v1/ports", map[string]any{"address": mac, "node_uuid": id}); err != nil {
			return err
		}
	}
	return nil
}

// provisionAction asks for verb and waits for the state it leads to.
func (w *world) provisionAction(ctx context.Context, name, verb, want string) error {
	id, err := w.nodeID(name)
	if err != nil {
		return err
	}
	if _, err := w.must(ctx, http.StatusAccepted, "PUT", "/v1/nodes/"+id+"/states/provision", map[string]any{"target": verb}); err != nil {
		return err
	}
	return w.waitProvisionState(ctx, name, want)
}

// waitProvisionState waits for a node to be in state want. A stable state
// counts once nothing is in flight (target_provision_state null); a state
// that is a step on the way (wait call-back, deploying, cleaning, …) keeps
// its target (active, available, …) all along, as in Ironic, and counts as
// soon as the node is in it.
func (w *world) waitProvisionState(ctx context.Context, name, want string) error {
	return poll(ctx, provisionTimeout, fmt.Sprintf("node %s to reach provision state %q", name, want), func() (bool, string, error) {
		var n apiNode
		if _, err := w.getNode(ctx, name, &n); err != nil {
			return false, "", err
		}
		status := fmt.Sprintf("provision_state %q target %v last_error %v", n.ProvisionState, n.TargetProvisionState, n.LastError)
		return n.ProvisionState == want && (n.TargetProvisionState == nil || transient(want)), status, nil
	})
}

// transient reports whether state is one of Ironic's provision states a
// node passes through with a target_provision_state set.
func transient(state string) bool {
	switch state {
	case "deploying", "wait call-back", "deleting", "cleaning", "clean wait", "verifying",
		"inspecting", "inspect wait", "rescuing", "rescue wait", "unrescuing", "adopting",
		"servicing", "service wait":
		return true
	}
	return false
}

func (w *world) waitPowerState(ctx context.Context, name, want string) error {
	return poll(ctx, powerTimeout, fmt.Sprintf("node %s to reach power state %q", name, want), func() (bool, string, error) {
		var n apiNode
		if _, err := w.getNode(ctx, name, &n); err != nil {
			return false, "", err
		}
		status := fmt.Sprintf("power_state %v target %v last_error %v", n.PowerState, n.TargetPowerState, n.LastError)
		return n.PowerState == want && n.TargetPowerState == nil, status, nil
	})
}

// validate checks GET /v1/nodes/X/validate against a table of interface,
// result and (for false) a piece of the reason.
func (w *world) validate(ctx context.Context, name string, t *godog.Table) error {
	id, err := w.nodeID(name)
	if err != nil {
		return err
	}
	r, err := w.must(ctx, http.StatusOK, "GET", "/v1/nodes/"+id+"/validate", nil)
	if err != nil {
		return err
	}
	var got map[string]struct {
		Result *bool   `json:"result"`
		Reason *string `json:"reason"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		return fmt.Errorf("validate body %s: %w", r.body, err)
	}
	for _, row := range t.Rows[1:] {
		iface, result := row.Cells[0].Value, row.Cells[1].Value
		reason := ""
		if len(row.Cells) > 2 {
			reason = row.Cells[2].Value
		}
		g, ok := got[iface]
		if !ok {
			return fmt.Errorf("validate has no %q interface: %s", iface, r.body)
		}
		if g.Result == nil || strconv.FormatBool(*g.Result) != result {
			return fmt.Errorf("%s: result %v, want %s (reason %v)", iface, g.Result, result, deref(g.Reason))
		}
		if reason != "" && (g.Reason == nil || !strings.Contains(*g.Reason, reason)) {
			return fmt.Errorf("%s: reason %q does not say %q", iface, deref(g.Reason), reason)
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}
