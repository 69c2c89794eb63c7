package conductor

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// tenantVIFKey is where a port records the VIF attached to it (Ironic's
// network.common.TENANT_VIF_KEY).
const tenantVIFKey = "tenant_vif_port_id"

// VIFs lists the VIFs attached to the node's ports, as Ironic's
// VIFPortIDMixin.vif_list does: one per port whose internal_info names one.
func (c *Conductor) VIFs(ctx context.Context, ident string) ([]string, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, err
	}
	ports, err := c.st.Ports(ctx, store.PortFilter{NodeUUID: n.UUID})
	if err != nil {
		return nil, err
	}
	var vifs []string
	for _, p := range ports {
		if v := portVIF(p); v != "" {
			vifs = append(vifs, v)
		}
	}
	return vifs, nil
}

func portVIF(p *provisioner.Port) string {
	v, _ := p.InternalInfo[tenantVIFKey].(string)
	return v
}

// AttachVIF records vif on one of the node's free ports (portUUID when
// given), under the node's lock, as Ironic's VIFPortIDMixin with the
// noop network does: ports with a physical network first, then
// PXE-enabled ones. A VIF already on one of the node's ports is Ironic's
// VifAlreadyAttached (409); no free port NoFreePhysicalPorts (400).
func (c *Conductor) AttachVIF(ctx context.Context, ident, vif, portUUID string) error {
	n, ports, release, err := c.lockedPorts(ctx, ident)
	if err != nil {
		return err
	}
	defer release()
	for _, p := range ports {
		if portVIF(p) == vif {
			return refuse(KindConflict, "Unable to attach VIF because VIF %s is already attached to Ironic Port %s", vif, p.UUID)
		}
	}
	free := slices.DeleteFunc(slices.Clone(ports), func(p *provisioner.Port) bool {
		return portVIF(p) != "" || (portUUID != "" && p.UUID != portUUID)
	})
	if portUUID != "" && !slices.ContainsFunc(ports, func(p *provisioner.Port) bool { return p.UUID == portUUID }) {
		return refuse(KindInvalid, "Port %s could not be found.", portUUID)
	}
	if len(free) == 0 {
		return refuse(KindInvalid, "Unable to attach VIF %s, not enough free physical ports.", vif)
	}
	slices.SortStableFunc(free, func(a, b *provisioner.Port) int {
		if c := cmp.Compare(boolRank(b.PhysicalNetwork != ""), boolRank(a.PhysicalNetwork != "")); c != 0 {
			return c
		}
		return cmp.Compare(boolRank(b.PXEEnabled), boolRank(a.PXEEnabled))
	})
	p := free[0]
	p.InternalInfo = maps.Clone(p.InternalInfo)
	if p.InternalInfo == nil {
		p.InternalInfo = map[string]any{}
	}
	p.InternalInfo[tenantVIFKey] = vif
	p.UpdatedAt = c.now()
	if err := c.st.UpdatePort(ctx, p); err != nil {
		return err
	}
	c.log.Info("VIF attached", "node", n.UUID, "vif", vif, "port", p.UUID)
	return nil
}

// lockedPorts takes the node's lock and lists its ports; release drops
// the lock.
func (c *Conductor) lockedPorts(ctx context.Context, ident string) (*provisioner.Node, []*provisioner.Port, func(), error) {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return nil, nil, nil, err
	}
	release := func() { c.release(ctx, n.UUID) }
	ports, err := c.st.Ports(ctx, store.PortFilter{NodeUUID: n.UUID})
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	return n, ports, release, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DetachVIF removes vif from the node's port holding it; a VIF on none is
// Ironic's VifNotAttached (400).
func (c *Conductor) DetachVIF(ctx context.Context, ident, vif string) error {
	n, ports, release, err := c.lockedPorts(ctx, ident)
	if err != nil {
		return err
	}
	defer release()
	for _, p := range ports {
		if portVIF(p) != vif {
			continue
		}
		p.InternalInfo = maps.Clone(p.InternalInfo)
		delete(p.InternalInfo, tenantVIFKey)
		p.UpdatedAt = c.now()
		if err := c.st.UpdatePort(ctx, p); err != nil {
			return err
		}
		c.log.Info("VIF detached", "node", n.UUID, "vif", vif, "port", p.UUID)
		return nil
	}
	return refuse(KindInvalid, "Unable to detach VIF %s from node %s because it is not attached to it.", vif, n.UUID)
}

// BootModeSetter is a management interface that can read and change the
// machine's boot mode (Ironic's management get_boot_mode/set_boot_mode;
// the redfish interface has them, ipmitool does not).
type BootModeSetter interface {
	GetBootMode(ctx context.Context, node *provisioner.Node) (string, error)
	SetBootMode(ctx context.Context, node *provisioner.Node, mode string) error
}

var _ BootModeSetter = (*drivers.RedfishManagement)(nil)

// unstable are Ironic's UNSTABLE_STATES: a node in one is changing by
// itself, and a boot mode change would interfere.
var unstable = []provisioner.ProvisionState{
	provisioner.StateDeploying, provisioner.StateWaitCallback, provisioner.StateCleaning,
	provisioner.StateCleanWait, provisioner.StateVerifying, provisioner.StateDeleting,
	provisioner.StateInspecting, provisioner.StateInspectWait,
}

// SetBootMode changes the node's boot mode ("bios" or "uefi") through its
// management interface, asynchronously as Ironic's change_node_boot_mode:
// validated under the lock, then set by a task which records boot_mode,
// or last_error when the BMC refuses. Nothing changes when the machine
// is already in mode.
func (c *Conductor) SetBootMode(ctx context.Context, ident, mode string) error {
	n, err := c.node(ctx, ident)
	if err != nil {
		return err
	}
	if slices.Contains(unstable, n.ProvisionState) {
		return refuse(KindConflict, "Node is in %s state. Since node is transitioning, the boot mode will not be set as this may interfere with ongoing changes and result in erroneous modification. Try again later.", n.ProvisionState)
	}
	if n, err = c.acquire(ctx, ident); err != nil {
		return err
	}
	m, err := c.management(ctx, n)
	if err == nil {
		if _, ok := m.(BootModeSetter); !ok {
			err = refuse(KindInvalid, "Driver %s does not support set_boot_mode (disabled or not implemented).", n.Driver)
		}
	}
	if err != nil {
		c.release(ctx, n.UUID)
		return err
	}
	n.LastError = ""
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.release(ctx, n.UUID)
		return err
	}
	bm := m.(BootModeSetter)
	err = c.spawn(n, "change boot mode", func(ctx context.Context, n *provisioner.Node) {
		if cur, err := bm.GetBootMode(ctx, n); err == nil && cur == mode {
			c.log.Info("boot mode already set", "node", n.UUID, "mode", mode)
			n.BootMode = mode
		} else if err := bm.SetBootMode(ctx, n, mode); err != nil {
			n.LastError = "Failed to change boot mode to '" + mode + ": " + err.Error()
		} else {
			n.BootMode = mode
			c.log.Info("boot mode changed", "node", n.UUID, "mode", mode)
		}
		if err := c.st.UpdateNode(ctx, n); err != nil {
			c.log.Error("save node after boot mode change", "node", n.UUID, "err", err)
		}
	})
	if err != nil {
		c.release(ctx, n.UUID)
	}
	return err
}
