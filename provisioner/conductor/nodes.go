package conductor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// deleteAllowed are the states a node may be deleted in outside
// maintenance (Ironic DELETE_ALLOWED_STATES).
var deleteAllowed = []provisioner.ProvisionState{provisioner.StateAvailable, provisioner.StateManageable,
	provisioner.StateEnroll, "adopt failed"}

// prepare checks n's driver and completes its interfaces.
func (c *Conductor) prepare(n *provisioner.Node) error {
	h, err := c.hardware(n)
	if err != nil {
		return err
	}
	ifaces, err := h.Complete(n.Interfaces)
	if err != nil {
		return &Error{Kind: KindInvalid, Err: err, Msg: errors.Unwrap(err).Error()}
	}
	n.Interfaces = ifaces
	return nil
}

// CreateNode validates the driver and interfaces, fills defaults and
// stores n.
func (c *Conductor) CreateNode(ctx context.Context, n *provisioner.Node) error {
	if n.UUID == "" {
		n.UUID = uuid.NewString()
	}
	if err := c.prepare(n); err != nil {
		return err
	}
	if n.ProvisionState == "" {
		n.ProvisionState = provisioner.StateEnroll
	}
	n.CreatedAt = c.now()
	if err := c.st.CreateNode(ctx, n); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			if n.Name != "" {
				if other, gerr := c.st.Node(ctx, n.Name); gerr == nil && other.Name == n.Name {
					return &Error{Kind: KindConflict, Err: err, Msg: fmt.Sprintf("A node with name %s already exists.", n.Name)}
				}
			}
			return &Error{Kind: KindConflict, Err: err, Msg: fmt.Sprintf("A node with UUID %s already exists.", n.UUID)}
		}
		return err
	}
	c.log.Info("node created", "node", n.UUID, "state", n.ProvisionState)
	c.recordState(n)
	return nil
}

// UpdateNode applies edit to the node under its lock and saves it
// (Ironic's update_node). edit returns an *Error to refuse.
func (c *Conductor) UpdateNode(ctx context.Context, ident string, edit func(n *provisioner.Node) error) (*provisioner.Node, error) {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return nil, err
	}
	defer c.release(ctx, n.UUID)
	before := *n
	if err := edit(n); err != nil {
		return nil, err
	}
	n.UUID, n.Reservation, n.AllocationUUID = before.UUID, before.Reservation, before.AllocationUUID
	if before.AllocationUUID != "" && before.InstanceUUID != "" && n.InstanceUUID == "" {
		if err := checkInstanceRemoval(n); err != nil {
			return nil, err
		}
		c.dropAllocation(ctx, n)
	}
	if n.Driver != before.Driver || n.Interfaces != before.Interfaces {
		if err := c.prepare(n); err != nil {
			return nil, err
		}
	}
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return nil, &Error{Kind: KindConflict, Err: err, Msg: fmt.Sprintf("A node with name %s already exists.", n.Name)}
		}
		return nil, err
	}
	if n.Maintenance != before.Maintenance {
		msg := "Node set into maintenance"
		if !n.Maintenance {
			msg = "Node removed from maintenance"
		}
		c.history(ctx, n, "INFO", "maintenance", msg)
	}
	n.Reservation = ""
	return n, nil
}

// SetMaintenance sets or clears maintenance (clearing also clears fault).
func (c *Conductor) SetMaintenance(ctx context.Context, ident string, on bool, reason string) (*provisioner.Node, error) {
	return c.UpdateNode(ctx, ident, func(n *provisioner.Node) error {
		n.Maintenance = on
		n.MaintenanceReason = ""
		if on {
			n.MaintenanceReason = reason
		} else {
			n.Fault = ""
		}
		return nil
	})
}

// DeleteNode deletes a node in a deletable state (or in maintenance).
func (c *Conductor) DeleteNode(ctx context.Context, ident string) (err error) {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			c.release(ctx, n.UUID)
		}
	}()
	if n.Protected {
		return refuse(KindForbidden, "Node %s is protected and cannot be undeployed, rebuilt or deleted", n.UUID)
	}
	if n.InstanceUUID != "" {
		return refuse(KindConflict, "Node %s is associated with instance %s.", n.UUID, n.InstanceUUID)
	}
	if !n.Maintenance && !slices.Contains(deleteAllowed, n.ProvisionState) {
		return refuse(KindConflict, "Can not delete node \"%s\" while it is in provision state \"%s\". Valid provision states to perform deletion are: \"('available', 'manageable', 'enroll', 'adopt failed')\", or set the node into maintenance mode",
			n.UUID, n.ProvisionState)
	}
	if err = c.st.DeleteNode(ctx, n.UUID); err != nil {
		return err
	}
	c.log.Info("node deleted", "node", n.UUID)
	return nil
}

// InterfaceResult is one row of node validation.
type InterfaceResult struct {
	Interface drivers.Role
	Result    bool
	Reason    string
}

// validateOrder is the order Ironic's validate answer lists interfaces.
var validateOrder = []drivers.Role{drivers.RoleBoot, drivers.RoleDeploy, drivers.RoleManagement,
	drivers.RoleNetwork, drivers.RolePower, drivers.RoleBios, drivers.RoleConsole, drivers.RoleInspect,
	drivers.RoleRaid, drivers.RoleRescue, drivers.RoleStorage}

// Validate checks every interface of the node, as GET .../validate shows.
func (c *Conductor) Validate(ctx context.Context, ident string) ([]InterfaceResult, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, err
	}
	h, err := c.hardware(n)
	if err != nil {
		return nil, err
	}
	var out []InterfaceResult
	var task *drivers.Task // built for the first boot or deploy check
	validateTask := func(v interface {
		Validate(context.Context, *drivers.Task) error
	}) error {
		if task == nil {
			t, err := c.newTask(ctx, h, n)
			if err != nil {
				return err
			}
			task = t
		}
		return v.Validate(ctx, task)
	}
	for _, role := range validateOrder {
		var ierr error
		switch role {
		case drivers.RolePower:
			var p drivers.PowerInterface
			if p, ierr = h.PowerFor(n); ierr == nil {
				ierr = p.Validate(ctx, n)
			}
		case drivers.RoleManagement:
			var m drivers.ManagementInterface
			if m, ierr = h.ManagementFor(n); ierr == nil {
				ierr = m.Validate(ctx, n)
			}
		case drivers.RoleBoot:
			var b drivers.BootInterface
			if b, ierr = h.BootFor(n); ierr == nil {
				ierr = validateTask(b)
			}
		case drivers.RoleDeploy:
			var d drivers.DeployInterface
			if d, ierr = h.DeployFor(n); ierr == nil {
				ierr = validateTask(d)
			}
			if ierr == nil {
				ierr = c.validateDeploySteps(ctx, h, n)
			}
		case drivers.RoleBios:
			b, err := h.BiosFor(n)
			if err != nil {
				out = append(out, placeholderResult(n, role))
				continue
			}
			ierr = b.Validate(ctx, n)
		default:
			out = append(out, placeholderResult(n, role))
			continue
		}
		if ierr != nil {
			out = append(out, InterfaceResult{Interface: role, Reason: cause(ierr, n, role)})
			continue
		}
		out = append(out, InterfaceResult{Interface: role, Result: true})
	}
	return out, nil
}

// placeholderResult validates a role without an implementation here:
// Ironic's no-op and fake interfaces validate, the "no-*" placeholders do
// not.
func placeholderResult(n *provisioner.Node, role drivers.Role) InterfaceResult {
	name := drivers.InterfaceName(n.Interfaces, role)
	if name == "noop" || name == "fake" {
		return InterfaceResult{Interface: role, Result: true}
	}
	return InterfaceResult{Interface: role, Reason: unsupported(n.Driver, role)}
}

// validateDeploySteps is the deploy interface's part of validate that
// checks instance traits and the deploy templates they name, with the
// message Ironic's validate shows (no "Failed to validate …" prefix).
func (c *Conductor) validateDeploySteps(ctx context.Context, h *drivers.HardwareType, n *provisioner.Node) error {
	_, err := c.planDeploySteps(ctx, h, n, nil)
	if e := (*Error)(nil); errors.As(err, &e) && e.Err != nil {
		return e.Err
	}
	return err
}

// management returns the node's validated management interface.
func (c *Conductor) management(ctx context.Context, n *provisioner.Node) (drivers.ManagementInterface, error) {
	h, err := c.hardware(n)
	if err != nil {
		return nil, err
	}
	m, err := h.ManagementFor(n)
	if err == nil {
		err = m.Validate(ctx, n)
	}
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleManagement)}
	}
	return m, nil
}

// driverFailure wraps a BMC error (Ironic answers these with 500).
func driverFailure(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	msg := strings.TrimSuffix(err.Error(), ": "+drivers.ErrInvalidParameter.Error())
	if errors.Is(err, drivers.ErrInvalidParameter) || errors.Is(err, drivers.ErrUnsupported) {
		return &Error{Kind: KindInvalid, Err: err, Msg: msg}
	}
	return &Error{Kind: KindDriver, Err: err, Msg: msg}
}

// BootDevice reads the boot device through the BMC.
func (c *Conductor) BootDevice(ctx context.Context, ident string) (drivers.BootDevice, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return drivers.BootDevice{}, err
	}
	m, err := c.management(ctx, n)
	if err != nil {
		return drivers.BootDevice{}, err
	}
	dev, err := m.GetBootDevice(ctx, n)
	if err != nil {
		return dev, driverFailure(err)
	}
	return dev, nil
}

// SupportedBootDevices lists the boot devices the management interface offers.
func (c *Conductor) SupportedBootDevices(ctx context.Context, ident string) ([]string, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, err
	}
	m, err := c.management(ctx, n)
	if err != nil {
		return nil, err
	}
	devs, err := m.SupportedBootDevices(ctx, n)
	if err != nil {
		return nil, driverFailure(err)
	}
	return devs, nil
}

// SetBootDevice sets the boot device through the BMC, synchronously and
// under the node's lock, as Ironic does.
func (c *Conductor) SetBootDevice(ctx context.Context, ident string, dev drivers.BootDevice) error {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return err
	}
	defer c.release(ctx, n.UUID)
	m, err := c.management(ctx, n)
	if err != nil {
		return err
	}
	devs, err := m.SupportedBootDevices(ctx, n)
	if err != nil {
		return driverFailure(err)
	}
	if !slices.Contains(devs, dev.Device) {
		return refuse(KindInvalid, "Invalid boot device %s specified.", dev.Device)
	}
	if err := m.SetBootDevice(ctx, n, dev); err != nil {
		return driverFailure(err)
	}
	c.log.Info("boot device set", "node", n.UUID, "device", dev.Device, "persistent", dev.Persistent)
	return nil
}

// InjectNMI sends the node's machine a non-maskable interrupt through its
// management interface, as Ironic's inject_nmi; a management interface
// without one answers Ironic's UnsupportedDriverExtension.
func (c *Conductor) InjectNMI(ctx context.Context, ident string) error {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return err
	}
	defer c.release(ctx, n.UUID)
	m, err := c.management(ctx, n)
	if err != nil {
		return err
	}
	nmi, ok := m.(drivers.NMIInjector)
	if !ok {
		return refuse(KindInvalid, "%s", unsupported(n.Driver, "inject nmi"))
	}
	if err := nmi.InjectNMI(ctx, n); err != nil {
		return driverFailure(err)
	}
	c.log.Info("NMI injected", "node", n.UUID)
	return nil
}

// VendorMethods lists the node's vendor passthru methods.
func (c *Conductor) VendorMethods(ctx context.Context, ident string) ([]drivers.VendorMethod, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, err
	}
	h, err := c.hardware(n)
	if err != nil {
		return nil, err
	}
	var methods []drivers.VendorMethod
	if cb := callbacks(h, n); cb != nil {
		methods = append(methods, cb.CallbackMethods()...)
	}
	v, err := h.VendorFor(n)
	if err != nil {
		if methods != nil {
			return sortMethods(methods), nil
		}
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: unsupported(n.Driver, drivers.RoleVendor)}
	}
	return sortMethods(append(methods, v.Methods()...)), nil
}

// VendorPassthru calls a vendor method: validation is synchronous;
// asynchronous methods run as a task under the node's lock (the API
// answers 202), others answer directly.
func (c *Conductor) VendorPassthru(ctx context.Context, ident, method, httpMethod string, args map[string]any) (result any, async bool, err error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, false, err
	}
	h, err := c.hardware(n)
	if err != nil {
		return nil, false, err
	}
	if cb := callbacks(h, n); cb != nil {
		if slices.ContainsFunc(cb.CallbackMethods(), func(m drivers.VendorMethod) bool { return m.Name == method }) {
			return nil, true, c.ramdiskCallback(ctx, n, cb, method, httpMethod, args)
		}
	}
	v, err := h.VendorFor(n)
	if err != nil {
		return nil, false, &Error{Kind: KindInvalid, Err: err, Msg: unsupported(n.Driver, drivers.RoleVendor)}
	}
	i := slices.IndexFunc(v.Methods(), func(m drivers.VendorMethod) bool { return m.Name == method })
	if i < 0 {
		return nil, false, refuse(KindInvalid, "No handler for method %s", method)
	}
	m := v.Methods()[i]
	if !slices.Contains(m.HTTPMethods, httpMethod) {
		return nil, false, refuse(KindInvalid, "The method %s does not support HTTP %s", method, httpMethod)
	}
	if err := v.Validate(ctx, n, method, args); err != nil {
		return nil, false, &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleVendor)}
	}
	if !m.Async {
		res, err := v.Call(ctx, n, method, httpMethod, args)
		if err != nil {
			return nil, false, driverFailure(err)
		}
		return res, false, nil
	}
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return nil, true, err
	}
	err = c.spawn(n, "vendor "+method, func(ctx context.Context, n *provisioner.Node) {
		if _, err := v.Call(ctx, n, method, httpMethod, args); err != nil && ctx.Err() == nil {
			n.LastError = fmt.Sprintf("Vendor passthru %s failed: %s", method, err)
			n.UpdatedAt = c.now()
			if serr := c.st.UpdateNode(ctx, n); serr != nil {
				c.log.Error("save node", "node", n.UUID, "err", serr)
			}
			c.history(ctx, n, "ERROR", "vendor", n.LastError)
		}
	})
	if err != nil {
		c.release(ctx, n.UUID)
	}
	return nil, true, err
}
