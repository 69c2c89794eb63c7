package drivers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// RedfishConfig configures the "redfish" hardware type. The zero value
// gives Ironic's defaults.
type RedfishConfig struct {
	// PowerTimeout bounds waiting for the system to report the target
	// power state; default 60 s ([conductor]power_state_change_timeout).
	PowerTimeout time.Duration
	// SoftPowerOffTimeout bounds waiting after GracefulShutdown; default
	// 600 s ([conductor]soft_power_off_timeout).
	SoftPowerOffTimeout time.Duration
	// PollInterval is the pause between power state polls; default 1 s.
	PollInterval time.Duration
	// ConnectionAttempts is how often one request is tried when the
	// service is unreachable or answers 409 or 5xx; default 5
	// ([redfish]connection_attempts).
	ConnectionAttempts int
	// ConnectionRetryInterval is the pause between those tries; default
	// 4 s ([redfish]connection_retry_interval).
	ConnectionRetryInterval time.Duration
	// RequestTimeout bounds one HTTP request; default 60 s.
	RequestTimeout time.Duration
	// DefaultBootMode applies when nothing on the node chooses one;
	// default "uefi".
	DefaultBootMode string
	// Boot and Deploy are the boot and deploy interfaces by name, as in
	// IPMIConfig: default "pxe" and "direct".
	Boot   map[string]BootInterface
	Deploy map[string]DeployInterface
	// Inspect are the inspect interfaces by name, as in IPMIConfig.
	Inspect map[string]InspectInterface
	Logger  *slog.Logger // nil => discard
}

func (c *RedfishConfig) applyDefaults() error {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.PowerTimeout, 60*time.Second)
	setDur(&c.SoftPowerOffTimeout, 600*time.Second)
	setDur(&c.PollInterval, time.Second)
	setDur(&c.ConnectionRetryInterval, 4*time.Second)
	setDur(&c.RequestTimeout, 60*time.Second)
	if c.ConnectionAttempts <= 0 {
		c.ConnectionAttempts = 5
	}
	switch c.DefaultBootMode {
	case "":
		c.DefaultBootMode = BootModeUEFI
	case BootModeUEFI, BootModeBIOS:
	default:
		return fmt.Errorf("default boot mode %q: want %q or %q", c.DefaultBootMode, BootModeUEFI, BootModeBIOS)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// NewRedfish builds the "redfish" hardware type: power and management
// "redfish" (over the node's Redfish service, driver_info redfish_*), boot
// "pxe" and deploy "direct" (or those of cfg). It does no I/O.
func NewRedfish(cfg RedfishConfig) (*HardwareType, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, fmt.Errorf("redfish hardware type: %w", err)
	}
	core := &redfishCore{cfg: cfg, log: cfg.Logger, clients: map[redfishInfo]*rfClient{}}
	boot, bootNames := namedDefault(cfg.Boot, "pxe")
	deploy, deployNames := namedDefault(cfg.Deploy, "direct")
	inspect, inspectNames := namedDefault(cfg.Inspect, "no-inspect")
	return &HardwareType{
		Name: "redfish",
		Enabled: map[Role][]string{
			RoleBios:       {"no-bios", "redfish"},
			RoleBoot:       bootNames,
			RoleConsole:    {"no-console"},
			RoleDeploy:     deployNames,
			RoleInspect:    inspectNames,
			RoleManagement: {"redfish"},
			RoleNetwork:    {"noop"},
			RolePower:      {"redfish"},
			RoleRaid:       {"no-raid"},
			RoleRescue:     {"no-rescue"},
			RoleStorage:    {"noop"},
			RoleVendor:     {"no-vendor"},
		},
		Power:      map[string]PowerInterface{"redfish": &RedfishPower{core: core}},
		Management: map[string]ManagementInterface{"redfish": &RedfishManagement{core: core}},
		Bios:       map[string]BiosInterface{"redfish": &RedfishBios{core: core}},
		Boot:       boot,
		Deploy:     deploy,
		Inspect:    inspect,
	}, nil
}

// redfishInfo is driver_info parsed and checked, as Ironic's
// redfish/utils.py parse_driver_info. It is comparable: it keys the
// client cache (sushy's SessionCache).
type redfishInfo struct {
	Address  string // scheme://host[:port]
	SystemID string // path of the ComputerSystem; "" => the only one
	Username string
	Password string
	VerifyCA string // "true", "false" or a CA file or directory
	AuthType string // auto, session, basic
}

var redfishAuthTypes = []string{"auto", "session", "basic"}

// parseRedfishInfo validates node.DriverInfo with Ironic's messages.
func parseRedfishInfo(node *provisioner.Node) (redfishInfo, error) {
	info := node.DriverInfo
	if !truthy(info["redfish_address"]) {
		return redfishInfo{}, invalidf("Missing the following Redfish properties in node %s driver_info: redfish_address", node.UUID)
	}
	addr := stringValue(info["redfish_address"])
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return redfishInfo{}, invalidf("Invalid Redfish address %s set in driver_info/redfish_address on node %s", stringValue(info["redfish_address"]), node.UUID)
	}
	out := redfishInfo{Address: u.Scheme + "://" + u.Host, AuthType: "auto", VerifyCA: "true"}
	if v := stringValue(info["redfish_system_id"]); v != "" {
		if strings.ContainsAny(v, " ?#") {
			return redfishInfo{}, invalidf("Invalid value \"%s\" set in driver_info/redfish_system_id on node %s. The value should be a path (or identity) to a System resource", v, node.UUID)
		}
		if !strings.HasPrefix(v, "/") {
			v = "/redfish/v1/Systems/" + v
		}
		out.SystemID = strings.TrimSuffix(v, "/")
	}
	out.Username = stringValue(info["redfish_username"])
	out.Password = stringValue(info["redfish_password"])
	if v, ok := info["redfish_verify_ca"]; ok && v != nil {
		switch x := v.(type) {
		case bool:
			out.VerifyCA = fmt.Sprint(x)
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "1", "t", "true", "on", "y", "yes":
				out.VerifyCA = "true"
			case "0", "f", "false", "off", "n", "no":
				out.VerifyCA = "false"
			default:
				if _, err := os.Stat(x); err != nil {
					return redfishInfo{}, invalidf("Invalid value type set in driver_info/redfish_verify_ca on node %s. The value should be a Boolean or the path to a file/directory, not \"%s\"", node.UUID, x)
				}
				out.VerifyCA = x
			}
		default:
			return redfishInfo{}, invalidf("Invalid value type set in driver_info/redfish_verify_ca on node %s. The value should be a Boolean or the path to a file/directory, not \"%v\"", node.UUID, v)
		}
	}
	if v := stringValue(info["redfish_auth_type"]); v != "" {
		if !slices.Contains(redfishAuthTypes, v) {
			return redfishInfo{}, invalidf("Invalid value \"%s\" set in driver_info/redfish_auth_type on node %s. The value should be one of %s", v, node.UUID, PyList(redfishAuthTypes))
		}
		out.AuthType = v
	}
	return out, nil
}

// redfishProperties documents the driver_info keys the redfish interfaces
// read, in Ironic's words.
func redfishProperties() map[string]string {
	return map[string]string{
		"redfish_address": "The URL address to the Redfish controller. It must include the authority portion of the URL. " +
			"If the scheme is missing, https is assumed. For example: https://mgmt.vendor.com. Required",
		"redfish_system_id": "The canonical path to the ComputerSystem resource that the driver will interact with. " +
			"It should include the root service, version and the unique resource path to a ComputerSystem. " +
			"This property is only required if target BMC manages more than one ComputerSystem. Otherwise " +
			"ironic will pick the only available ComputerSystem automatically. For example: /redfish/v1/Systems/1.",
		"redfish_username": "User account with admin/server-profile access privilege. Although not required, " +
			"it is highly recommended.",
		"redfish_password": "User account password. Although not required, it is highly recommended.",
		"redfish_verify_ca": "Either a Boolean value, a path to a CA_BUNDLE file or directory with certificates " +
			"of trusted CAs. If set to True the driver will verify the host certificates; if False the driver " +
			"will ignore verifying the SSL certificate. If it's a path the driver will use the specified " +
			"certificate or one of the certificates in the directory. Defaults to True. Optional",
		"redfish_auth_type": "Redfish HTTP client authentication method. One of \"basic\", \"session\" or \"auto\". " +
			"The \"auto\" mode first tries \"session\" and falls back to \"basic\" if session authentication " +
			"is not supported by the Redfish BMC. Default is set in ironic config file. Optional",
	}
}

// redfishCore is what the redfish power and management interfaces share:
// one client per service and credentials.
type redfishCore struct {
	cfg RedfishConfig
	log *slog.Logger

	mu      sync.Mutex
	clients map[redfishInfo]*rfClient
}

// client returns the cached client for info, building it on first use.
func (c *redfishCore) client(info redfishInfo) (*rfClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[info]; ok {
		return cl, nil
	}
	cl, err := newRFClient(info, c.cfg.RequestTimeout, c.cfg.ConnectionAttempts, c.cfg.ConnectionRetryInterval)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	c.clients[info] = cl
	return cl, nil
}

// rfSystem is the part of a ComputerSystem the interfaces read.
type rfSystem struct {
	ODataID     string `json:"@odata.id"`
	PowerState  string `json:"PowerState"`
	EthernetIfs struct {
		ODataID string `json:"@odata.id"`
	} `json:"EthernetInterfaces"`
	Boot struct {
		Enabled        string   `json:"BootSourceOverrideEnabled"`
		Target         string   `json:"BootSourceOverrideTarget"`
		AllowedTargets []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
		Mode           string   `json:"BootSourceOverrideMode"`
	} `json:"Boot"`
	Actions struct {
		Reset struct {
			Target  string   `json:"target"`
			Allowed []string `json:"ResetType@Redfish.AllowableValues"`
		} `json:"#ComputerSystem.Reset"`
	} `json:"Actions"`
	Bios struct {
		ODataID string `json:"@odata.id"`
	} `json:"Bios"`
	Links struct {
		ManagedBy []struct {
			ID string `json:"@odata.id"`
		} `json:"ManagedBy"`
	} `json:"Links"`
}

// system resolves the node's ComputerSystem path (the only member of the
// Systems collection when redfish_system_id is not set) and GETs it.
func (c *redfishCore) system(ctx context.Context, node *provisioner.Node) (*rfClient, string, *rfSystem, error) {
	info, err := parseRedfishInfo(node)
	if err != nil {
		return nil, "", nil, err
	}
	cl, err := c.client(info)
	if err != nil {
		return nil, "", nil, err
	}
	path := info.SystemID
	if path == "" {
		var coll struct {
			Members []struct {
				ID string `json:"@odata.id"`
			} `json:"Members"`
		}
		if _, err := cl.do(ctx, "GET", "/redfish/v1/Systems", nil, &coll); err != nil {
			return nil, "", nil, redfishFailure(node, "get the systems", err)
		}
		if len(coll.Members) != 1 {
			return nil, "", nil, &DeployError{Msg: fmt.Sprintf(
				"Redfish service %s manages %d systems: set driver_info/redfish_system_id on node %s", info.Address, len(coll.Members), node.UUID), Err: errNotRedfish}
		}
		path = coll.Members[0].ID
	}
	var sys rfSystem
	if _, err := cl.do(ctx, "GET", path, nil, &sys); err != nil {
		return nil, "", nil, redfishFailure(node, "get system "+path, err)
	}
	return cl, path, &sys, nil
}

// redfishFailure is Ironic's RedfishError / RedfishConnectionError text
// for last_error, wrapping err.
func redfishFailure(node *provisioner.Node, what string, err error) error {
	return &DeployError{Msg: fmt.Sprintf("Redfish exception occurred on node %s while trying to %s. Error: %v", node.UUID, what, err), Err: err}
}

// reset POSTs #ComputerSystem.Reset with resetType.
func (c *redfishCore) reset(ctx context.Context, node *provisioner.Node, resetType string) error {
	cl, path, sys, err := c.system(ctx, node)
	if err != nil {
		return err
	}
	target := sys.Actions.Reset.Target
	if target == "" {
		target = path + "/Actions/ComputerSystem.Reset"
	}
	if a := sys.Actions.Reset.Allowed; len(a) > 0 && !slices.Contains(a, resetType) {
		return &DeployError{Msg: fmt.Sprintf("Redfish system %s of node %s does not support reset type %s (it allows %s)",
			path, node.UUID, resetType, strings.Join(a, ", ")), Err: ErrUnsupported}
	}
	if _, err := cl.do(ctx, "POST", target, map[string]string{"ResetType": resetType}, nil); err != nil {
		return redfishFailure(node, "reset system with "+resetType, err)
	}
	c.log.Info("redfish reset", "node", node.UUID, "event", resetType)
	return nil
}

// powerState maps Redfish PowerState as Ironic's GET_POWER_STATE_MAP.
func powerState(s string) provisioner.PowerState {
	switch s {
	case "On", "PoweringOn":
		return provisioner.PowerOn
	case "Off", "PoweringOff":
		return provisioner.PowerOff
	}
	return provisioner.PowerError
}

// RedfishPower is the "redfish" power interface.
type RedfishPower struct{ core *redfishCore }

// Validate checks driver_info without touching the BMC.
func (p *RedfishPower) Validate(_ context.Context, node *provisioner.Node) error {
	_, err := parseRedfishInfo(node)
	return err
}

// Properties lists the driver_info keys read.
func (p *RedfishPower) Properties() map[string]string { return redfishProperties() }

// GetPowerState reads the system's PowerState.
func (p *RedfishPower) GetPowerState(ctx context.Context, node *provisioner.Node) (provisioner.PowerState, error) {
	_, _, sys, err := p.core.system(ctx, node)
	if err != nil {
		return "", err
	}
	return powerState(sys.PowerState), nil
}

// SetPowerState resets the system as Ironic's SET_POWER_STATE_MAP (power
// on: On, power off: ForceOff, soft power off: GracefulShutdown, rebooting:
// ForceRestart, soft rebooting: GracefulRestart) and waits for the state
// Ironic's TARGET_STATE_MAP names.
func (p *RedfishPower) SetPowerState(ctx context.Context, node *provisioner.Node, target provisioner.PowerState) error {
	cfg := p.core.cfg
	switch target {
	case provisioner.PowerOn:
		return p.setAndWait(ctx, node, "On", provisioner.PowerOn, cfg.PowerTimeout)
	case provisioner.PowerOff:
		return p.setAndWait(ctx, node, "ForceOff", provisioner.PowerOff, cfg.PowerTimeout)
	case provisioner.SoftPowerOff:
		return p.setAndWait(ctx, node, "GracefulShutdown", provisioner.PowerOff, cfg.SoftPowerOffTimeout)
	case provisioner.Rebooting:
		return p.Reboot(ctx, node, false)
	case provisioner.SoftRebooting:
		return p.Reboot(ctx, node, true)
	}
	return invalidf("set_power_state called with invalid power state %s.", target)
}

// Reboot restarts a powered-on system (ForceRestart, or GracefulRestart
// when soft) and powers on one that is off, then waits for power on, as
// Ironic's redfish reboot.
func (p *RedfishPower) Reboot(ctx context.Context, node *provisioner.Node, soft bool) error {
	st, err := p.GetPowerState(ctx, node)
	if err != nil {
		return err
	}
	rt := "On"
	if st == provisioner.PowerOn {
		rt = "ForceRestart"
		if soft {
			rt = "GracefulRestart"
		}
	}
	timeout := p.core.cfg.PowerTimeout
	if soft {
		timeout = p.core.cfg.SoftPowerOffTimeout
	}
	return p.setAndWait(ctx, node, rt, provisioner.PowerOn, timeout)
}

// setAndWait resets and polls PowerState until target, as Ironic's
// node_wait_for_power_state.
func (p *RedfishPower) setAndWait(ctx context.Context, node *provisioner.Node, resetType string, target provisioner.PowerState, timeout time.Duration) error {
	if err := p.core.reset(ctx, node, resetType); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last provisioner.PowerState
	for {
		st, err := p.GetPowerState(ctx, node)
		if err == nil && st == target {
			p.core.log.Info("power state reached", "node", node.UUID, "state", string(st))
			return nil
		}
		if err == nil {
			last = st
		}
		if time.Now().After(deadline) {
			if err != nil {
				return &DeployError{Msg: fmt.Sprintf("Timed out after %s waiting for node %s to reach %s: %v", timeout, node.UUID, target, err), Err: err}
			}
			return &DeployError{Msg: fmt.Sprintf("Timed out after %s waiting for node %s to reach %s, the Redfish service reports %q", timeout, node.UUID, target, last)}
		}
		t := time.NewTimer(p.core.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Ironic's boot devices and their Redfish BootSourceOverrideTarget, as
// redfish/management.py BOOT_DEVICE_MAP.
var redfishBootDevices = []struct{ Name, Target string }{
	{"pxe", "Pxe"},
	{"disk", "Hdd"},
	{"cdrom", "Cd"},
	{"bios", "BiosSetup"},
}

// redfishTarget is the BootSourceOverrideTarget of an Ironic boot device:
// one of redfishBootDevices, or UefiHttp for BootDeviceUEFIHTTP (which
// SupportedBootDevices does not list, as Ironic 21.4's API does not).
func redfishTarget(dev string) (string, bool) {
	if dev == BootDeviceUEFIHTTP {
		return "UefiHttp", true
	}
	for _, d := range redfishBootDevices {
		if d.Name == dev {
			return d.Target, true
		}
	}
	return "", false
}

// uefiHTTPNeedsUEFI refuses UEFI HTTP boot to a node in bios boot mode,
// with the message of Ironic's UnsupportedHardwareFeature.
const uefiHTTPNeedsUEFI = "Node %s hardware does not support feature UefiHttp boot in bios boot mode, which is required based upon the requested configuration."

// UEFIHTTPNeedsUEFI is the message refusing UEFI HTTP boot to node, whose
// boot mode is bios.
func UEFIHTTPNeedsUEFI(node string) string { return fmt.Sprintf(uefiHTTPNeedsUEFI, node) }

// Redfish BootSourceOverrideMode for Ironic's boot modes.
func redfishBootMode(mode string) string {
	if mode == BootModeBIOS {
		return "Legacy"
	}
	return "UEFI"
}

// RedfishManagement is the "redfish" management interface.
type RedfishManagement struct{ core *redfishCore }

// Validate checks driver_info.
func (m *RedfishManagement) Validate(_ context.Context, node *provisioner.Node) error {
	_, err := parseRedfishInfo(node)
	return err
}

// Properties lists the driver_info keys read.
func (m *RedfishManagement) Properties() map[string]string { return redfishProperties() }

// SupportedBootDevices lists Ironic's devices whose target the system
// allows (all four when it lists none).
func (m *RedfishManagement) SupportedBootDevices(ctx context.Context, node *provisioner.Node) ([]string, error) {
	_, _, sys, err := m.core.system(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range redfishBootDevices {
		if len(sys.Boot.AllowedTargets) == 0 || slices.Contains(sys.Boot.AllowedTargets, d.Target) {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

// SupportsUEFIHTTP reports whether the system lists UefiHttp among its
// BootSourceOverrideTarget@Redfish.AllowableValues, as Ironic's
// RedfishHttpsBoot._validate_hardware asks.
func (m *RedfishManagement) SupportsUEFIHTTP(ctx context.Context, node *provisioner.Node) (bool, error) {
	_, _, sys, err := m.core.system(ctx, node)
	if err != nil {
		return false, err
	}
	return slices.Contains(sys.Boot.AllowedTargets, "UefiHttp"), nil
}

// SetBootDevice PATCHes BootSourceOverrideTarget with
// BootSourceOverrideEnabled Continuous (persistent) or Once, then, in a
// PATCH of its own as Ironic does, BootSourceOverrideMode for the node's
// boot mode when the system reports another. A UefiHttp target goes with
// its HttpBootUri (null for none, as sushy: the URI then comes from DHCP)
// and with BootSourceOverrideMode UEFI in the same PATCH, since BMCs
// refuse UefiHttp in Legacy mode; a node in bios boot mode cannot have it.
func (m *RedfishManagement) SetBootDevice(ctx context.Context, node *provisioner.Node, dev BootDevice) error {
	target, ok := redfishTarget(dev.Device)
	if !ok {
		return invalidf("Invalid boot device %s specified.", dev.Device)
	}
	mode := redfishBootMode(node.DeployBootMode(m.core.cfg.DefaultBootMode))
	if target == "UefiHttp" && mode != "UEFI" {
		return invalidf(uefiHTTPNeedsUEFI, node.UUID)
	}
	cl, path, sys, err := m.core.system(ctx, node)
	if err != nil {
		return err
	}
	enabled := "Once"
	if dev.Persistent {
		enabled = "Continuous"
	}
	boot := map[string]any{"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": enabled}
	if target == "UefiHttp" {
		boot["BootSourceOverrideMode"] = mode
		boot["HttpBootUri"] = nil
		if dev.HTTPBootURI != "" {
			boot["HttpBootUri"] = dev.HTTPBootURI
		}
	}
	if _, err := cl.do(ctx, "PATCH", path, map[string]any{"Boot": boot}, nil); err != nil {
		return redfishFailure(node, fmt.Sprintf("set boot device to %s (%s)", dev.Device, enabled), err)
	}
	m.core.log.Info("boot device set", "node", node.UUID, "state", target+" "+enabled, "uri", dev.HTTPBootURI)
	if target == "UefiHttp" || sys.Boot.Mode == "" || sys.Boot.Mode == mode {
		return nil
	}
	// GET again: the mode's PATCH carries the ETag of the changed system.
	if cl, path, _, err = m.core.system(ctx, node); err != nil {
		return err
	}
	return m.setMode(ctx, cl, node, path, mode)
}

func (m *RedfishManagement) setMode(ctx context.Context, cl *rfClient, node *provisioner.Node, path, mode string) error {
	body := map[string]any{"Boot": map[string]string{"BootSourceOverrideMode": mode}}
	if _, err := cl.do(ctx, "PATCH", path, body, nil); err != nil {
		return redfishFailure(node, "set boot mode to "+mode, err)
	}
	return nil
}

// GetBootDevice reads the override: Device "" when its target is not one
// Ironic names; Persistent when it is Continuous.
func (m *RedfishManagement) GetBootDevice(ctx context.Context, node *provisioner.Node) (BootDevice, error) {
	_, _, sys, err := m.core.system(ctx, node)
	if err != nil {
		return BootDevice{}, err
	}
	var bd BootDevice
	for _, d := range redfishBootDevices {
		if d.Target == sys.Boot.Target {
			bd.Device = d.Name
		}
	}
	bd.Persistent = sys.Boot.Enabled == "Continuous"
	return bd, nil
}

// GetBootMode reads BootSourceOverrideMode as Ironic's boot mode ("uefi",
// "bios"; "" when the system reports none).
func (m *RedfishManagement) GetBootMode(ctx context.Context, node *provisioner.Node) (string, error) {
	_, _, sys, err := m.core.system(ctx, node)
	if err != nil {
		return "", err
	}
	switch sys.Boot.Mode {
	case "UEFI":
		return BootModeUEFI, nil
	case "Legacy":
		return BootModeBIOS, nil
	}
	return "", nil
}

// SetBootMode PATCHes BootSourceOverrideMode alone ("uefi" or "bios").
func (m *RedfishManagement) SetBootMode(ctx context.Context, node *provisioner.Node, mode string) error {
	if mode != BootModeUEFI && mode != BootModeBIOS {
		return invalidf("Invalid boot mode %s specified.", mode)
	}
	cl, path, _, err := m.core.system(ctx, node)
	if err != nil {
		return err
	}
	return m.setMode(ctx, cl, node, path, redfishBootMode(mode))
}

// InjectNMI sends ResetType Nmi.
func (m *RedfishManagement) InjectNMI(ctx context.Context, node *provisioner.Node) error {
	return m.core.reset(ctx, node, "Nmi")
}
