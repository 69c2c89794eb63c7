package api_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
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

// TestBaremetalCLIDeployTemplates creates, lists, renames and deletes a
// deploy template with the real baremetal CLI and checks it renders as
// Ironic's (step args with secrets masked).
func TestBaremetalCLIDeployTemplates(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	s := newStack(t, stackOpts{})
	steps := `[{"interface": "bios", "step": "apply_configuration", "args": {"settings": [{"name": "LogicalProc", "value": "Enabled"}], "password": "hunter2"}, "priority": 150}]`
	tpl := s.baremetalJSON(t, "deploy", "template", "create", "CUSTOM_HYPERTHREADING_ON", "--steps", steps, "--extra", "team=infra")
	id := field(tpl, "uuid").(string)
	sameKeys(t, "deploy template create", map[string]any{"uuid": 0, "name": 0, "steps": 0, "extra": 0, "created_at": 0, "updated_at": 0}, tpl)
	st := field(tpl, "steps").([]any)[0].(map[string]any)
	if st["priority"] != 150.0 || st["args"].(map[string]any)["password"] != "******" || st["interface"] != "bios" {
		t.Errorf("created step: %v", st)
	}
	s.wantCLIError(t, "A deploy template with name CUSTOM_HYPERTHREADING_ON already exists. (HTTP 409)",
		"deploy", "template", "create", "CUSTOM_HYPERTHREADING_ON", "--steps", steps)
	s.wantCLIError(t, "Schema error for template: 'HT_ON' is not valid under any of the given schemas. Possible root cause: 'HT_ON' does not match '^CUSTOM_[A-Z0-9_]+$' (HTTP 400)",
		"deploy", "template", "create", "HT_ON", "--steps", steps)
	s.baremetal(t, "deploy", "template", "set", "CUSTOM_HYPERTHREADING_ON", "--name", "CUSTOM_HT_ON")
	list := s.baremetalJSON(t, "deploy", "template", "list").([]any)
	if len(list) != 1 || field(list[0], "Name") != "CUSTOM_HT_ON" || field(list[0], "UUID") != id {
		t.Fatalf("deploy template list: %v", list)
	}
	s.baremetal(t, "deploy", "template", "delete", "CUSTOM_HT_ON")
	s.wantCLIError(t, "Deploy template "+id+" could not be found. (HTTP 404)", "deploy", "template", "show", id)
}

// TestDeployTemplateValidation checks each refusal against the message
// Ironic 21.4's TEMPLATE_VALIDATOR gives for the same body (recorded from
// ironic.api.controllers.v1.deploy_template), and the microversion gate.
func TestDeployTemplateValidation(t *testing.T) {
	s := newStack(t, stackOpts{})
	step := func(kv ...any) map[string]any {
		m := map[string]any{"interface": "bios", "step": "x", "args": map[string]any{}, "priority": 1}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	for _, tc := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"name": "foo", "steps": []any{step()}}, "Schema error for template: 'foo' is not valid under any of the given schemas. Possible root cause: 'foo' does not match '^CUSTOM_[A-Z0-9_]+$'"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{}}, "Schema error for template: [] is too short"},
		{map[string]any{"name": "CUSTOM_A"}, "Schema error for template: 'steps' is a required property"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("interface", "boot")}}, "Schema error for template: 'boot' is not one of ['power', 'management', 'deploy', 'bios', 'raid']"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("priority", -1)}}, "Schema error for template: -1 is less than the minimum of 0"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("priority", nil)}}, "Schema error for template: 'priority' is a required property"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step(), step("priority", 2)}}, "Deploy template invalid: Duplicate deploy steps. A deploy template cannot have multiple deploy steps with the same interface and step. Duplicates: interface: bios, step: x."},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("foo", 1)}}, "Schema error for template: Additional properties are not allowed ('foo' was unexpected)"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("step", "")}}, "Schema error for template: '' is too short"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("args", []any{})}}, "Schema error for template: [] is not of type 'object'"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step("priority", "abc")}}, "Schema error for template: 'abc' does not match '^[0-9]+$'"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step()}, "foo": "d"}, "Schema error for template: Additional properties are not allowed ('foo' was unexpected)"},
		{map[string]any{"name": 5, "steps": []any{step()}}, "Schema error for template: 5 is not of type 'string'"},
		{map[string]any{"name": "CUSTOM_A", "steps": "x"}, "Schema error for template: 'x' is not of type 'array'"},
		{map[string]any{"name": "CUSTOM_A", "steps": []any{step()}, "uuid": "abc"}, "Expected UUID for uuid: abc"},
	} {
		got := s.do(t, "POST", "/v1/deploy_templates", "1.55", tc.body)
		if got.status != 400 || faultstring(t, got) != tc.want {
			t.Errorf("%v: %d %q\nwant 400 %q", tc.body, got.status, faultstring(t, got), tc.want)
		}
	}
	ok := s.must(t, 201, "POST", "/v1/deploy_templates", "1.55",
		map[string]any{"name": "CUSTOM_A", "steps": []any{step("priority", "10")}, "description": "dropped, as Ironic 21.4 does"}).obj(t)
	if st := ok["steps"].([]any)[0].(map[string]any); st["priority"] != 10.0 {
		t.Errorf("string priority: %v", st)
	}
	if got := s.do(t, "PATCH", "/v1/deploy_templates/CUSTOM_A", "1.55", []map[string]any{{"op": "replace", "path": "/steps/0/interface", "value": "boot"}}); got.status != 400 ||
		faultstring(t, got) != "Schema error for patch: 'boot' is not one of ['power', 'management', 'deploy', 'bios', 'raid']" {
		t.Errorf("patch to a bad interface: %d %s", got.status, got.body)
	}
	if got := s.do(t, "PATCH", "/v1/deploy_templates/CUSTOM_A", "1.55", []map[string]any{{"op": "replace", "path": "/uuid", "value": "x"}}); got.status != 400 ||
		faultstring(t, got) != "Cannot patch /uuid. Only the following can be updated: extra, name, steps, description" {
		t.Errorf("patch uuid: %d %s", got.status, got.body)
	}
	if got := s.do(t, "GET", "/v1/deploy_templates", "1.54", nil); got.status != 404 {
		t.Errorf("GET at 1.54: %d, want 404", got.status)
	}
	if got := s.do(t, "POST", "/v1/deploy_templates", "1.54", map[string]any{}); got.status != 405 {
		t.Errorf("POST at 1.54: %d, want 405", got.status)
	}
}

// availableNode creates a fake-hardware node of resource class rc with
// traits, takes it to available through the API and gives it a power
// state, as an allocation needs.
func (s *stack) availableNode(t *testing.T, name, rc string, traits ...string) string {
	t.Helper()
	return s.provideNode(t, map[string]any{"driver": "fake-hardware", "name": name, "resource_class": rc}, traits...)
}

// provideNode is availableNode for the node POST /v1/nodes creates from
// body.
func (s *stack) provideNode(t *testing.T, body map[string]any, traits ...string) string {
	t.Helper()
	id := s.must(t, 201, "POST", "/v1/nodes", "1.82", body).obj(t)["uuid"].(string)
	if len(traits) > 0 {
		s.must(t, 204, "PUT", "/v1/nodes/"+id+"/traits", "1.82", map[string]any{"traits": traits})
	}
	for _, step := range []struct{ verb, state string }{{"manage", "manageable"}, {"provide", "available"}} {
		s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/provision", "1.82", map[string]any{"target": step.verb})
		s.waitNode(t, id, step.state, func(n *provisioner.Node) bool {
			// The task lets go of the node's lock just after the state.
			return string(n.ProvisionState) == step.state && n.TargetProvisionState == "" && n.Reservation == ""
		})
	}
	s.must(t, 202, "PUT", "/v1/nodes/"+id+"/states/power", "1.82", map[string]any{"target": "power off"})
	s.waitNode(t, id, "powered off", func(n *provisioner.Node) bool { return n.PowerState == provisioner.PowerOff && n.Reservation == "" })
	return id
}

// TestBaremetalCLIAllocations allocates nodes with the real baremetal CLI
// as Nova and metalsmith do: by resource class and traits, the node
// getting allocation_uuid and instance_uuid; Ironic's last_error when
// nothing matches; an allocation of an active node cannot be deleted; tear
// down frees it; the node's allocation subresource.
func TestBaremetalCLIAllocations(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	s := newStack(t, stackOpts{})
	gpu := s.availableNode(t, "gpu0", "baremetal", "CUSTOM_GPU")
	plain := s.availableNode(t, "plain0", "baremetal")
	s.availableNode(t, "other0", "other")

	a := s.baremetalJSON(t, "allocation", "create", "--resource-class", "baremetal", "--trait", "CUSTOM_GPU", "--name", "alloc0", "--wait", "30")
	id := field(a, "uuid").(string)
	if field(a, "state") != "active" || field(a, "node_uuid") != gpu {
		t.Fatalf("allocation: %v", a)
	}
	n := s.must(t, 200, "GET", "/v1/nodes/gpu0", "1.82", nil).obj(t)
	if n["allocation_uuid"] != id || n["instance_uuid"] != id || fmt.Sprint(n["instance_info"].(map[string]any)["traits"]) != "[CUSTOM_GPU]" {
		t.Errorf("allocated node: allocation_uuid %v instance_uuid %v instance_info %v", n["allocation_uuid"], n["instance_uuid"], n["instance_info"])
	}

	failed := s.baremetalJSON(t, "allocation", "create", "--resource-class", "baremetal", "--trait", "CUSTOM_GPU")
	if want := "Failed to process allocation " + field(failed, "uuid").(string) + ": no suitable nodes have the requested traits CUSTOM_GPU."; field(failed, "state") != "error" || field(failed, "last_error") != want {
		t.Errorf("allocation with no free GPU node: %v, want last_error %q", failed, want)
	}
	none := s.do(t, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "gold"}).obj(t)
	if want := "Failed to process allocation " + none["uuid"].(string) + ": no available nodes match the resource class gold."; none["last_error"] != want {
		t.Errorf("allocation of a missing class: %v, want %q", none["last_error"], want)
	}
	if l := s.baremetalJSON(t, "allocation", "list").([]any); len(l) != 3 {
		t.Errorf("allocation list: %v", l)
	}
	s.baremetal(t, "allocation", "set", "alloc0", "--name", "web0", "--extra", "rack=1")
	if got := s.must(t, 200, "GET", "/v1/allocations/web0", "1.82", nil).obj(t); got["uuid"] != id || fmt.Sprint(got["extra"].(map[string]any)["rack"]) != "1" {
		t.Errorf("after set: %v", got)
	}

	s.must(t, 202, "PUT", "/v1/nodes/gpu0/states/provision", "1.82", map[string]any{"target": "active"})
	s.waitNode(t, gpu, "active", func(n *provisioner.Node) bool {
		return n.ProvisionState == provisioner.StateActive && n.Reservation == ""
	})
	s.wantCLIError(t, "Cannot remove allocation "+id+" for node "+gpu+", because the node is active (and maintenance mode is off) (HTTP 409)",
		"allocation", "delete", "web0")
	s.must(t, 202, "PUT", "/v1/nodes/gpu0/states/provision", "1.82", map[string]any{"target": "deleted"})
	s.waitNode(t, gpu, "available without instance", func(n *provisioner.Node) bool {
		return n.ProvisionState == provisioner.StateAvailable && n.InstanceUUID == "" && n.AllocationUUID == ""
	})
	if got := s.do(t, "GET", "/v1/allocations/"+id, "1.82", nil); got.status != 404 || faultstring(t, got) != "Allocation "+id+" could not be found." {
		t.Errorf("allocation after tear down: %d %s", got.status, got.body)
	}

	if got := s.do(t, "GET", "/v1/nodes/plain0/allocation", "1.82", nil); got.status != 404 || faultstring(t, got) != "Allocation for node plain0 was not found" {
		t.Errorf("node allocation before any: %d %s", got.status, got.body)
	}
	b := s.must(t, 201, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "baremetal", "candidate_nodes": []string{"plain0"}}).obj(t)
	if b["node_uuid"] != plain || b["candidate_nodes"].([]any)[0] != plain {
		t.Fatalf("candidate allocation: %v", b)
	}
	if got := s.must(t, 200, "GET", "/v1/nodes/plain0/allocation", "1.82", nil).obj(t); got["uuid"] != b["uuid"] {
		t.Errorf("node allocation: %v", got)
	}
	s.must(t, 204, "DELETE", "/v1/nodes/plain0/allocation", "1.82", nil)
	if n := s.must(t, 200, "GET", "/v1/nodes/plain0", "1.82", nil).obj(t); n["instance_uuid"] != nil || n["allocation_uuid"] != nil {
		t.Errorf("node after its allocation is deleted: %v %v", n["instance_uuid"], n["allocation_uuid"])
	}
	if got := s.do(t, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "baremetal", "candidate_nodes": []string{"nope"}}); got.status != 400 || faultstring(t, got) != "Nodes cannot be found: nope" {
		t.Errorf("unknown candidate: %d %s", got.status, got.body)
	}
	if got := s.do(t, "POST", "/v1/allocations", "1.82", map[string]any{"traits": []string{"CUSTOM_GPU"}}); got.status != 400 || faultstring(t, got) != "The resource_class field is mandatory when not backfilling" {
		t.Errorf("no resource class: %d %s", got.status, got.body)
	}
	if got := s.do(t, "GET", "/v1/allocations", "1.51", nil); got.status != 404 {
		t.Errorf("allocations at 1.51: %d", got.status)
	}
	if got := s.must(t, 200, "GET", "/v1/nodes/plain0", "1.51", nil).obj(t); got["allocation_uuid"] != nil {
		t.Errorf("allocation_uuid at 1.51: %v", got["allocation_uuid"])
	} else if _, shown := got["allocation_uuid"]; shown {
		t.Errorf("allocation_uuid shown at 1.51")
	}
}

// TestInstanceRemovalFreesAllocation: removing instance_uuid from an
// allocated node deletes its allocation (Ironic's update_node), refused
// outside maintenance while the node is active.
func TestInstanceRemovalFreesAllocation(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.availableNode(t, "n0", "baremetal")
	a := s.must(t, 201, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "baremetal", "name": "a0"}).obj(t)
	if a["node_uuid"] != id {
		t.Fatalf("allocation: %v", a)
	}
	removal := []map[string]any{{"op": "remove", "path": "/instance_uuid"}}
	s.must(t, 202, "PUT", "/v1/nodes/n0/states/provision", "1.82", map[string]any{"target": "active"})
	// The deploy task lets go of the node's lock just after "active".
	s.waitNode(t, id, "active and unlocked", func(n *provisioner.Node) bool {
		return n.ProvisionState == provisioner.StateActive && n.Reservation == ""
	})
	if got := s.do(t, "PATCH", "/v1/nodes/n0", "1.82", removal); got.status != 409 ||
		faultstring(t, got) != "Node "+id+" with an allocation can not have instance_uuid removed unless it is in one of allowed (enroll, inspecting, inspect wait, manageable, available) states or in maintenance mode." {
		t.Errorf("instance_uuid removal while active: %d %s", got.status, got.body)
	}
	s.must(t, 202, "PUT", "/v1/nodes/n0/maintenance", "1.82", nil)
	if n := s.must(t, 200, "PATCH", "/v1/nodes/n0", "1.82", removal).obj(t); n["instance_uuid"] != nil || n["allocation_uuid"] != nil {
		t.Errorf("after removal: instance_uuid %v allocation_uuid %v", n["instance_uuid"], n["allocation_uuid"])
	}
	if got := s.do(t, "GET", "/v1/allocations/a0", "1.82", nil); got.status != 404 {
		t.Errorf("allocation after instance_uuid removal: %d %s", got.status, got.body)
	}
}

// TestAllocationLockedNode: a candidate locked by another conductor is
// not taken; the allocation fails with Ironic's message once the retries
// (none in this stack) are spent, and succeeds when the lock is gone.
func TestAllocationLockedNode(t *testing.T) {
	s := newStack(t, stackOpts{})
	id := s.availableNode(t, "n0", "baremetal")
	if _, err := s.st.ReserveNode(t.Context(), id, "other-conductor"); err != nil {
		t.Fatal(err)
	}
	a := s.must(t, 201, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "baremetal"}).obj(t)
	if want := "Failed to process allocation " + a["uuid"].(string) + ": could not reserve any of 1 suitable nodes."; a["state"] != "error" || a["last_error"] != want {
		t.Errorf("allocation of a locked node: %v %v, want %q", a["state"], a["last_error"], want)
	}
	if err := s.st.ReleaseNode(t.Context(), id, "other-conductor"); err != nil {
		t.Fatal(err)
	}
	if b := s.must(t, 201, "POST", "/v1/allocations", "1.82", map[string]any{"resource_class": "baremetal"}).obj(t); b["node_uuid"] != id {
		t.Errorf("allocation after release: %v", b)
	}
}
