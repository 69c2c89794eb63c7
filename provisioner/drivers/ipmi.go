package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/metalbed/metalbed/provisioner"
)

// IPMI client implementations behind the "ipmitool" power and management
// interfaces (IPMIConfig.Client).
const (
	// ClientIPMITool shells out to ipmitool exactly as Ironic's ipmitool
	// driver does.
	ClientIPMITool = "ipmitool"
	// ClientNative talks RMCP+ in process through go-ipmi.
	ClientNative = "native"
)

// IPMIConfig configures the "ipmi" hardware type. The zero value gives
// Ironic's defaults.
type IPMIConfig struct {
	// Client selects the implementation behind the "ipmitool" power and
	// management interfaces: ClientIPMITool (default) or ClientNative. Both
	// are named "ipmitool" in the API so node JSON reads as Ironic's.
	Client string
	// IPMITool is the ipmitool binary; default "ipmitool" looked up in PATH.
	IPMITool string
	// TempDir holds the 0600 password files handed to ipmitool -f; default
	// os.TempDir() (Ironic's [DEFAULT]tempdir).
	TempDir string
	// PowerTimeout bounds waiting for the BMC to report the target power
	// state after power on/off; default 60 s ([conductor]power_state_change_timeout).
	PowerTimeout time.Duration
	// SoftPowerOffTimeout bounds waiting after "power soft"; default 600 s
	// ([conductor]soft_power_off_timeout).
	SoftPowerOffTimeout time.Duration
	// PollInterval is the pause between power status polls; default 1 s.
	PollInterval time.Duration
	// MinCommandInterval is the least time between two commands to one BMC
	// address, also the pause before a retry; default 5 s
	// ([ipmi]min_command_interval).
	MinCommandInterval time.Duration
	// CommandRetryTimeout bounds retrying one failed command (every error is
	// retried, as Ironic does with use_ipmitool_retries=False); default 60 s
	// ([ipmi]command_retry_timeout). One ipmitool run is killed after it.
	CommandRetryTimeout time.Duration
	// CipherSuiteVersions is Ironic's [ipmi]cipher_suite_versions for the
	// ipmitool client: when non-empty and a node has no ipmi_cipher_suite,
	// a cipher suite error moves -C down this list, starting at its last
	// element. Default empty (no -C). The native client always offers 17
	// then 3 unless ipmi_cipher_suite is set.
	CipherSuiteVersions []int
	// DefaultBootMode applies when nothing on the node chooses one; default
	// "uefi" ([deploy]default_boot_mode of Ironic since Yoga, and what the
	// reference captures show).
	DefaultBootMode string
	// Boot and Deploy are the boot and deploy interfaces by name; the
	// defaults "pxe" and "direct" are listed as enabled even when absent so
	// the API shows Ironic's shape, and then report "not implemented".
	Boot   map[string]BootInterface
	Deploy map[string]DeployInterface
	// ConsoleAddr is where the ipmitool-socat console interface listens
	// (Ironic's [console]socat_address); default "127.0.0.1".
	ConsoleAddr string
	// Inspect are the inspect interfaces by name ("agent"), enabled beside
	// the default "no-inspect", as Ironic 21.4's defaults have it.
	Inspect map[string]InspectInterface
	Logger  *slog.Logger // nil => discard
}

func (c *IPMIConfig) applyDefaults() error {
	switch c.Client {
	case "":
		c.Client = ClientIPMITool
	case ClientIPMITool, ClientNative:
	default:
		return fmt.Errorf("ipmi client %q: want %q or %q", c.Client, ClientIPMITool, ClientNative)
	}
	if c.IPMITool == "" {
		c.IPMITool = "ipmitool"
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.PowerTimeout, 60*time.Second)
	setDur(&c.SoftPowerOffTimeout, 600*time.Second)
	setDur(&c.PollInterval, time.Second)
	setDur(&c.MinCommandInterval, 5*time.Second)
	setDur(&c.CommandRetryTimeout, 60*time.Second)
	switch c.DefaultBootMode {
	case "":
		c.DefaultBootMode = BootModeUEFI
	case BootModeUEFI, BootModeBIOS:
	default:
		return fmt.Errorf("default boot mode %q: want %q or %q", c.DefaultBootMode, BootModeUEFI, BootModeBIOS)
	}
	for _, cs := range c.CipherSuiteVersions {
		if cs < 0 || cs > 255 {
			return fmt.Errorf("cipher suite %d out of range", cs)
		}
	}
	if c.ConsoleAddr == "" {
		c.ConsoleAddr = "127.0.0.1"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Boot modes as Ironic spells them.
const (
	BootModeUEFI = "uefi"
	BootModeBIOS = "bios"
)

// NewIPMI builds the "ipmi" hardware type with interfaces named as Ironic
// 21.4 names them: power and management "ipmitool", vendor "ipmitool"
// (send_raw, bmc_reset), boot "pxe", deploy "direct". It does no I/O.
func NewIPMI(cfg IPMIConfig) (*HardwareType, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, fmt.Errorf("ipmi hardware type: %w", err)
	}
	var bmc bmcClient
	switch cfg.Client {
	case ClientNative:
		bmc = &nativeClient{}
	default:
		bmc = &ipmitoolClient{tool: cfg.IPMITool, tempDir: cfg.TempDir, cipherSuites: cfg.CipherSuiteVersions}
	}
	core := &ipmiCore{cfg: cfg, bmc: bmc, log: cfg.Logger, last: map[string]time.Time{}}
	boot, bootNames := namedDefault(cfg.Boot, "pxe")
	deploy, deployNames := namedDefault(cfg.Deploy, "direct")
	inspect, inspectNames := namedDefault(cfg.Inspect, "no-inspect")
	return &HardwareType{
		Name: "ipmi",
		Enabled: map[Role][]string{
			RoleBios:       {"no-bios"},
			RoleBoot:       bootNames,
			RoleConsole:    {"no-console", "ipmitool-socat"},
			RoleDeploy:     deployNames,
			RoleInspect:    inspectNames,
			RoleManagement: {"ipmitool"},
			RoleNetwork:    {"noop"},
			RolePower:      {"ipmitool"},
			RoleRaid:       {"no-raid"},
			RoleRescue:     {"no-rescue"},
			RoleStorage:    {"noop"},
			RoleVendor:     {"ipmitool", "no-vendor"},
		},
		Power:      map[string]PowerInterface{"ipmitool": &IPMIPower{core: core}},
		Management: map[string]ManagementInterface{"ipmitool": &IPMIManagement{core: core}},
		Boot:       boot,
		Deploy:     deploy,
		Inspect:    inspect,
		Vendor:     map[string]VendorInterface{"ipmitool": &IPMIVendor{core: core}},
		Console:    map[string]ConsoleInterface{"ipmitool-socat": &IPMIConsole{core: core}},
	}, nil
}

// namedDefault returns impls (copied) and its names with def first.
func namedDefault[T any](impls map[string]T, def string) (map[string]T, []string) {
	out := make(map[string]T, len(impls))
	names := []string{def}
	for name, impl := range impls {
		out[name] = impl
		if name != def {
			names = append(names, name)
		}
	}
	slices.Sort(names[1:])
	return out, names
}

// ipmiInfo is driver_info parsed and checked, as Ironic's _parse_driver_info.
type ipmiInfo struct {
	Address     string
	Port        int // 0 => not given (ipmitool's and the BMC's default 623)
	Username    string
	Password    string
	PrivLevel   string
	CipherSuite int    // -1 => not given
	KgKey       string // ipmi_hex_kg_key, hex
	NodeUUID    string
}

// Priv levels ipmitool accepts for -L, as Ironic validates them.
var validPrivLevels = []string{"ADMINISTRATOR", "CALLBACK", "OPERATOR", "USER"}

// ErrInvalidParameter marks validation errors (Ironic's
// MissingParameterValue / InvalidParameterValue, HTTP 400); test with
// errors.Is.
var ErrInvalidParameter = errors.New("invalid parameter")

// ParameterError is a validation error whose text is Ironic's message,
// ready for the API's error body.
type ParameterError struct{ Msg string }

func (e *ParameterError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrInvalidParameter) hold.
func (e *ParameterError) Is(target error) bool { return target == ErrInvalidParameter }

func invalidf(format string, args ...any) error {
	return &ParameterError{Msg: fmt.Sprintf(format, args...)}
}

// parseIPMIInfo validates node.DriverInfo with Ironic's messages.
func parseIPMIInfo(node *provisioner.Node) (ipmiInfo, error) {
	info := node.DriverInfo
	addr, _ := info["ipmi_address"].(string)
	if !truthy(info["ipmi_address"]) {
		return ipmiInfo{}, invalidf("Missing the following IPMI credentials in node's driver_info: ['ipmi_address'].")
	}
	if addr == "" {
		return ipmiInfo{}, invalidf("Invalid ipmi_address %v, expected a string", info["ipmi_address"])
	}
	out := ipmiInfo{Address: addr, CipherSuite: -1, NodeUUID: node.UUID, PrivLevel: "ADMINISTRATOR"}
	out.Username = stringValue(info["ipmi_username"])
	out.Password = stringValue(info["ipmi_password"])

	proto := "2.0"
	if v, ok := info["ipmi_protocol_version"]; ok && v != nil {
		proto = stringValue(v)
	}
	if proto != "2.0" && proto != "1.5" {
		return ipmiInfo{}, invalidf("Invalid IPMI protocol version value %s, the valid value can be one of 2.0, 1.5", proto)
	}
	if proto == "1.5" {
		// metalbed's clients speak lanplus only; say so rather than pretend.
		return ipmiInfo{}, invalidf("IPMI protocol version 1.5 is not supported by metalbed, use 2.0")
	}
	if v, ok := info["ipmi_port"]; ok && v != nil {
		p, err := networkPort(v)
		if err != nil {
			return ipmiInfo{}, invalidf("ipmi_port \"%v\" is not a valid port.", v)
		}
		out.Port = p
	}
	if v, ok := info["ipmi_priv_level"]; ok && v != nil {
		out.PrivLevel = stringValue(v)
		valid := false
		for _, l := range validPrivLevels {
			valid = valid || l == out.PrivLevel
		}
		if !valid {
			return ipmiInfo{}, invalidf("Invalid privilege level value:%s, the valid value can be one of %s",
				out.PrivLevel, strings.Join(validPrivLevels, ", "))
		}
	}
	if v := stringValue(info["ipmi_bridging"]); v != "" && v != "no" {
		if v != "single" && v != "dual" {
			return ipmiInfo{}, invalidf("Invalid value for ipmi_bridging: %s, the valid value can be one of: ['single', 'dual', 'no']", v)
		}
		return ipmiInfo{}, invalidf("ipmi_bridging %s is not supported by metalbed", v)
	}
	if boolValue(info["ipmi_force_boot_device"], false) {
		return ipmiInfo{}, invalidf("ipmi_force_boot_device is not supported by metalbed")
	}
	if v, ok := info["ipmi_hex_kg_key"]; ok && v != nil {
		out.KgKey = stringValue(v)
		if len(out.KgKey)%2 != 0 {
			return ipmiInfo{}, invalidf("Number of ipmi_hex_kg_key characters is not even")
		}
	}
	if v, ok := info["ipmi_cipher_suite"]; ok && v != nil {
		cs, err := intValue(v)
		if err != nil {
			return ipmiInfo{}, invalidf("Invalid cipher suite %v, expected a number", v)
		}
		if cs < 0 || cs > 255 {
			return ipmiInfo{}, invalidf("Invalid cipher suite %v, expected a number between 0 and 255", v)
		}
		out.CipherSuite = cs
	}
	return out, nil
}

// target is the address:port for logs and the per-BMC command throttle.
func (i ipmiInfo) target() string {
	port := i.Port
	if port == 0 {
		port = 623
	}
	return net.JoinHostPort(i.Address, strconv.Itoa(port))
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case bool:
		return x
	case float64:
		return x != 0
	case int:
		return x != 0
	}
	return true
}

// stringValue renders a JSON value as Python's str() would for the
// scalars driver_info holds.
func stringValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case bool:
		if x {
			return "True"
		}
		return "False"
	}
	return fmt.Sprint(v)
}

func intValue(v any) (int, error) {
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
			return 0, fmt.Errorf("not an integer: %v", x)
		}
		return int(x), nil
	case int:
		return x, nil
	case string:
		return strconv.Atoi(strings.TrimSpace(x))
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

func networkPort(v any) (int, error) {
	p, err := intValue(v)
	if err != nil {
		return 0, err
	}
	if p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %d out of range", p)
	}
	return p, nil
}

func boolValue(v any, def bool) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "1", "t", "true", "on", "y", "yes":
			return true
		case "0", "f", "false", "off", "n", "no":
			return false
		}
	case float64:
		return x != 0
	}
	return def
}

// Boot devices as Ironic names them, and their parameter-5 selector.
var bootDeviceCodes = []struct {
	Name string
	Code byte
}{
	{"pxe", 0x04},
	{"disk", 0x08},
	{"cdrom", 0x14},
	{"bios", 0x18},
	{"safe", 0x0c},
}

func bootDeviceCode(dev string) (byte, bool) {
	for _, d := range bootDeviceCodes {
		if d.Name == dev {
			return d.Code, true
		}
	}
	return 0, false
}

// bmcClient is one way of talking IPMI to a BMC: ipmitool or go-ipmi. One
// call is one BMC operation; retries and pacing are the caller's.
type bmcClient interface {
	// powerStatus returns PowerOn, PowerOff, or PowerError when the BMC
	// answered something else.
	powerStatus(ctx context.Context, info ipmiInfo, timeout time.Duration) (provisioner.PowerState, error)
	// power sends Chassis Control: "on", "off" or "soft".
	power(ctx context.Context, info ipmiInfo, action string, timeout time.Duration) error
	// raw sends netfn/cmd/data and returns the response data.
	raw(ctx context.Context, info ipmiInfo, netfn, cmd byte, data []byte, timeout time.Duration) ([]byte, error)
	// chassisBootdev sets a BIOS boot device as "ipmitool chassis bootdev"
	// does (set in progress, ack, flags, commit, complete).
	chassisBootdev(ctx context.Context, info ipmiInfo, dev string, persistent bool, timeout time.Duration) error
	// bootDevice reads parameter 5 (as "chassis bootparam get 5").
	bootDevice(ctx context.Context, info ipmiInfo, timeout time.Duration) (BootDevice, error)
	// bmcReset resets the BMC (Cold Reset 0x06/0x02, Warm Reset 0x06/0x03).
	bmcReset(ctx context.Context, info ipmiInfo, warm bool, timeout time.Duration) error
	// sol bridges the BMC's Serial-over-LAN console and rw until either
	// ends or ctx ends.
	sol(ctx context.Context, info ipmiInfo, rw io.ReadWriter) error
}

// ipmiCore is what the ipmi power, management and vendor interfaces share:
// the client, pacing per BMC and retries.
type ipmiCore struct {
	cfg IPMIConfig
	bmc bmcClient
	log *slog.Logger

	mu   sync.Mutex
	last map[string]time.Time // BMC target -> end of the last command
}

// do runs op with Ironic's pacing and retries: at least MinCommandInterval
// between commands to one BMC, every failure retried until
// CommandRetryTimeout or CommandRetryTimeout/MinCommandInterval tries.
func (c *ipmiCore) do(ctx context.Context, info ipmiInfo, what string, op func(ctx context.Context, timeout time.Duration) error) error {
	timeout := c.cfg.CommandRetryTimeout
	end := time.Now().Add(timeout)
	tries := max(int(timeout/c.cfg.MinCommandInterval), 1)
	for {
		tries--
		if err := c.pace(ctx, info.target()); err != nil {
			return err
		}
		err := op(ctx, timeout)
		c.mu.Lock()
		c.last[info.target()] = time.Now()
		c.mu.Unlock()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || tries <= 0 || time.Now().After(end) || errors.Is(err, errPermanent) {
			return fmt.Errorf("IPMI %s on %s: %w", what, info.target(), err)
		}
		c.log.Warn("IPMI error, retrying", "node", info.NodeUUID, "event", what, "err", err)
	}
}

// errPermanent marks errors a retry cannot fix (bad arguments, missing tool).
var errPermanent = errors.New("permanent")

func (c *ipmiCore) pace(ctx context.Context, target string) error {
	c.mu.Lock()
	wait := time.Until(c.last[target].Add(c.cfg.MinCommandInterval))
	c.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *ipmiCore) powerStatus(ctx context.Context, info ipmiInfo) (provisioner.PowerState, error) {
	var st provisioner.PowerState
	err := c.do(ctx, info, "power status", func(ctx context.Context, timeout time.Duration) error {
		var err error
		st, err = c.bmc.powerStatus(ctx, info, timeout)
		return err
	})
	return st, err
}

// setAndWait sends a power action and polls until the BMC reports target,
// as Ironic's _set_and_wait and node_wait_for_power_state.
func (c *ipmiCore) setAndWait(ctx context.Context, info ipmiInfo, action string, target provisioner.PowerState, timeout time.Duration) error {
	if err := c.do(ctx, info, "power "+action, func(ctx context.Context, t time.Duration) error {
		return c.bmc.power(ctx, info, action, t)
	}); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last provisioner.PowerState
	for {
		st, err := c.powerStatus(ctx, info)
		if err == nil && st == target {
			c.log.Info("power state reached", "node", info.NodeUUID, "state", string(st))
			return nil
		}
		if err == nil {
			last = st
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, target, err)
			}
			return fmt.Errorf("timed out after %s waiting for %s, the BMC reports %q", timeout, target, last)
		}
		t := time.NewTimer(c.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// info parses driver_info and checks the configured client can use it.
func (c *ipmiCore) info(node *provisioner.Node) (ipmiInfo, error) {
	info, err := parseIPMIInfo(node)
	if err != nil {
		return ipmiInfo{}, err
	}
	if info.KgKey != "" && c.cfg.Client == ClientNative {
		return ipmiInfo{}, invalidf("ipmi_hex_kg_key is not supported by metalbed's native IPMI client; use the ipmitool client")
	}
	return info, nil
}

// ipmiProperties documents the driver_info keys the ipmi interfaces read,
// in Ironic's words (GET /v1/drivers/ipmi/properties). Keys metalbed does
// not honour (bridging, ipmi_force_boot_device) are left out; Validate
// refuses them when set.
func ipmiProperties() map[string]string {
	return map[string]string{
		"ipmi_address":          "IP address or hostname of the node. Required.",
		"ipmi_password":         "password. Optional.",
		"ipmi_hex_kg_key":       "Kg key for IPMIv2 authentication. The key is expected in hexadecimal format. Optional.",
		"ipmi_port":             "remote IPMI RMCP port. Optional.",
		"ipmi_priv_level":       "privilege level; default is ADMINISTRATOR. One of ADMINISTRATOR, CALLBACK, OPERATOR, USER. Optional.",
		"ipmi_username":         "username; default is NULL user. Optional.",
		"ipmi_protocol_version": `the version of the IPMI protocol; default is "2.0". One of "1.5", "2.0". Optional.`,
		"ipmi_disable_boot_timeout": "By default ironic will send a raw IPMI command to disable the 60 second timeout " +
			"for booting. Setting this option to False will NOT send that command on this node. The " +
			"[ipmi]disable_boot_timeout will be used if this option is not set. Optional.",
		"ipmi_cipher_suite": "The number of a cipher suite to use. Only 3 (AES-128 with SHA1) or 17 (AES-128 with SHA256) " +
			"should ever be used; 17 is preferred. The default value depends on the ipmitool version, " +
			"some recent versions have switched from 3 to 17.",
	}
}

// IPMIPower is the "ipmitool" power interface (either client).
type IPMIPower struct{ core *ipmiCore }

// Validate checks driver_info without touching the BMC, as Ironic does.
func (p *IPMIPower) Validate(_ context.Context, node *provisioner.Node) error {
	_, err := p.core.info(node)
	return err
}

// Properties lists the driver_info keys read.
func (p *IPMIPower) Properties() map[string]string { return ipmiProperties() }

// GetPowerState asks the BMC; it returns PowerError when the BMC answers
// neither on nor off.
func (p *IPMIPower) GetPowerState(ctx context.Context, node *provisioner.Node) (provisioner.PowerState, error) {
	info, err := p.core.info(node)
	if err != nil {
		return "", err
	}
	return p.core.powerStatus(ctx, info)
}

// SetPowerState drives the node to power on, power off or soft power off
// and waits until the BMC reports it.
func (p *IPMIPower) SetPowerState(ctx context.Context, node *provisioner.Node, target provisioner.PowerState) error {
	info, err := p.core.info(node)
	if err != nil {
		return err
	}
	cfg := p.core.cfg
	switch target {
	case provisioner.PowerOn:
		return p.core.setAndWait(ctx, info, "on", provisioner.PowerOn, cfg.PowerTimeout)
	case provisioner.PowerOff:
		return p.core.setAndWait(ctx, info, "off", provisioner.PowerOff, cfg.PowerTimeout)
	case provisioner.SoftPowerOff:
		return p.core.setAndWait(ctx, info, "soft", provisioner.PowerOff, cfg.SoftPowerOffTimeout)
	case provisioner.SoftRebooting:
		if err := p.core.setAndWait(ctx, info, "soft", provisioner.PowerOff, cfg.SoftPowerOffTimeout); err != nil {
			return err
		}
		return p.core.setAndWait(ctx, info, "on", provisioner.PowerOn, cfg.PowerTimeout)
	case provisioner.Rebooting:
		return p.Reboot(ctx, node, false)
	}
	return invalidf("set_power_state called with invalid power state %s.", target)
}

// Reboot checks the power state, powers off unless already off (some BMCs
// refuse "power off" when off), then on; soft uses "power soft" to go off.
func (p *IPMIPower) Reboot(ctx context.Context, node *provisioner.Node, soft bool) error {
	info, err := p.core.info(node)
	if err != nil {
		return err
	}
	cfg := p.core.cfg
	if soft {
		if err := p.core.setAndWait(ctx, info, "soft", provisioner.PowerOff, cfg.SoftPowerOffTimeout); err != nil {
			return err
		}
	} else {
		st, err := p.core.powerStatus(ctx, info)
		if err != nil {
			return err
		}
		if st != provisioner.PowerOff {
			if err := p.core.setAndWait(ctx, info, "off", provisioner.PowerOff, cfg.PowerTimeout); err != nil {
				return err
			}
		}
	}
	return p.core.setAndWait(ctx, info, "on", provisioner.PowerOn, cfg.PowerTimeout)
}

// IPMIManagement is the "ipmitool" management interface (either client).
type IPMIManagement struct{ core *ipmiCore }

// Validate checks driver_info.
func (m *IPMIManagement) Validate(_ context.Context, node *provisioner.Node) error {
	_, err := m.core.info(node)
	return err
}

// Properties lists the driver_info keys read.
func (m *IPMIManagement) Properties() map[string]string { return ipmiProperties() }

// SupportedBootDevices lists Ironic's ipmitool devices.
func (m *IPMIManagement) SupportedBootDevices(context.Context, *provisioner.Node) ([]string, error) {
	out := make([]string, len(bootDeviceCodes))
	for i, d := range bootDeviceCodes {
		out[i] = d.Name
	}
	return out, nil
}

// SetBootDevice disables the BMC's 60 s boot flag timeout (raw 0x00 0x08
// 0x03 0x08) unless driver_info ipmi_disable_boot_timeout is false, then
// writes parameter 5: raw with the EFI bit for boot mode uefi, "chassis
// bootdev" for bios.
func (m *IPMIManagement) SetBootDevice(ctx context.Context, node *provisioner.Node, dev BootDevice) error {
	code, ok := bootDeviceCode(dev.Device)
	if !ok {
		return invalidf("Invalid boot device %s specified.", dev.Device)
	}
	info, err := m.core.info(node)
	if err != nil {
		return err
	}
	if boolValue(node.DriverInfo["ipmi_disable_boot_timeout"], true) {
		if err := m.core.do(ctx, info, "raw 0x00 0x08 0x03 0x08", func(ctx context.Context, t time.Duration) error {
			_, err := m.core.bmc.raw(ctx, info, 0x00, 0x08, []byte{0x03, 0x08}, t)
			return err
		}); err != nil {
			return err
		}
	}
	if node.DeployBootMode(m.core.cfg.DefaultBootMode) == BootModeUEFI {
		flags := byte(0xa0) // valid | EFI
		if dev.Persistent {
			flags = 0xe0 // valid | persistent | EFI
		}
		data := []byte{0x05, flags, code, 0x00, 0x00, 0x00}
		return m.core.do(ctx, info, "set boot device", func(ctx context.Context, t time.Duration) error {
			_, err := m.core.bmc.raw(ctx, info, 0x00, 0x08, data, t)
			return err
		})
	}
	return m.core.do(ctx, info, "chassis bootdev "+dev.Device, func(ctx context.Context, t time.Duration) error {
		return m.core.bmc.chassisBootdev(ctx, info, dev.Device, dev.Persistent, t)
	})
}

// InjectNMI sends Chassis Control "pulse diagnostic interrupt" (IPMI v2.0
// table 28-4, data 0x04), what `ipmitool power diag` sends for Ironic.
func (m *IPMIManagement) InjectNMI(ctx context.Context, node *provisioner.Node) error {
	info, err := m.core.info(node)
	if err != nil {
		return err
	}
	return m.core.do(ctx, info, "power diag", func(ctx context.Context, t time.Duration) error {
		_, err := m.core.bmc.raw(ctx, info, 0x00, 0x02, []byte{0x04}, t)
		return err
	})
}

// GetBootDevice reads parameter 5. Device is "" when the BMC reports no
// override or one Ironic does not name.
func (m *IPMIManagement) GetBootDevice(ctx context.Context, node *provisioner.Node) (BootDevice, error) {
	info, err := m.core.info(node)
	if err != nil {
		return BootDevice{}, err
	}
	var bd BootDevice
	err = m.core.do(ctx, info, "chassis bootparam get 5", func(ctx context.Context, t time.Duration) error {
		var err error
		bd, err = m.core.bmc.bootDevice(ctx, info, t)
		return err
	})
	return bd, err
}
