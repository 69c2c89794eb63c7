package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/metalbed/metalbed/provisioner/boot"
)

// enrollSpec is what enrolling one machine needs.
type enrollSpec struct {
	name                   string
	bmcAddress             string
	bmcPort                int
	username, password     string
	macs                   []string
	bootMode               string
	diskBytes              int64
	deployKernel, deployRd string
	bootInterface          string // "" => the hardware type's default (pxe)
	// deployInterface is "iscsi" (the default when enabled) or "direct"
	// (the agent).
	deployInterface string
	// driver is "ipmi" ("" too) or "redfish"; redfish is the machine's
	// ComputerSystem with driver "redfish".
	driver  string
	redfish *InventoryRedfish
}

// driverName is the hardware type of the node.
func (sp enrollSpec) driverName() string {
	if sp.driver == "" {
		return "ipmi"
	}
	return sp.driver
}

// isoBooted reports whether the boot interface boots the agent from an
// ISO (redfish-virtual-media, redfish-https): the agent only (deploy
// interface direct), instances from disk only.
func isoBooted(bootInterface string) bool {
	return bootInterface == boot.VirtualMediaName || bootInterface == boot.HTTPSName
}

// capabilities are the node's properties/capabilities: its boot mode,
// and for ISO boot boot_option local (Ironic 21.4's default; the
// redfish-virtual-media and redfish-https interfaces boot instances from
// disk only).
func (sp enrollSpec) capabilities() string {
	c := "boot_mode:" + sp.bootMode
	if isoBooted(sp.bootInterface) {
		c += ",boot_option:local"
	}
	return c
}

// bmcInfo is the driver_info that points the node at its BMC: ipmi_* or,
// for redfish, redfish_* as Ironic's redfish hardware type reads them.
func (sp enrollSpec) bmcInfo() map[string]any {
	if sp.driverName() == "redfish" {
		if sp.redfish == nil { // no Redfish service (any more)
			return map[string]any{}
		}
		return map[string]any{
			"redfish_address":   sp.redfish.Address,
			"redfish_system_id": sp.redfish.SystemID,
			"redfish_username":  sp.redfish.Username,
			"redfish_password":  sp.redfish.Password,
			"redfish_verify_ca": sp.redfish.VerifyCA,
		}
	}
	return map[string]any{
		"ipmi_address":  sp.bmcAddress,
		"ipmi_port":     sp.bmcPort,
		"ipmi_username": sp.username,
		"ipmi_password": sp.password,
	}
}

// The properties a simulated machine reports (it has no CPUs or memory to
// speak of; these are what a small VM would show).
const (
	simCPUs     = 2
	simMemoryMB = 2048
	simCPUArch  = "x86_64"
)

// enroll creates a node per machine through the API, with driver ipmi
// (or redfish) pointing at the machine's BMC (or its Redfish system) and
// the deploy images, and a PXE-enabled port per MAC, left in "enroll". The
// iscsi deploy interface is chosen when the hardware type enables it. A node that exists already (same name)
// keeps its state; only its driver_info is pointed at the machine's BMC and
// the deploy images again when they moved (free BMC ports change on every
// start). It returns the node UUIDs by name.
func enroll(ctx context.Context, c *Client, specs []enrollSpec) (map[string]string, error) {
	enabled := map[string][]string{} // deploy interfaces by hardware type
	uuids := map[string]string{}
	for _, sp := range specs {
		driver := sp.driverName()
		deploys, ok := enabled[driver]
		if !ok {
			var err error
			if deploys, err = c.enabledInterfaces(ctx, driver, "deploy"); err != nil {
				return nil, fmt.Errorf("enroll: hardware type %s: %w", driver, err)
			}
			enabled[driver] = deploys
		}
		if n, err := c.Node(ctx, sp.name); err == nil {
			uuids[sp.name] = n.UUID
			if err := repoint(ctx, c, n, sp); err != nil {
				return nil, fmt.Errorf("enroll %s: %w", sp.name, err)
			}
			continue
		} else if ae := (*APIError)(nil); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			return nil, fmt.Errorf("enroll %s: %w", sp.name, err)
		}
		info := sp.bmcInfo()
		info["deploy_kernel"], info["deploy_ramdisk"] = sp.deployKernel, sp.deployRd
		body := map[string]any{
			"name":        sp.name,
			"driver":      driver,
			"driver_info": info,
			"properties": map[string]any{
				"cpus":         simCPUs,
				"memory_mb":    simMemoryMB,
				"local_gb":     sp.diskBytes >> 30,
				"cpu_arch":     simCPUArch,
				"capabilities": sp.capabilities(),
			},
		}
		switch {
		case sp.deployInterface != "" && slices.Contains(deploys, sp.deployInterface):
			body["deploy_interface"] = sp.deployInterface
		case sp.deployInterface != "":
			return nil, fmt.Errorf("enroll %s: hardware type %s does not enable deploy interface %s", sp.name, driver, sp.deployInterface)
		case slices.Contains(deploys, "iscsi"):
			body["deploy_interface"] = "iscsi"
		}
		if sp.bootInterface != "" {
			body["boot_interface"] = sp.bootInterface
		}
		// The serial console over SOL, for `baremetal node console
		// enable` (Ironic's default is no-console).
		consoles, err := c.enabledInterfaces(ctx, driver, "console")
		if err != nil {
			return nil, fmt.Errorf("enroll: hardware type %s: %w", driver, err)
		}
		if slices.Contains(consoles, "ipmitool-socat") {
			body["console_interface"] = "ipmitool-socat"
		}
		var n Node
		if err := c.Do(ctx, http.MethodPost, "/v1/nodes", body, &n); err != nil {
			return nil, fmt.Errorf("enroll %s: %w", sp.name, err)
		}
		uuids[sp.name] = n.UUID
		for _, mac := range sp.macs {
			port := map[string]any{"address": mac, "node_uuid": n.UUID, "pxe_enabled": true}
			if err := c.Do(ctx, http.MethodPost, "/v1/ports", port, nil); err != nil {
				return nil, fmt.Errorf("enroll %s: port %s: %w", sp.name, mac, err)
			}
		}
	}
	return uuids, nil
}

// repoint updates an enrolled node's BMC address (ipmi_address and
// ipmi_port, or redfish_address and redfish_verify_ca) and deploy images
// when they differ from the machine's now. Its driver stays.
func repoint(ctx context.Context, c *Client, n *Node, sp enrollSpec) error {
	want := map[string]any{"deploy_kernel": sp.deployKernel, "deploy_ramdisk": sp.deployRd}
	if _, isRedfish := n.DriverInfo["redfish_address"]; isRedfish {
		sp.driver = "redfish"
	} else {
		sp.driver = "ipmi"
	}
	for k, v := range sp.bmcInfo() {
		switch k {
		case "ipmi_address", "ipmi_port", "redfish_address", "redfish_verify_ca":
			want[k] = v
		}
	}
	var ops []map[string]any
	for k, v := range want {
		if fmt.Sprint(n.DriverInfo[k]) != fmt.Sprint(v) {
			ops = append(ops, map[string]any{"op": "add", "path": "/driver_info/" + k, "value": v})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	return c.Patch(ctx, n.UUID, ops)
}

// DefaultBootInterface is pxe when Debian's pxelinux and ipxe boot programs
// are installed; otherwise ipxe, which boots iPXE ROMs (the simulated
// machines', QEMU's) without them.
func DefaultBootInterface() string {
	if boot.HavePXELinux() && !boot.MissingIPXE() {
		return "pxe"
	}
	return "ipxe"
}

// enrollSpecs describes every machine for enroll, with driver ("" = ipmi)
// and, for redfish, the Redfish service rf.
func (f *fleet) enrollSpecs(b *bed, bootInterface, driver string, rf *redfishService) []enrollSpec {
	if bootInterface == "" {
		bootInterface = DefaultBootInterface()
	}
	specs := make([]enrollSpec, 0, len(f.nodes))
	for _, n := range f.nodes {
		a := n.bmcAddr()
		sp := enrollSpec{
			name: n.plan.Name, bmcAddress: a.IP.String(), bmcPort: a.Port,
			username: n.plan.Username, password: n.plan.Password,
			bootMode: string(n.machine.BootMode()), diskBytes: n.machine.Disk().SizeBytes,
			deployKernel: b.deployKernel, deployRd: b.deployRamdisk, bootInterface: bootInterface,
			driver: driver,
		}
		if rf != nil {
			sp.redfish = rf.nodeInfo(n)
		}
		if isoBooted(bootInterface) {
			sp.deployInterface = "direct" // an ISO boots the agent only
		}
		for _, nic := range n.machine.NICs() {
			sp.macs = append(sp.macs, nic.MAC.String())
		}
		specs = append(specs, sp)
	}
	return specs
}
