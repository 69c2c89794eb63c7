package conductor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// lookupBMCKey is the driver_internal_info key holding the BMC addresses
// an inspection looks its node up by when no port matches (Ironic's
// inspect_utils.LOOKUP_CACHE_FIELD).
const lookupBMCKey = "lookup_bmc_addresses"

// InspectionData is what a ramdisk posts to /v1/continue_inspection:
// the inventory, and everything else it sent (Ironic's plugin_data).
type InspectionData struct {
	Inventory  map[string]any
	PluginData map[string]any
}

// validateInspect is Ironic's synchronous check in inspect_hardware: the
// power interface, then the inspect interface (no-inspect: not
// supported).
func (c *Conductor) validateInspect(ctx context.Context, h *drivers.HardwareType, n *provisioner.Node) error {
	ins, err := h.InspectFor(n)
	if err != nil {
		return &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleInspect)}
	}
	power, err := h.PowerFor(n)
	if err == nil {
		err = power.Validate(ctx, n)
	}
	if err != nil {
		return &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RolePower)}
	}
	t, err := c.newTask(ctx, h, n)
	if err == nil {
		err = ins.Validate(ctx, t)
	}
	if err != nil {
		return &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleInspect)}
	}
	return nil
}

// inspect is the "inspect" task: forget the previous agent, remember the
// BMC addresses to look the node up by, and start the inspect interface
// ("inspect wait" while the ramdisk collects its inventory).
func (c *Conductor) inspect(ctx context.Context, n *provisioner.Node) {
	failMsg := func(err error) string { return fmt.Sprintf("Failed to inspect hardware. Reason: %s", err) }
	ins, t, err := c.inspectTask(ctx, n)
	if err != nil {
		c.fail(ctx, n, err, failMsg)
		return
	}
	if n.DriverInternalInfo == nil {
		n.DriverInternalInfo = map[string]any{}
	}
	// Ironic's wipe_token_and_url: inspection starts a new agent.
	for _, k := range []string{"agent_url", "agent_secret_token", "agent_lookup_address", "agent_last_heartbeat", "agent_version"} {
		delete(n.DriverInternalInfo, k)
	}
	if addrs := bmcAddresses(n.DriverInfo); len(addrs) > 0 {
		n.DriverInternalInfo[lookupBMCKey] = addrs
	}
	if t, err = c.portsFromBMC(ctx, n, t); err != nil {
		c.fail(ctx, n, err, failMsg)
		return
	}
	step, err := ins.Inspect(ctx, t)
	c.afterStep(ctx, n, step, err, failMsg)
}

// portsFromBMC creates a port for each enabled NIC the node's BMC lists
// that no port has (Ironic's inspect_hardware: management
// get_mac_addresses, then create_ports_if_not_exist) and returns the task
// with them. A management interface that cannot list NICs leaves t as it
// is.
func (c *Conductor) portsFromBMC(ctx context.Context, n *provisioner.Node, t *drivers.Task) (*drivers.Task, error) {
	ma, ok := t.Management.(drivers.MACAddresser)
	if !ok {
		return t, nil
	}
	macs, err := ma.MACAddresses(ctx, n)
	if err != nil {
		return nil, err
	}
	if len(macs) == 0 {
		c.log.Warn("no NICs in enabled state reported by the BMC: no port created", "node", n.UUID)
		return t, nil
	}
	if err := c.createPorts(ctx, n, macs, ""); err != nil {
		return nil, err
	}
	h, err := c.hardware(n)
	if err != nil {
		return nil, err
	}
	return c.newTask(ctx, h, n)
}

// inspectTask resolves n's inspect interface and builds its task.
func (c *Conductor) inspectTask(ctx context.Context, n *provisioner.Node) (drivers.InspectInterface, *drivers.Task, error) {
	h, err := c.hardware(n)
	if err != nil {
		return nil, nil, err
	}
	ins, err := h.InspectFor(n)
	if err != nil {
		return nil, nil, err
	}
	t, err := c.newTask(ctx, h, n)
	if err != nil {
		return nil, nil, err
	}
	return ins, t, nil
}

// bmcAddresses are the IP addresses of the node's BMC from its
// driver_info (ipmi_address, or redfish_address's host), resolved as
// Ironic's get_bmc_addresses does.
func bmcAddresses(info map[string]any) []any {
	host, _ := info["ipmi_address"].(string)
	if host == "" {
		if a, _ := info["redfish_address"].(string); a != "" {
			if !strings.Contains(a, "://") {
				a = "https://" + a
			}
			if u, err := url.Parse(a); err == nil {
				host = u.Hostname()
			}
		}
	}
	if host == "" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return []any{ip.String()}
	}
	ips, err := net.LookupHost(host)
	if err != nil {
		return []any{host}
	}
	out := make([]any, len(ips))
	for i, ip := range ips {
		out[i] = ip
	}
	return out
}

// errInspectLookup is Ironic's generic NotFound for every failed
// inspection lookup, so that nothing about other nodes is disclosed.
var errInspectLookup = &Error{Kind: KindNotFound, Msg: "Resource could not be found."}

// ContinueInspection takes the inventory a ramdisk posted (Ironic's
// continue_inspection): it looks the node up by the inventory's MACs,
// else by its BMC address among the nodes in "inspect wait", resumes it
// ("inspecting") and processes the data as a task: properties cpus,
// memory_mb, local_gb and cpu_arch, a port per new MAC, the inventory
// stored, then the inspect interface's Continue (power off, boot
// configuration removed) and "manageable". It returns the node's UUID.
// Every lookup failure is the same NotFound.
func (c *Conductor) ContinueInspection(ctx context.Context, data InspectionData) (string, error) {
	macs, bmcs := lookupKeys(data.Inventory)
	if len(macs) == 0 && len(bmcs) == 0 {
		return "", refuse(KindInvalid, "No lookup information provided")
	}
	n, err := c.inspectLookup(ctx, macs, bmcs)
	if err != nil {
		return "", err
	}
	n, err = c.acquire(ctx, n.UUID)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			c.release(ctx, n.UUID)
		}
	}()
	if n.ProvisionState != provisioner.StateInspectWait {
		return "", errInspectLookup
	}
	if err := c.transition(ctx, n, EventResume); err != nil {
		return "", err
	}
	c.log.Info("inspection data received", "node", n.UUID, "state", n.ProvisionState)
	err = c.spawn(n, "continue inspection", func(ctx context.Context, n *provisioner.Node) {
		// The inventory is untrusted input: a panic fails this node,
		// never the conductor.
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("inspection processing panicked", "node", n.UUID, "err", r)
				c.failNode(ctx, n, fmt.Sprintf("Failed to inspect hardware. Reason: internal error: %v", r))
			}
		}()
		step, err := c.continueInspection(ctx, n, data)
		c.afterStep(ctx, n, step, err, func(err error) string {
			return fmt.Sprintf("Failed to inspect hardware. Reason: %s", err)
		})
	})
	if err != nil {
		return "", err
	}
	ok = true
	return n.UUID, nil
}

// continueInspection processes the data, then hands the node to its
// inspect interface to finish.
func (c *Conductor) continueInspection(ctx context.Context, n *provisioner.Node, data InspectionData) (drivers.Step, error) {
	ins, t, err := c.inspectTask(ctx, n)
	if err != nil {
		return 0, err
	}
	props, err := inspectedProperties(data)
	if err != nil {
		return 0, err
	}
	if n.Properties == nil {
		n.Properties = map[string]any{}
	}
	for k, v := range props {
		n.Properties[k] = v
	}
	delete(n.DriverInternalInfo, lookupBMCKey)
	if err := c.createInspectedPorts(ctx, n, data); err != nil {
		return 0, err
	}
	if err := c.storeInventory(ctx, n, data); err != nil {
		return 0, err
	}
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		return 0, fmt.Errorf("save node %s: %w", n.UUID, err)
	}
	c.history(ctx, n, "INFO", "introspection", fmt.Sprintf("Inspection data processed: cpus %v, memory_mb %v, local_gb %v, cpu_arch %v",
		props["cpus"], props["memory_mb"], props["local_gb"], props["cpu_arch"]))
	return ins.Continue(ctx, t)
}

// lookupKeys are the valid MACs (lower case) and the BMC addresses of an
// inventory.
func lookupKeys(inv map[string]any) (macs, bmcs []string) {
	ifaces, _ := inv["interfaces"].([]any)
	for _, i := range ifaces {
		m, _ := i.(map[string]any)
		s, _ := m["mac_address"].(string)
		if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
			macs = append(macs, hw.String())
		}
	}
	for _, k := range []string{"bmc_address", "bmc_v6address"} {
		if s, _ := inv[k].(string); s != "" {
			bmcs = append(bmcs, s)
		}
	}
	return macs, bmcs
}

// inspectLookup is Ironic's inspect_utils.lookup_node: the node owning
// ports with these MACs (one node only), which must be in "inspect
// wait"; failing that the one node in "inspect wait" whose BMC address is
// among bmcs.
func (c *Conductor) inspectLookup(ctx context.Context, macs, bmcs []string) (*provisioner.Node, error) {
	owner := ""
	for _, mac := range macs {
		ports, err := c.st.Ports(ctx, store.PortFilter{Address: mac})
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			if owner != "" && p.NodeUUID != owner {
				c.log.Warn("inspection lookup: MACs belong to several nodes", "mac", mac)
				return nil, errInspectLookup
			}
			owner = p.NodeUUID
		}
	}
	if owner != "" {
		n, err := c.st.Node(ctx, owner)
		if err != nil || n.ProvisionState != provisioner.StateInspectWait {
			return nil, errInspectLookup
		}
		return n, nil
	}
	waiting, err := c.st.Nodes(ctx, store.NodeFilter{ProvisionState: provisioner.StateInspectWait})
	if err != nil {
		return nil, err
	}
	var found []*provisioner.Node
	for _, n := range waiting {
		addrs, _ := n.DriverInternalInfo[lookupBMCKey].([]any)
		if slices.ContainsFunc(addrs, func(a any) bool { s, _ := a.(string); return slices.Contains(bmcs, s) }) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		if len(found) > 1 {
			c.log.Warn("inspection lookup: several nodes share the BMC address and none has a port with the MACs; create ports",
				"bmc", strings.Join(bmcs, ","))
		}
		return nil, errInspectLookup
	}
	return found[0], nil
}

// gib is a binary gigabyte.
const gib = 1 << 30

// inspectedProperties are the scheduling properties Ironic's inspection
// hooks derive from an inventory: cpus (cpu.count), cpu_arch
// (architecture hook), memory_mb (memory hook: memory.physical_mb, else
// memory.total in MiB) and local_gb (root-device hook: the ramdisk's
// root_disk, else the smallest disk, in GiB less one for partitioning).
func inspectedProperties(data InspectionData) (map[string]any, error) {
	inv := data.Inventory
	cpu, _ := inv["cpu"].(map[string]any)
	props := map[string]any{}
	if n, ok := number(cpu["count"]); ok && n > 0 {
		props["cpus"] = n
	}
	if a, _ := cpu["architecture"].(string); a != "" {
		props["cpu_arch"] = a
	}
	mem, _ := inv["memory"].(map[string]any)
	if mb, ok := number(mem["physical_mb"]); ok && mb > 0 {
		props["memory_mb"] = mb
	} else if total, ok := number(mem["total"]); ok && total > 0 {
		props["memory_mb"] = total >> 20
	} else {
		return nil, errors.New("No information about memory")
	}
	size, ok := rootDiskSize(data)
	if !ok {
		props["local_gb"] = int64(0)
		return props, nil
	}
	localGB := size / gib
	if localGB > 0 {
		localGB-- // [inspector]disk_partitioning_spacing
	}
	props["local_gb"] = localGB
	return props, nil
}

// rootDiskSize is the size of the root disk the ramdisk chose, else of
// the smallest disk in the inventory.
func rootDiskSize(data InspectionData) (int64, bool) {
	if rd, ok := data.PluginData["root_disk"].(map[string]any); ok {
		if s, ok := number(rd["size"]); ok && s > 0 {
			return s, true
		}
	}
	disks, _ := data.Inventory["disks"].([]any)
	var best int64
	for _, d := range disks {
		m, _ := d.(map[string]any)
		if s, ok := number(m["size"]); ok && s > 0 && (best == 0 || s < best) {
			best = s
		}
	}
	return best, best > 0
}

// number reads a JSON number as an integer.
func number(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

// createInspectedPorts creates a port for every valid MAC of the
// inventory that no port has (Ironic's ports hook with add_ports=all),
// PXE-enabled when it is the interface the ramdisk booted from (or when
// that is unknown).
func (c *Conductor) createInspectedPorts(ctx context.Context, n *provisioner.Node, data InspectionData) error {
	macs, _ := lookupKeys(data.Inventory)
	return c.createPorts(ctx, n, macs, pxeMAC(data))
}

// createPorts creates a port on n for each MAC no port has, PXE-enabled
// when it is pxe or pxe is "".
func (c *Conductor) createPorts(ctx context.Context, n *provisioner.Node, macs []string, pxe string) error {
	for _, mac := range macs {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			c.log.Warn("ignoring NIC address that is not a valid MAC", "node", n.UUID, "mac", mac)
			continue
		}
		mac = hw.String()
		existing, err := c.st.Ports(ctx, store.PortFilter{Address: mac})
		if err != nil {
			return fmt.Errorf("list ports: %w", err)
		}
		if len(existing) > 0 {
			continue
		}
		p := &provisioner.Port{UUID: uuid.NewString(), Address: hw, NodeUUID: n.UUID,
			PXEEnabled: pxe == "" || pxe == mac, CreatedAt: c.now()}
		if err := c.st.CreatePort(ctx, p); err != nil {
			if errors.Is(err, store.ErrDuplicate) {
				continue
			}
			return fmt.Errorf("create port %s: %w", mac, err)
		}
		c.log.Info("port created for MAC address", "node", n.UUID, "mac", mac)
		c.cfg.Recorder.Record(events.Event{Kind: events.PortCreated, Detail: mac,
			Who: events.Who{Node: n.UUID, NodeName: n.Name, MAC: mac}})
	}
	return nil
}

// pxeMAC is the MAC the ramdisk booted from (boot_interface, else the
// inventory's boot.pxe_interface), "" when unknown.
func pxeMAC(data InspectionData) string {
	s, _ := data.PluginData["boot_interface"].(string)
	if s == "" {
		boot, _ := data.Inventory["boot"].(map[string]any)
		s, _ = boot["pxe_interface"].(string)
	}
	// pxelinux spells it 01-aa-bb-cc-dd-ee-ff.
	if strings.Count(s, "-") == 6 {
		s = strings.ReplaceAll(s[3:], "-", ":")
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return ""
	}
	return hw.String()
}

// storeInventory keeps the inventory and plugin data for GET
// /v1/nodes/{node}/inventory.
func (c *Conductor) storeInventory(ctx context.Context, n *provisioner.Node, data InspectionData) error {
	inv, err := json.Marshal(data.Inventory)
	if err != nil {
		return fmt.Errorf("encode inventory: %w", err)
	}
	plugin := data.PluginData
	if plugin == nil {
		plugin = map[string]any{}
	}
	pd, err := json.Marshal(plugin)
	if err != nil {
		return fmt.Errorf("encode plugin data: %w", err)
	}
	if err := c.st.SetInventory(ctx, n.UUID, store.Inventory{Inventory: inv, PluginData: pd, CreatedAt: c.now()}); err != nil {
		return fmt.Errorf("store inventory: %w", err)
	}
	return nil
}

// Inventory returns the inspection data stored for the node ident; a
// *Error NotFound with Ironic's message when it has none.
func (c *Conductor) Inventory(ctx context.Context, ident string) (store.Inventory, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return store.Inventory{}, err
	}
	inv, err := c.st.Inventory(ctx, n.UUID)
	if errors.Is(err, store.ErrNotFound) {
		return inv, &Error{Kind: KindNotFound, Err: err, Msg: fmt.Sprintf("Node inventory for node %s could not be found.", n.UUID)}
	}
	return inv, err
}

// abortInspection undoes an inspection that was aborted or timed out
// (boot configuration, power); a failure is appended to last_error.
func (c *Conductor) abortInspection(ctx context.Context, n *provisioner.Node) {
	ins, t, err := c.inspectTask(ctx, n)
	if err == nil {
		err = ins.Abort(ctx, t)
	} else if errors.Is(err, drivers.ErrUnsupported) {
		err = nil // no inspect interface: nothing to undo
	}
	delete(n.DriverInternalInfo, lookupBMCKey)
	if err != nil && ctx.Err() == nil {
		n.LastError += fmt.Sprintf(" Inspection clean up failed: %s", err)
	}
	n.UpdatedAt = c.now()
	if err := c.st.UpdateNode(ctx, n); err != nil {
		c.log.Error("save node", "node", n.UUID, "err", err)
	}
}
