package drivers

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/metalbed/metalbed/provisioner"
)

// Role is one of Ironic's twelve driver interface roles.
type Role string

// Roles, spelled as in Ironic's "<role>_interface" node fields.
const (
	RoleBios       Role = "bios"
	RoleBoot       Role = "boot"
	RoleConsole    Role = "console"
	RoleDeploy     Role = "deploy"
	RoleInspect    Role = "inspect"
	RoleManagement Role = "management"
	RoleNetwork    Role = "network"
	RolePower      Role = "power"
	RoleRaid       Role = "raid"
	RoleRescue     Role = "rescue"
	RoleStorage    Role = "storage"
	RoleVendor     Role = "vendor"
)

// Roles lists every role in the order Ironic's API documents them.
func Roles() []Role {
	return []Role{RoleBios, RoleBoot, RoleConsole, RoleDeploy, RoleInspect, RoleManagement,
		RoleNetwork, RolePower, RoleRaid, RoleRescue, RoleStorage, RoleVendor}
}

// InterfaceName returns the interface chosen for role in ifaces.
func InterfaceName(ifaces provisioner.Interfaces, role Role) string {
	if f := interfaceField(&ifaces, role); f != nil {
		return *f
	}
	return ""
}

// SetInterfaceName sets the interface chosen for role in ifaces.
func SetInterfaceName(ifaces *provisioner.Interfaces, role Role, name string) {
	if f := interfaceField(ifaces, role); f != nil {
		*f = name
	}
}

// interfaceField is the field of ifaces that holds role's interface; nil
// for an unknown role.
func interfaceField(ifaces *provisioner.Interfaces, role Role) *string {
	switch role {
	case RoleBios:
		return &ifaces.Bios
	case RoleBoot:
		return &ifaces.Boot
	case RoleConsole:
		return &ifaces.Console
	case RoleDeploy:
		return &ifaces.Deploy
	case RoleInspect:
		return &ifaces.Inspect
	case RoleManagement:
		return &ifaces.Management
	case RoleNetwork:
		return &ifaces.Network
	case RolePower:
		return &ifaces.Power
	case RoleRaid:
		return &ifaces.Raid
	case RoleRescue:
		return &ifaces.Rescue
	case RoleStorage:
		return &ifaces.Storage
	case RoleVendor:
		return &ifaces.Vendor
	}
	return nil
}

// ErrUnsupported is returned (wrapped) when a hardware type has no
// implementation for a role or interface name.
var ErrUnsupported = errors.New("not supported")

// unsupportedError carries Ironic's message and matches ErrUnsupported.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string        { return e.msg }
func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupported }

// unsupportedf returns an error whose text, and whose unwrapped text, is
// the message; errors.Is(err, ErrUnsupported) holds.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w", &unsupportedError{msg: fmt.Sprintf(format, args...)})
}

// HardwareType composes, per role, the interface implementations a driver
// (Ironic's "hardware type") offers. It is built once by a constructor
// (NewIPMI, NewFakeHardware) and read-only afterwards; it is safe for
// concurrent use as long as its implementations are.
type HardwareType struct {
	// Name is the driver name: "ipmi", "fake-hardware".
	Name string
	// Enabled lists per role the interface names nodes of this type may
	// use; the first is the default (default_<role>_interface). Roles
	// without an implementation here still list Ironic's placeholder names
	// ("no-bios", "noop", …) so the API shows what Ironic shows.
	Enabled map[Role][]string

	Power      map[string]PowerInterface
	Management map[string]ManagementInterface
	Boot       map[string]BootInterface
	Deploy     map[string]DeployInterface
	Inspect    map[string]InspectInterface
	Vendor     map[string]VendorInterface
	Console    map[string]ConsoleInterface
	Bios       map[string]BiosInterface
}

// Defaults returns the default interface for every role.
func (h *HardwareType) Defaults() provisioner.Interfaces {
	var ifaces provisioner.Interfaces
	for _, r := range Roles() {
		if names := h.Enabled[r]; len(names) > 0 {
			SetInterfaceName(&ifaces, r, names[0])
		}
	}
	return ifaces
}

// Complete fills every empty role of ifaces with its default and checks
// each chosen name is enabled, with Ironic's message otherwise.
func (h *HardwareType) Complete(ifaces provisioner.Interfaces) (provisioner.Interfaces, error) {
	for _, r := range Roles() {
		name := InterfaceName(ifaces, r)
		enabled := h.Enabled[r]
		if name == "" {
			if len(enabled) > 0 {
				SetInterfaceName(&ifaces, r, enabled[0])
			}
			continue
		}
		if !slices.Contains(enabled, name) {
			return ifaces, unsupportedf("%s interface implementation '%s' is not supported by hardware type %s.", r, name, h.Name)
		}
	}
	return ifaces, nil
}

func pick[T any](h *HardwareType, role Role, impls map[string]T, name string) (T, error) {
	var zero T
	if name == "" {
		if names := h.Enabled[role]; len(names) > 0 {
			name = names[0]
		}
	}
	impl, ok := impls[name]
	if !ok {
		return zero, unsupportedf("Driver %s does not support %s (disabled or not implemented).", h.Name, role)
	}
	return impl, nil
}

// PowerFor returns the power interface node uses.
func (h *HardwareType) PowerFor(node *provisioner.Node) (PowerInterface, error) {
	return pick(h, RolePower, h.Power, node.Interfaces.Power)
}

// ManagementFor returns the management interface node uses.
func (h *HardwareType) ManagementFor(node *provisioner.Node) (ManagementInterface, error) {
	return pick(h, RoleManagement, h.Management, node.Interfaces.Management)
}

// BootFor returns the boot interface node uses.
func (h *HardwareType) BootFor(node *provisioner.Node) (BootInterface, error) {
	return pick(h, RoleBoot, h.Boot, node.Interfaces.Boot)
}

// DeployFor returns the deploy interface node uses.
func (h *HardwareType) DeployFor(node *provisioner.Node) (DeployInterface, error) {
	return pick(h, RoleDeploy, h.Deploy, node.Interfaces.Deploy)
}

// ConsoleFor returns the console interface node uses.
func (h *HardwareType) ConsoleFor(node *provisioner.Node) (ConsoleInterface, error) {
	return pick(h, RoleConsole, h.Console, node.Interfaces.Console)
}

// BiosFor returns the bios interface node uses.
func (h *HardwareType) BiosFor(node *provisioner.Node) (BiosInterface, error) {
	return pick(h, RoleBios, h.Bios, node.Interfaces.Bios)
}

// VendorFor returns the vendor interface node uses.
func (h *HardwareType) VendorFor(node *provisioner.Node) (VendorInterface, error) {
	return pick(h, RoleVendor, h.Vendor, node.Interfaces.Vendor)
}

// NewTask resolves node's power, management and boot interfaces into a
// Task with its ports: what the conductor hands the boot and deploy
// interfaces.
func (h *HardwareType) NewTask(node *provisioner.Node, ports []provisioner.Port) (*Task, error) {
	t := &Task{Node: node, Ports: ports}
	var err error
	if t.Power, err = h.PowerFor(node); err != nil {
		return nil, err
	}
	if t.Management, err = h.ManagementFor(node); err != nil {
		return nil, err
	}
	if t.Boot, err = h.BootFor(node); err != nil {
		return nil, err
	}
	return t, nil
}

// Registry holds the enabled hardware types by name. It is built once with
// NewRegistry and never changes afterwards.
type Registry struct {
	byName map[string]*HardwareType
	names  []string
}

// NewRegistry checks and indexes hardware types: names must be unique and
// non-empty, and every role must list at least one interface.
func NewRegistry(types ...*HardwareType) (*Registry, error) {
	r := &Registry{byName: make(map[string]*HardwareType, len(types))}
	for _, h := range types {
		if h == nil || h.Name == "" {
			return nil, errors.New("hardware type without a name")
		}
		if _, dup := r.byName[h.Name]; dup {
			return nil, fmt.Errorf("hardware type %q registered twice", h.Name)
		}
		for _, role := range Roles() {
			if len(h.Enabled[role]) == 0 {
				return nil, fmt.Errorf("hardware type %q enables no %s interface", h.Name, role)
			}
		}
		r.byName[h.Name] = h
		r.names = append(r.names, h.Name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Names returns the hardware type names, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Get returns the hardware type called name.
func (r *Registry) Get(name string) (*HardwareType, error) {
	h, ok := r.byName[name]
	if !ok {
		return nil, unsupportedf("Could not find the following driver(s) or hardware type(s): %s.", name)
	}
	return h, nil
}

// PyList renders names as Python prints a list of strings (['a', 'b']),
// the way Ironic's messages quote missing or valid parameters.
func PyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// NewDefaultRegistry is the registry metalbed's conductor uses: "ipmi"
// configured by ipmi, "redfish" configured by redfish, and "fake-hardware".
func NewDefaultRegistry(ipmi IPMIConfig, redfish RedfishConfig) (*Registry, error) {
	ih, err := NewIPMI(ipmi)
	if err != nil {
		return nil, err
	}
	rh, err := NewRedfish(redfish)
	if err != nil {
		return nil, err
	}
	return NewRegistry(ih, rh, NewFakeHardware())
}
