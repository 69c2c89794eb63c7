package conductor

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// cleaningInterfaces are the interfaces a clean step may name, in
// Ironic's order (conductor/steps.py CLEANING_INTERFACE_PRIORITY).
var cleaningInterfaces = []string{"power", "management", "deploy", "bios", "raid"}

// checkCleanSteps validates manual clean steps as Ironic's
// _CLEAN_STEPS_SCHEMA does: each an object with "interface" (one of
// cleaningInterfaces) and a non-empty "step", optionally "args" (an
// object), nothing else. The message is "Invalid clean_steps: " and the
// first line of what jsonschema says.
func checkCleanSteps(steps []map[string]any) error {
	bad := func(format string, a ...any) error {
		return refuse(KindInvalid, "Invalid clean_steps: "+format, a...)
	}
	quoted := make([]string, len(cleaningInterfaces))
	for i, s := range cleaningInterfaces {
		quoted[i] = "'" + s + "'"
	}
	for _, st := range steps {
		if st == nil {
			return bad("None is not of type 'object'")
		}
		for _, k := range []string{"interface", "step"} {
			if _, ok := st[k]; !ok {
				return bad("'%s' is a required property", k)
			}
		}
		if msg := AdditionalProperties(st, "interface", "step", "args"); msg != "" {
			return bad("%s", msg)
		}
		iface, _ := st["interface"].(string)
		if !slices.Contains(cleaningInterfaces, iface) {
			return bad("%s is not one of [%s]", PyRepr(st["interface"]), strings.Join(quoted, ", "))
		}
		name, ok := st["step"].(string)
		if !ok {
			return bad("%s is not of type 'string'", PyRepr(st["step"]))
		}
		if name == "" {
			return bad("'' is too short")
		}
		if a, ok := st["args"]; ok {
			if _, isObj := a.(map[string]any); !isObj {
				return bad("%s is not of type 'object'", PyRepr(a))
			}
		}
	}
	return nil
}

// AdditionalProperties is jsonschema's message for the keys of body not
// among allowed ("Additional properties are not allowed ('x' was
// unexpected)"), "" when there are none.
func AdditionalProperties(body map[string]any, allowed ...string) string {
	var extra []string
	for k := range body {
		if !slices.Contains(allowed, k) {
			extra = append(extra, "'"+k+"'")
		}
	}
	if len(extra) == 0 {
		return ""
	}
	slices.Sort(extra)
	verb := "was"
	if len(extra) > 1 {
		verb = "were"
	}
	return fmt.Sprintf("Additional properties are not allowed (%s %s unexpected)", strings.Join(extra, ", "), verb)
}

// PyRepr renders a JSON value as Python's repr does in jsonschema's
// messages (drivers.PyLiteral).
func PyRepr(v any) string { return drivers.PyLiteral(v) }

// checkManualSteps refuses steps the node's deploy interface does not
// run (Ironic: "node does not support this clean step"), before anything
// is booted.
func checkManualSteps(h *drivers.HardwareType, n *provisioner.Node, steps []map[string]any) error {
	d, _ := h.DeployFor(n) // none: no steps
	mc, _ := d.(drivers.ManualCleaner)
	for _, st := range steps {
		if mc == nil || st["interface"] != "deploy" || !slices.Contains(mc.CleanSteps(), st["step"].(string)) {
			return refuse(KindInvalid, "Node %s: node does not support this clean step: {'interface': '%s', 'step': '%s'}",
				n.UUID, st["interface"], st["step"])
		}
	}
	return nil
}

// recordManualSteps keeps the manual steps in driver_internal_info for the
// deploy interface's Clean (drivers.ManualCleanStepsKey).
func recordManualSteps(n *provisioner.Node, steps []map[string]any) {
	list := make([]any, len(steps))
	for i, st := range steps {
		list[i] = maps.Clone(st)
	}
	if n.DriverInternalInfo == nil {
		n.DriverInternalInfo = map[string]any{}
	}
	n.DriverInternalInfo[drivers.ManualCleanStepsKey] = list
}
