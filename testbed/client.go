package testbed

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

// Client calls the provisioner's Ironic v1 API over HTTP, as a user's
// client does: enrolling and the demo go through it and nothing else.
type Client struct {
	base string // e.g. http://127.0.0.1:6385
	hc   *http.Client
}

// NewClient is a client of the API at base, e.g. http://127.0.0.1:6385.
func NewClient(base string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 60 * time.Second}}
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// Lock retries: a call answered 409 because the node is locked (a task
// of the conductor holds it, e.g. one resuming the node after a restart)
// is tried again, as python-ironicclient does (max_retries 5,
// retry_interval 2 s).
const (
	lockedRetries       = 5
	lockedRetryInterval = 2 * time.Second
)

// Do sends body (JSON, when not nil) and decodes a JSON answer into out
// (when not nil). A node locked by a conductor task is retried.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	for attempt := 0; ; attempt++ {
		err := c.do(ctx, method, path, body, out)
		var ae *APIError
		if attempt >= lockedRetries || !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
			!strings.Contains(ae.Message, " is locked by host ") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(lockedRetryInterval):
		}
	}
}

// do is one call of Do.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
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
		return fmt.Errorf("%s %s: %w", method, path, &APIError{Status: resp.StatusCode, Message: errorMessage(b)})
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

// Node is the part of a node the testbed reads.
type Node struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState *string        `json:"target_provision_state"`
	PowerState           *string        `json:"power_state"`
	LastError            *string        `json:"last_error"`
	InstanceInfo         map[string]any `json:"instance_info"`
	DriverInfo           map[string]any `json:"driver_info"`
}

func (n *Node) lastError() string {
	if n.LastError == nil {
		return ""
	}
	return *n.LastError
}

// Node reads one node by name or UUID.
func (c *Client) Node(ctx context.Context, id string) (*Node, error) {
	var n Node
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &n); err != nil {
		return nil, err
	}
	return &n, nil
}

// enabledInterfaces lists a hardware type's enabled interfaces of one role
// ("deploy", "boot").
func (c *Client) enabledInterfaces(ctx context.Context, driver, role string) ([]string, error) {
	var d map[string]any
	if err := c.Do(ctx, http.MethodGet, "/v1/drivers/"+url.PathEscape(driver), nil, &d); err != nil {
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

// Provision asks for a provision state change (manage, provide, active,
// deleted, …).
func (c *Client) Provision(ctx context.Context, id, target string) error {
	return c.Do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(id)+"/states/provision", map[string]any{"target": target}, nil)
}

// Patch applies a JSON patch to a node.
func (c *Client) Patch(ctx context.Context, id string, ops []map[string]any) error {
	return c.Do(ctx, http.MethodPatch, "/v1/nodes/"+url.PathEscape(id), ops, nil)
}

// ErrStateFailed says a node landed in a failure state while waited on.
var ErrStateFailed = errors.New("provisioning failed")

// WaitState polls a node until it rests in want (no target state) and
// returns it; a failure state ("deploy failed", "clean failed", …) or ctx
// ending stops the wait. seen, when not nil, is called for every state
// change observed.
func (c *Client) WaitState(ctx context.Context, id, want string, seen func(*Node)) (*Node, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := ""
	for {
		n, err := c.Node(ctx, id)
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
			return n, fmt.Errorf("node %s: %w: %s: %s", id, ErrStateFailed, n.ProvisionState, n.lastError())
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("node %s: still %q waiting for %q: %w", id, n.ProvisionState, want, ctx.Err())
		case <-t.C:
		}
	}
}
