package api_test

import (
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
)

// wantCLIError runs a baremetal command that must fail and checks its
// output holds Ironic's message.
func (s *stack) wantCLIError(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := s.baremetalErr(t, args...)
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("baremetal %s: err %v, want %q in:\n%s", strings.Join(args, " "), err, want, out)
	}
}

// TestBaremetalCLIChassis creates, lists, edits and deletes chassis with
// the real baremetal CLI, puts a node in one (on create and by PATCH),
// lists the chassis' nodes, and checks Ironic's errors: an unknown
// chassis on a node (400), deleting a chassis holding nodes
// (ChassisNotEmpty, 400), an over-long description, a missing chassis
// (404).
func TestBaremetalCLIChassis(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	s := newStack(t, stackOpts{})

	c := s.baremetalJSON(t, "chassis", "create", "--description", "rack 1", "--extra", "row=a")
	id := field(c, "uuid").(string)
	if field(c, "description") != "rack 1" {
		t.Errorf("created description: %v", field(c, "description"))
	}
	if ex, _ := field(c, "extra").(map[string]any); ex["row"] != "a" {
		t.Errorf("created extra: %v", field(c, "extra"))
	}
	// The CLI shows every field but links and nodes.
	sameKeys(t, "chassis create", map[string]any{"uuid": 0, "description": 0, "extra": 0, "created_at": 0, "updated_at": 0}, c)
	list := s.baremetalJSON(t, "chassis", "list").([]any)
	if len(list) != 1 || field(list[0], "UUID") != id || field(list[0], "Description") != "rack 1" {
		t.Fatalf("chassis list: %v", list)
	}
	long := s.baremetalJSON(t, "chassis", "list", "--long").([]any)
	if len(long) != 1 || field(long[0], "Extra") == nil || field(long[0], "Created At") == nil {
		t.Errorf("chassis list --long: %v", long)
	}
	s.baremetal(t, "chassis", "set", id, "--description", "rack 2", "--extra", "pdu=b")
	s.baremetal(t, "chassis", "unset", id, "--extra", "row")
	shown := s.baremetalJSON(t, "chassis", "show", id)
	if field(shown, "description") != "rack 2" || len(field(shown, "extra").(map[string]any)) != 1 || field(shown, "updated_at") == nil {
		t.Errorf("after set/unset: %v", shown)
	}
	s.wantCLIError(t, "is too long (HTTP 400)", "chassis", "set", id, "--description", strings.Repeat("x", 256))

	n := s.baremetalJSON(t, "node", "create", "--driver", "fake-hardware", "--name", "racked", "--chassis-uuid", id)
	if field(n, "chassis_uuid") != id {
		t.Fatalf("node create in chassis: %v", field(n, "chassis_uuid"))
	}
	s.baremetal(t, "node", "create", "--driver", "fake-hardware", "--name", "loose")
	missing := "c0ffee00-0000-4000-8000-000000000000"
	s.wantCLIError(t, "Chassis "+missing+" could not be found. (HTTP 400)",
		"node", "create", "--driver", "fake-hardware", "--chassis-uuid", missing)
	s.wantCLIError(t, "Chassis "+missing+" could not be found. (HTTP 400)", "node", "set", "loose", "--chassis-uuid", missing)
	in := s.baremetalJSON(t, "node", "list", "--chassis", id).([]any)
	if len(in) != 1 || field(in[0], "Name") != "racked" {
		t.Fatalf("node list --chassis: %v", in)
	}
	if got := s.must(t, 200, "GET", "/v1/nodes?chassis_uuid="+id, "1.82", nil).obj(t)["nodes"].([]any); len(got) != 1 {
		t.Errorf("?chassis_uuid= filter: %v", got)
	}

	s.wantCLIError(t, "Cannot complete the requested action because chassis "+id+" contains nodes. (HTTP 400)", "chassis", "delete", id)
	s.baremetal(t, "node", "unset", "racked", "--chassis-uuid")
	if got := field(s.baremetalJSON(t, "node", "show", "racked"), "chassis_uuid"); got != nil {
		t.Fatalf("chassis_uuid after unset: %v", got)
	}
	s.baremetal(t, "node", "set", "loose", "--chassis-uuid", id)
	s.baremetal(t, "node", "unset", "loose", "--chassis-uuid")
	if got := s.do(t, "PATCH", "/v1/nodes/racked", "1.24", []map[string]any{{"op": "add", "path": "/chassis_uuid", "value": id}}); got.status != 200 {
		t.Fatalf("set chassis at 1.24: %d %s", got.status, got.body)
	}
	if got := s.do(t, "PATCH", "/v1/nodes/racked", "1.24", []map[string]any{{"op": "remove", "path": "/chassis_uuid"}}); got.status != 406 {
		t.Errorf("remove chassis_uuid at 1.24: %d %s, want Ironic's 406", got.status, got.body)
	}
	s.baremetal(t, "node", "unset", "racked", "--chassis-uuid")
	s.baremetal(t, "chassis", "delete", id)
	s.wantCLIError(t, "Chassis "+id+" could not be found. (HTTP 404)", "chassis", "show", id)
	if l := s.baremetalJSON(t, "chassis", "list").([]any); len(l) != 0 {
		t.Errorf("chassis left: %v", l)
	}
}
