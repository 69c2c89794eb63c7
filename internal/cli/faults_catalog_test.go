package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCheckFaultKind: every listed action is accepted, an unknown one of a
// listed layer is refused naming the known ones, and layers described
// elsewhere (agent, conductor) pass.
func TestCheckFaultKind(t *testing.T) {
	for _, k := range faultKinds() {
		if err := checkFaultKind(k.layer, k.action); err != nil {
			t.Errorf("%s/%s: %v", k.layer, k.action, err)
		}
	}
	err := checkFaultKind("tftp", "nope")
	if err == nil || !strings.Contains(err.Error(), "missing, stall, slow") {
		t.Errorf("tftp/nope: %v", err)
	}
	if err := checkFaultKind("agent", "heartbeat"); err != nil {
		t.Errorf("agent/heartbeat: %v", err)
	}
}

// TestFaultAddHelp: `metalbed fault add -h` lists every fault, and an
// unknown action is a usage error before any request is sent.
func TestFaultAddHelp(t *testing.T) {
	var out, errb bytes.Buffer
	_ = runFaultAdd(context.Background(), Streams{Out: &out, Err: &errb}, []string{"-h"})
	for _, k := range faultKinds() {
		if !strings.Contains(errb.String(), k.action) {
			t.Errorf("help does not list %s/%s:\n%s", k.layer, k.action, errb.String())
		}
	}
	err := runFaultAdd(context.Background(), Streams{Out: &out, Err: &errb},
		[]string{"--url", "http://127.0.0.1:1", "--layer", "http", "--action", "nope"})
	if err == nil || !strings.Contains(err.Error(), "status, truncate, corrupt") {
		t.Errorf("unknown action: %v", err)
	}
}
