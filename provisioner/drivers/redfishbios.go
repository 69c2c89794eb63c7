package drivers

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/metalbed/metalbed/provisioner"
)

// RedfishBios is the "redfish" bios interface (Ironic's RedfishBIOS) over
// the node's Redfish service: its deploy steps apply_configuration and
// factory_reset stage settings in the system's Bios/Settings (or POST
// #Bios.ResetBios), reboot the node so its firmware applies them, and
// check the Bios resource shows what was asked.
//
// Ironic reboots into the deploy ramdisk and checks the attributes when
// the agent heartbeats again; metalbed reboots through the power
// interface and checks them once the system is back on, within the step.
type RedfishBios struct{ core *redfishCore }

// applyConfigurationArgs is apply_configuration's argsinfo.
var applyConfigurationArgs = map[string]StepArg{
	"settings": {Description: "A list of BIOS settings to be applied", Required: true},
}

// Validate checks driver_info as the power interface does.
func (b *RedfishBios) Validate(_ context.Context, node *provisioner.Node) error {
	_, err := parseRedfishInfo(node)
	return err
}

// DeploySteps are RedfishBIOS's deploy steps, both at priority 0: they run
// only when a deploy template or deploy_steps asks.
func (b *RedfishBios) DeploySteps() []DeployStepInfo {
	return []DeployStepInfo{
		{Interface: RoleBios, Step: "apply_configuration", ArgsInfo: applyConfigurationArgs},
		{Interface: RoleBios, Step: "factory_reset"},
	}
}

// rfBios is the part of a Bios resource the steps read.
type rfBios struct {
	Attributes map[string]any `json:"Attributes"`
	Settings   struct {
		Object struct {
			ODataID string `json:"@odata.id"`
		} `json:"SettingsObject"`
		ApplyTimes []string `json:"SupportedApplyTimes"`
	} `json:"@Redfish.Settings"`
	Actions struct {
		Reset struct {
			Target string `json:"target"`
		} `json:"#Bios.ResetBios"`
	} `json:"Actions"`
}

// RunDeployStep runs apply_configuration (args: settings, a list of
// {name, value}) or factory_reset.
func (b *RedfishBios) RunDeployStep(ctx context.Context, task *Task, step string, args map[string]any) error {
	node := task.Node
	switch step {
	case "apply_configuration":
		attrs, err := biosAttributes(node, args["settings"])
		if err != nil {
			return err
		}
		return b.applyConfiguration(ctx, task, attrs)
	case "factory_reset":
		return b.factoryReset(ctx, task)
	}
	return &DeployError{Msg: fmt.Sprintf("Redfish BIOS interface of node %s has no deploy step %s", node.UUID, step), Err: ErrUnsupported}
}

// biosAttributes turns apply_configuration's settings into Redfish
// attributes.
func biosAttributes(node *provisioner.Node, settings any) (map[string]any, error) {
	list, ok := settings.([]any)
	bad := &DeployError{Msg: fmt.Sprintf("Redfish BIOS apply configuration failed for node %s: settings %s is not a list of {'name': …, 'value': …}",
		node.UUID, PyLiteral(settings)), Err: ErrInvalidParameter}
	if !ok || len(list) == 0 {
		return nil, bad
	}
	attrs := make(map[string]any, len(list))
	for _, s := range list {
		m, _ := s.(map[string]any)
		name, ok := m["name"].(string)
		value, hasValue := m["value"]
		if !ok || !hasValue {
			return nil, bad
		}
		attrs[name] = value
	}
	return attrs, nil
}

// bios GETs the node's Bios resource; Ironic's message when the system
// has none.
func (b *RedfishBios) bios(ctx context.Context, node *provisioner.Node) (*rfClient, string, *rfBios, error) {
	cl, _, sys, err := b.core.system(ctx, node)
	if err != nil {
		return nil, "", nil, err
	}
	if sys.Bios.ODataID == "" {
		return nil, "", nil, redfishError(fmt.Sprintf(
			"Redfish BIOS factory reset failed for node %s, because BIOS settings are not supported.", node.UUID), ErrUnsupported)
	}
	var bios rfBios
	if _, err := cl.do(ctx, "GET", sys.Bios.ODataID, nil, &bios); err != nil {
		return nil, "", nil, redfishFailure(node, "get the BIOS", err)
	}
	return cl, sys.Bios.ODataID, &bios, nil
}

// redfishError is Ironic's RedfishError: "Redfish exception occurred.
// Error: MSG".
func redfishError(msg string, cause error) error {
	return &DeployError{Msg: "Redfish exception occurred. Error: " + msg, Err: cause}
}

// applyConfiguration PATCHes Bios/Settings (ApplyTime OnReset when the
// service offers it, as sushy's set_attributes), reboots the node and
// checks the attributes took effect.
func (b *RedfishBios) applyConfiguration(ctx context.Context, task *Task, attrs map[string]any) error {
	node := task.Node
	cl, path, bios, err := b.bios(ctx, node)
	if err != nil {
		return err
	}
	settings := bios.Settings.Object.ODataID
	if settings == "" {
		settings = path + "/Settings"
	}
	body := map[string]any{"Attributes": attrs}
	if slices.Contains(bios.Settings.ApplyTimes, "OnReset") {
		body["@Redfish.SettingsApplyTime"] = map[string]any{"@odata.type": "#Settings.v1_0_0.PreferredApplyTime", "ApplyTime": "OnReset"}
	}
	if _, err := cl.do(ctx, "PATCH", settings, body, nil); err != nil {
		return redfishError(fmt.Sprintf("Redfish BIOS apply configuration failed for node %s. Error: %v", node.UUID, err), err)
	}
	b.core.log.Info("BIOS settings staged", "node", node.UUID, "event", "apply_configuration")
	if err := b.reboot(ctx, task); err != nil {
		return err
	}
	_, _, bios, err = b.bios(ctx, node)
	if err != nil {
		return err
	}
	notUpdated := map[string]any{}
	for k, v := range attrs {
		if !reflect.DeepEqual(bios.Attributes[k], v) {
			notUpdated[k] = v
		}
	}
	if len(notUpdated) > 0 {
		return &DeployError{Msg: fmt.Sprintf("Redfish BIOS apply_configuration step failed. Attributes %s are not updated.",
			PyLiteral(notUpdated)), Err: ErrStepFailed}
	}
	return nil
}

// factoryReset POSTs #Bios.ResetBios and reboots the node so the firmware
// applies the defaults.
func (b *RedfishBios) factoryReset(ctx context.Context, task *Task) error {
	node := task.Node
	cl, path, bios, err := b.bios(ctx, node)
	if err != nil {
		return err
	}
	target := bios.Actions.Reset.Target
	if target == "" {
		target = path + "/Actions/Bios.ResetBios"
	}
	if _, err := cl.do(ctx, "POST", target, map[string]any{}, nil); err != nil {
		return redfishError(fmt.Sprintf("Redfish BIOS factory reset failed for node %s. Error: %v", node.UUID, err), err)
	}
	return b.reboot(ctx, task)
}

// reboot is reboot_to_finish_step's power cycle, through the node's power
// interface.
func (b *RedfishBios) reboot(ctx context.Context, task *Task) error {
	if task.Power == nil {
		return &DeployError{Msg: fmt.Sprintf("node %s has no power interface to reboot it", task.Node.UUID), Err: ErrUnsupported}
	}
	return task.Power.Reboot(ctx, task.Node, false)
}
