package drivers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
)

// InspectInterface discovers a node's hardware (Ironic's inspect
// interface). In-band inspection boots the deploy ramdisk, whose agent
// posts its inventory to the API; the conductor looks the node up, stores
// what it learnt (properties, ports, inventory) and hands the node back
// through Continue.
type InspectInterface interface {
	// Validate checks the node can be inspected (its boot interface
	// prepares ramdisks).
	Validate(ctx context.Context, task *Task) error
	// Inspect starts inspection of a node in "inspecting": StepWait when
	// the ramdisk will post its inventory ("inspect wait"), StepDone when
	// inspection finished synchronously.
	Inspect(ctx context.Context, task *Task) (Step, error)
	// Continue finishes inspection after the conductor processed the
	// inventory the ramdisk posted: the node is powered off and its
	// ramdisk boot configuration removed. StepDone moves it to
	// "manageable"; an error fails it ("inspect failed").
	Continue(ctx context.Context, task *Task) (Step, error)
	// Abort undoes Inspect when inspection is aborted or timed out (boot
	// configuration removed, node powered off); errors are reported, the
	// node fails anyway.
	Abort(ctx context.Context, task *Task) error
}

// InspectFor returns the inspect interface node uses.
func (h *HardwareType) InspectFor(node *provisioner.Node) (InspectInterface, error) {
	return pick(h, RoleInspect, h.Inspect, node.Interfaces.Inspect)
}

// InspectionCallbackParam is the kernel parameter naming where the agent
// posts its inventory (IPA's ipa-inspection-callback-url).
const InspectionCallbackParam = "ipa-inspection-callback-url"

// AgentInspectName is the in-band inspect interface's name, as current
// Ironic names it.
const AgentInspectName = "agent"

// AgentInspect is Ironic's "agent" inspect interface: managed in-band
// inspection. Inspect powers the node off, prepares the deploy ramdisk
// through the node's boot interface with the agent's parameters and
// ipa-inspection-callback-url=<API>/v1/continue_inspection, and powers
// the node on; the agent posts its inventory there. Continue powers the
// node off and removes the ramdisk's boot configuration.
type AgentInspect struct {
	apiURL string
}

var _ InspectInterface = (*AgentInspect)(nil)

// NewAgentInspect builds the "agent" inspect interface for the Ironic API
// at apiURL (what the agent gets as ipa-api-url). It does no I/O.
func NewAgentInspect(apiURL string) (*AgentInspect, error) {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent inspect: API URL %q: want http(s)://host[:port]", apiURL)
	}
	return &AgentInspect{apiURL: strings.TrimRight(apiURL, "/")}, nil
}

// CallbackURL is where the agent posts its inventory: Ironic's
// inspect_utils.get_inspection_callback of the API URL.
func (a *AgentInspect) CallbackURL() string {
	if strings.HasSuffix(a.apiURL, "/v1") {
		return a.apiURL + "/continue_inspection"
	}
	return a.apiURL + "/v1/continue_inspection"
}

// Validate checks the node's boot interface can boot the ramdisk
// (Ironic's require_managed_boot for the agent interface). A node without
// ports whose management interface lists its NICs passes: inspection
// creates their ports first, and the boot interface is checked when it
// prepares the ramdisk.
func (a *AgentInspect) Validate(ctx context.Context, t *Task) error {
	if t.Boot == nil {
		return &ParameterError{Msg: fmt.Sprintf("Node %s has no boot interface to boot the inspection ramdisk.", t.Node.UUID)}
	}
	if _, ok := t.Management.(MACAddresser); ok && len(t.Ports) == 0 {
		return nil
	}
	return t.Boot.Validate(ctx, t)
}

// RamdiskParams are the kernel parameters of the inspection ramdisk:
// the agent's, with the inspection callback.
func (a *AgentInspect) RamdiskParams(node *provisioner.Node) map[string]string {
	return map[string]string{
		"ipa-api-url":           a.apiURL,
		"ipa-global-request-id": "req-" + node.UUID,
		InspectionCallbackParam: a.CallbackURL(),
	}
}

// Inspect is Ironic's prepare_managed_inspection then power on: power
// off, boot the agent ramdisk with the callback, power on, wait.
func (a *AgentInspect) Inspect(ctx context.Context, t *Task) (Step, error) {
	fail := func(err error) (Step, error) {
		return 0, &DeployError{Msg: fmt.Sprintf("Failed to inspect hardware. Reason: unable to start inspection: %s", err), Err: err}
	}
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOff); err != nil {
		return fail(err)
	}
	t.Node.PowerState = provisioner.PowerOff
	if err := t.Boot.PrepareRamdisk(ctx, t, a.RamdiskParams(t.Node)); err != nil {
		return fail(err)
	}
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOn); err != nil {
		return fail(err)
	}
	t.Node.PowerState = provisioner.PowerOn
	return StepWait, nil
}

// Continue powers the node off (Ironic's [inspector]power_off) and
// removes the ramdisk's boot configuration.
func (a *AgentInspect) Continue(ctx context.Context, t *Task) (Step, error) {
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOff); err != nil {
		return 0, &DeployError{Err: err, Msg: fmt.Sprintf(
			"Failed to inspect hardware. Reason: Failed to power off node %s after inspection. Check its power management configuration. Error: %s",
			t.Node.UUID, err)}
	}
	t.Node.PowerState = provisioner.PowerOff
	if err := t.Boot.CleanUpRamdisk(ctx, t); err != nil {
		return 0, &DeployError{Err: err, Msg: fmt.Sprintf(
			"Failed to inspect hardware. Reason: Inspection clean up failed: unable to clean up ramdisk boot: %s", err)}
	}
	return StepDone, nil
}

// Abort is Ironic's inspection_error_handler clean-up: ramdisk boot
// configuration removed, node powered off.
func (a *AgentInspect) Abort(ctx context.Context, t *Task) error {
	var errs []error
	if err := t.Boot.CleanUpRamdisk(ctx, t); err != nil {
		errs = append(errs, fmt.Errorf("unable to clean up ramdisk boot: %w", err))
	}
	if err := t.Power.SetPowerState(ctx, t.Node, provisioner.PowerOff); err != nil {
		errs = append(errs, fmt.Errorf("unable to power off the node: %w", err))
	} else {
		t.Node.PowerState = provisioner.PowerOff
	}
	return errors.Join(errs...)
}

// MACAddresser is a management interface that reads the node's enabled
// NICs from its BMC (Ironic's management.get_mac_addresses). Inspection
// creates their ports before booting the ramdisk, so a node enrolled
// without ports boots it by PXE.
type MACAddresser interface {
	MACAddresses(ctx context.Context, node *provisioner.Node) ([]string, error)
}

var _ MACAddresser = (*RedfishManagement)(nil)

// MACAddresses lists the MACs of the system's EthernetInterfaces whose
// Status.State is Enabled, as Ironic's redfish get_enabled_macs.
func (m *RedfishManagement) MACAddresses(ctx context.Context, node *provisioner.Node) ([]string, error) {
	cl, _, sys, err := m.core.system(ctx, node)
	if err != nil {
		return nil, err
	}
	if sys.EthernetIfs.ODataID == "" {
		return nil, nil
	}
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		} `json:"Members"`
	}
	if _, err := cl.do(ctx, "GET", sys.EthernetIfs.ODataID, nil, &coll); err != nil {
		return nil, redfishFailure(node, "get the ethernet interfaces", err)
	}
	var macs []string
	for _, mem := range coll.Members {
		var nic struct {
			MACAddress string `json:"MACAddress"`
			Status     struct {
				State string `json:"State"`
			} `json:"Status"`
		}
		if _, err := cl.do(ctx, "GET", mem.ID, nil, &nic); err != nil {
			return nil, redfishFailure(node, "get ethernet interface "+mem.ID, err)
		}
		if nic.Status.State == "Enabled" && nic.MACAddress != "" {
			macs = append(macs, strings.ToLower(nic.MACAddress))
		}
	}
	return macs, nil
}
