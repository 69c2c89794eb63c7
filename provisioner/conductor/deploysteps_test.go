package conductor

import (
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy/direct"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// directRedfishSteps are the deploy steps of a redfish node with the
// direct deploy and the redfish bios interface.
func directRedfishSteps() []drivers.DeployStepInfo {
	steps := append([]drivers.DeployStepInfo{drivers.CoreDeployStep}, (&direct.Deploy{}).DeploySteps()...)
	return append(steps, (&drivers.RedfishBios{}).DeploySteps()...)
}

func ids(steps []provisioner.DeployStep) string {
	var out []string
	for _, st := range steps {
		out = append(out, stepLabel(st))
	}
	return strings.Join(out, ", ")
}

// TestAllDeploySteps checks the order Ironic's _get_all_deployment_steps
// gives: priority first, then the interface at equal priority, the
// request's step over the template's, priority 0 dropping a step.
func TestAllDeploySteps(t *testing.T) {
	bios := func(prio int) provisioner.DeployStep {
		return provisioner.DeployStep{Interface: "bios", Step: "apply_configuration", Args: map[string]any{"settings": []any{}}, Priority: prio}
	}
	reset := provisioner.DeployStep{Interface: "bios", Step: "factory_reset", Priority: 100}
	driverOnly := "deploy.deploy (priority 100), deploy.write_image (priority 80), deploy.prepare_instance_boot (priority 60), " +
		"deploy.tear_down_agent (priority 40), deploy.switch_to_tenant_network (priority 30), deploy.boot_instance (priority 20)"
	for _, tc := range []struct {
		name                 string
		requested, templates []provisioner.DeployStep
		want                 string
	}{
		{"driver only", nil, nil, driverOnly},
		{"template before the core step", nil, []provisioner.DeployStep{bios(150)}, "bios.apply_configuration (priority 150), " + driverOnly},
		{"deploy interface first at equal priority", nil, []provisioner.DeployStep{reset}, "deploy.deploy (priority 100), bios.factory_reset (priority 100), " +
			strings.TrimPrefix(driverOnly, "deploy.deploy (priority 100), ")},
		{"request overrides template", []provisioner.DeployStep{bios(10)}, []provisioner.DeployStep{bios(150)}, driverOnly + ", bios.apply_configuration (priority 10)"},
		{"priority 0 disables", []provisioner.DeployStep{bios(0)}, []provisioner.DeployStep{bios(150)}, driverOnly},
	} {
		if got := ids(allDeploySteps(directRedfishSteps(), tc.requested, tc.templates)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// TestValidateUserSteps checks _validate_user_steps's messages, and
// metalbed's refusal to reorder the deploy interface's own steps.
func TestValidateUserSteps(t *testing.T) {
	for _, tc := range []struct {
		name string
		user []provisioner.DeployStep
		want string
	}{
		{"valid", []provisioner.DeployStep{{Interface: "bios", Step: "apply_configuration", Args: map[string]any{"settings": []any{}}, Priority: 150},
			{Interface: "deploy", Step: "write_image", Priority: 80}}, ""},
		{"unknown", []provisioner.DeployStep{{Interface: "raid", Step: "create_configuration", Priority: 1}},
			"P: node does not support this deploy step: {'interface': 'raid', 'step': 'create_configuration', 'args': {}, 'priority': 1}"},
		{"missing argument", []provisioner.DeployStep{{Interface: "bios", Step: "apply_configuration", Priority: 5}},
			"P: deploy step {'interface': 'bios', 'step': 'apply_configuration', 'args': {}, 'priority': 5} is missing these required arguments: settings (A list of BIOS settings to be applied)"},
		{"missing argument of a disabled step", []provisioner.DeployStep{{Interface: "bios", Step: "apply_configuration"}}, ""},
		{"unexpected arguments", []provisioner.DeployStep{{Interface: "bios", Step: "factory_reset", Args: map[string]any{"b": "x'y", "a": nil}}},
			`P: deploy step {'interface': 'bios', 'step': 'factory_reset', 'args': {'a': None, 'b': "x'y"}, 'priority': 0} has these unexpected arguments: a, b`},
		{"reordered agent step", []provisioner.DeployStep{{Interface: "deploy", Step: "write_image", Priority: 90}},
			"P: deploy step {'interface': 'deploy', 'step': 'write_image', 'args': {}, 'priority': 90}: metalbed's deploy interfaces run their own steps in their fixed order; the priority of deploy.write_image stays 80"},
		{"duplicates", []provisioner.DeployStep{{Interface: "bios", Step: "factory_reset"}, {Interface: "bios", Step: "factory_reset", Priority: 3}},
			"P: deploy steps from all deploy templates matching this node's instance traits cannot have the same interface and step. Duplicate deploy steps for bios.factory_reset"},
	} {
		err := validateUserSteps(directRedfishSteps(), tc.user, "P: ")
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: accepted, want %s", tc.name, tc.want)
		}
	}
}

// TestInstanceTraits checks validate_instance_info_traits's messages.
func TestInstanceTraits(t *testing.T) {
	n := &provisioner.Node{UUID: "n1", Traits: []string{"CUSTOM_A"}}
	for _, tc := range []struct {
		traits any
		want   string
	}{
		{[]any{"CUSTOM_A"}, ""},
		{nil, ""},
		{"CUSTOM_A", "Error parsing traits from Node n1 instance_info field. A list of strings is expected."},
		{[]any{"CUSTOM_A", 5.0}, "Error parsing traits from Node n1 instance_info field. A list of strings is expected."},
		{[]any{"CUSTOM_B", "CUSTOM_A", "CUSTOM_C"}, "Cannot specify instance traits that are not also set on the node. Node n1 is missing traits CUSTOM_B, CUSTOM_C"},
	} {
		n.InstanceInfo = map[string]any{"traits": tc.traits}
		_, err := instanceTraits(n)
		if got := ""; err != nil {
			if got = err.Error(); got != tc.want {
				t.Errorf("%v: %q, want %q", tc.traits, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%v: accepted, want %q", tc.traits, tc.want)
		}
	}
}

// TestConductorSteps checks the split of recorded steps at deploy.deploy,
// read back as the store returns them (JSON numbers as float64).
func TestConductorSteps(t *testing.T) {
	n := &provisioner.Node{}
	recordDeploySteps(n, allDeploySteps(directRedfishSteps(), nil, []provisioner.DeployStep{
		{Interface: "bios", Step: "apply_configuration", Args: map[string]any{"settings": []any{}}, Priority: 150},
		{Interface: "bios", Step: "factory_reset", Priority: 10}}))
	for _, v := range n.DriverInternalInfo[deployStepsKey].([]any) {
		v.(map[string]any)["priority"] = float64(v.(map[string]any)["priority"].(int))
	}
	before, after := conductorSteps(n)
	if got := ids(before) + " | " + ids(after); got != "bios.apply_configuration (priority 150) | bios.factory_reset (priority 10)" {
		t.Errorf("split: %s", got)
	}
	clearDeploySteps(n)
	if before, after := conductorSteps(n); len(before)+len(after) > 0 || n.DeployStep != nil {
		t.Errorf("after clear: %v %v %v", before, after, n.DeployStep)
	}
}

// TestPyLiteral checks Python's repr of JSON values, as Ironic's messages
// print them.
func TestPyLiteral(t *testing.T) {
	v := map[string]any{"a": nil, "b": "x'y", "c": `p"q'r`, "d": `a\b`, "e": []any{true, false, 1.0, 2.5}, "f": map[string]any{}}
	want := `{'a': None, 'b': "x'y", 'c': 'p"q\'r', 'd': 'a\\b', 'e': [True, False, 1, 2.5], 'f': {}}`
	if got := PyRepr(v); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
