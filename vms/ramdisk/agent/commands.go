package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// Command statuses, as IPA's AgentCommandStatus.
const (
	statusRunning         = "RUNNING"
	statusSucceeded       = "SUCCEEDED"
	statusFailed          = "FAILED"
	statusVersionMismatch = "CLEAN_VERSION_MISMATCH"
)

// command is one command result (IPA's BaseCommandResult).
type command struct {
	id     string
	name   string // the part after the extension: prepare_image
	params map[string]json.RawMessage

	mu     sync.Mutex
	status string
	err    *restError
	result any

	done      chan struct{} // closed when the command ends
	responded chan struct{} // closed once the POST answer went out
	respOnce  sync.Once
}

func newCommand(name string, params map[string]json.RawMessage) *command {
	return &command{id: newUUID(), name: name, params: redactLarge(params), status: statusRunning,
		done: make(chan struct{}), responded: make(chan struct{})}
}

func (c *command) finish(result any, err error) {
	c.mu.Lock()
	if err != nil {
		re := asRESTError(err)
		c.err = re
		c.status = statusFailed
		if re.status != "" {
			c.status = re.status
		}
	} else {
		c.result = normalizeResult(c.name, result)
		c.status = statusSucceeded
	}
	c.mu.Unlock()
	close(c.done)
}

func (c *command) markResponded() { c.respOnce.Do(func() { close(c.responded) }) }

func (c *command) statusNow() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *command) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// MarshalJSON serialises the result as IPA 9.x did with command_params
// (the shape in the captures of Ironic 21.4's agent traffic).
func (c *command) MarshalJSON() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	params := c.params
	if params == nil {
		params = map[string]json.RawMessage{}
	}
	return json.Marshal(struct {
		ID            string                     `json:"id"`
		CommandName   string                     `json:"command_name"`
		CommandParams map[string]json.RawMessage `json:"command_params"`
		CommandStatus string                     `json:"command_status"`
		CommandError  *restError                 `json:"command_error"`
		CommandResult any                        `json:"command_result"`
	}{c.id, c.name, params, c.status, c.err, c.result})
}

// largeKeys are the parameters IPA never echoes in full (its
// utils.remove_large_keys): a config drive may be tens of MiB, and Ironic
// polls the command list on every heartbeat.
var largeKeys = []string{"configdrive", "system_logs"}

// redactLarge replaces non-null values of largeKeys, at any depth, with
// "<...>".
func redactLarge(p params) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(p))
	for k, v := range p {
		out[k] = v
		hit := false
		for _, lk := range largeKeys {
			if bytes.Contains(v, []byte(lk)) || k == lk {
				hit = true
			}
		}
		if !hit {
			continue
		}
		if k == "configdrive" || k == "system_logs" {
			if string(v) != "null" {
				out[k] = json.RawMessage(`"<...>"`)
			}
			continue
		}
		var val any
		if json.Unmarshal(v, &val) != nil {
			continue
		}
		if b, err := json.Marshal(redactValue(val)); err == nil {
			out[k] = b
		}
	}
	return out
}

func redactValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if (k == "configdrive" || k == "system_logs") && e != nil {
				t[k] = "<...>"
			} else {
				t[k] = redactValue(e)
			}
		}
	case []any:
		for i, e := range t {
			t[i] = redactValue(e)
		}
	}
	return v
}

// normalizeResult does what IPA's results do with strings: async commands
// prefix the command name and wrap it in {"result": ...}.
func normalizeResult(name string, r any) any {
	if s, ok := r.(string); ok {
		return map[string]any{"result": name + ": " + s}
	}
	return r
}

// commandSpec is one command of an extension.
type commandSpec struct {
	async bool
	// params lists the accepted parameter names; required ones first,
	// nrequired of them. extra accepts any other (Python's **kwargs).
	params    []string
	nrequired int
	extra     bool
	// validate runs before the command starts; an error is a 400.
	validate func(p params) error
	run      func(ctx context.Context, c *command, p params) (any, error)
}

// params are a command's parameters as sent.
type params map[string]json.RawMessage

// decode reads parameter k into dst; absent or null leaves dst alone.
func (p params) decode(k string, dst any) error {
	raw, ok := p[k]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errInvalidParams(fmt.Sprintf("parameter %q: %v", k, err))
	}
	return nil
}

func (p params) has(k string) bool {
	raw, ok := p[k]
	return ok && string(raw) != "null"
}

// check enforces a command's signature as Python would call it.
func (s commandSpec) check(name string, p params) error {
	known := map[string]bool{}
	for _, k := range s.params {
		known[k] = true
	}
	var missing, unknown []string
	for i, k := range s.params {
		if i < s.nrequired {
			if _, ok := p[k]; !ok {
				missing = append(missing, "'"+k+"'")
			}
		}
	}
	if !s.extra {
		for k := range p {
			if !known[k] {
				unknown = append(unknown, k)
			}
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		return errInvalidParams(fmt.Sprintf("%s() got an unexpected keyword argument '%s'", name, unknown[0]))
	}
	if len(missing) > 0 {
		return errInvalidParams(fmt.Sprintf("%s() missing %d required positional argument(s): %s", name, len(missing), strings.Join(missing, " and ")))
	}
	return nil
}

// execute is IPA's execute_command: one command at a time, sync commands
// run to the end here, async ones in their own goroutine.
func (a *Agent) execute(fullName string, p params) (*command, error) {
	extName, cmdName, ok := strings.Cut(fullName, ".")
	if !ok {
		return nil, errInvalidCommand("Command name must be of the form <extension>.<name>")
	}
	a.cmdMu.Lock()
	defer a.cmdMu.Unlock()
	action, arg := a.fault(fullName)
	if action == "busy" {
		// An injected fault: refused as if a command were running.
		return nil, errBusy("(injected fault)")
	}
	a.mu.Lock()
	if n := len(a.commands); n > 0 && !a.commands[n-1].isDone() {
		running := a.commands[n-1].name
		a.mu.Unlock()
		a.cfg.Logger.Warn("agent busy", "event", fullName, "state", running)
		return nil, errBusy(running)
	}
	a.mu.Unlock()
	ext, ok := a.exts[extName]
	if !ok {
		return nil, errNotFound("Extension", extName)
	}
	spec, ok := ext[cmdName]
	if !ok {
		return nil, errInvalidCommand("Unknown command: " + cmdName)
	}
	if p == nil {
		p = params{}
	}
	c := newCommand(cmdName, p)
	if err := spec.check(cmdName, p); err != nil {
		if !spec.async {
			// A Python TypeError of a sync command is a failed result.
			c.finish(nil, errExecution(err.(*restError).Details))
			a.record(c)
			return c, nil
		}
		return nil, err
	}
	if spec.validate != nil {
		if err := spec.validate(p); err != nil {
			var re *restError
			if errors.As(err, &re) && re.Code == 400 {
				return nil, err
			}
			c.finish(nil, err)
			a.record(c)
			return c, nil
		}
	}
	if action == "command-failed" {
		// An injected fault: the command fails without running.
		if arg == "" {
			arg = "injected fault: " + fullName + " failed"
		}
		a.say("command %s failed: %s", cmdName, arg)
		c.finish(nil, errExecution(arg))
		a.record(c)
		if spec.async {
			a.forceHeartbeat()
		}
		return c, nil
	}
	a.say("executing command %s.%s (%s)", extName, cmdName, map[bool]string{true: "async", false: "sync"}[spec.async])
	ctx := a.runContext()
	if !spec.async {
		res, err := spec.run(ctx, c, p)
		c.finish(res, err)
		a.record(c)
		return c, nil
	}
	a.record(c)
	go func() {
		res, err := spec.run(ctx, c, p)
		c.finish(res, err)
		if err != nil {
			a.say("command %s failed: %v", cmdName, err)
			a.cfg.Logger.Warn("agent command failed", "node", a.uuid(), "event", cmdName, "err", err)
		} else {
			a.say("command %s completed", cmdName)
		}
		a.forceHeartbeat()
	}()
	return c, nil
}

func (a *Agent) record(c *command) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commands = append(a.commands, c)
	a.byID[c.id] = c
}

func (a *Agent) runContext() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.run == nil {
		return context.Background()
	}
	return a.run
}

func (a *Agent) uuid() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeUUID
}

// waitResponded holds a command that ends the machine until its POST was
// answered (at most a few seconds), as the slow poweroff of a real ramdisk
// lets the answer out first.
func waitResponded(ctx context.Context, c *command) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-c.responded:
	case <-t.C:
	case <-ctx.Done():
	}
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// jsonEqual compares two decoded JSON values.
func jsonEqual(x, y any) bool {
	bx, err1 := json.Marshal(x)
	by, err2 := json.Marshal(y)
	if err1 != nil || err2 != nil {
		return reflect.DeepEqual(x, y)
	}
	return bytes.Equal(bx, by)
}
