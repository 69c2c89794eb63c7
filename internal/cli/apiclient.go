package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiVersion is the microversion metalbed's own calls ask for, as
// python-ironicclient 5.0.1 negotiates.
const apiVersion = "1.78"

// apiClient calls the provisioner's Ironic v1 API over HTTP, as a user's
// client does: `up --enroll` and `demo` go through it and nothing else.
type apiClient struct {
	base string // e.g. http://127.0.0.1:6385
	hc   *http.Client
}

func newAPIClient(base string) *apiClient {
	return &apiClient{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 60 * time.Second}}
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// do sends body (JSON, when not nil) and decodes a JSON answer into out
// (when not nil).
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-OpenStack-Ironic-API-Version", apiVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %w", method, path, &apiError{Status: resp.StatusCode, Message: errorMessage(b)})
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// errorMessage digs the message out of Ironic's error body:
// {"error_message": "{\"faultstring\": \"…\", …}"}.
func errorMessage(b []byte) string {
	var outer struct {
		ErrorMessage string `json:"error_message"`
	}
	if json.Unmarshal(b, &outer) == nil && outer.ErrorMessage != "" {
		var inner struct {
			Faultstring string `json:"faultstring"`
		}
		if json.Unmarshal([]byte(outer.ErrorMessage), &inner) == nil && inner.Faultstring != "" {
			return inner.Faultstring
		}
		return outer.ErrorMessage
	}
	return strings.TrimSpace(string(b))
}

// apiNode is the part of a node the CLI reads.
type apiNode struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState *string        `json:"target_provision_state"`
	PowerState           *string        `json:"power_state"`
	LastError            *string        `json:"last_error"`
	InstanceInfo         map[string]any `json:"instance_info"`
	DriverInfo           map[string]any `json:"driver_info"`
}

func (n *apiNode) lastError() string {
	if n.LastError == nil {
		return ""
	}
	return *n.LastError
}

func (c *apiClient) node(ctx context.Context, id string) (*apiNode, error) {
	var n apiNode
	if err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// enabledInterfaces lists a hardware type's enabled interfaces of one role
// ("deploy", "boot").
func (c *apiClient) enabledInterfaces(ctx context.Context, driver, role string) ([]string, error) {
	var d map[string]any
	if err := c.do(ctx, http.MethodGet, "/v1/drivers/"+url.PathEscape(driver), nil, &d); err != nil {
		return nil, err
	}
	var names []string
	if l, ok := d["enabled_"+role+"_interfaces"].([]any); ok {
		for _, v := range l {
			if s, ok := v.(string); ok {
				names = append(names, s)
			}
		}
	}
	return names, nil
}

// provision asks for a provision state change (manage, provide, active,
// deleted, …).
func (c *apiClient) provision(ctx context.Context, id, target string) error {
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(id)+"/states/provision", map[string]any{"target": target}, nil)
}

// patch applies a JSON patch to a node.
func (c *apiClient) patch(ctx context.Context, id string, ops []map[string]any) error {
	return c.do(ctx, http.MethodPatch, "/v1/nodes/"+url.PathEscape(id), ops, nil)
}

// errStateFailed says a node landed in a failure state while waited on.
var errStateFailed = errors.New("provisioning failed")

// waitState polls a node until it rests in want (no target state) and
// returns it; a failure state ("deploy failed", "clean failed", …) or ctx
// ending stops the wait. seen, when not nil, is called for every state
// change observed.
func (c *apiClient) waitState(ctx context.Context, id, want string, seen func(*apiNode)) (*apiNode, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := ""
	for {
		n, err := c.node(ctx, id)
		if err != nil {
			return nil, err
		}
		if cur := n.ProvisionState; cur != last {
			last = cur
			if seen != nil {
				seen(n)
			}
		}
		if n.ProvisionState == want && n.TargetProvisionState == nil {
			return n, nil
		}
		// A failed node keeps its target (deploy failed → active), as
		// Ironic's do.
		if strings.HasSuffix(n.ProvisionState, " failed") {
			return n, fmt.Errorf("node %s: %w: %s: %s", id, errStateFailed, n.ProvisionState, n.lastError())
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("node %s: still %q waiting for %q: %w", id, n.ProvisionState, want, ctx.Err())
		case <-t.C:
		}
	}
}
