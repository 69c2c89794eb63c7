package testbed

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// Inventory is inventory.json, which scripts read: its shape is a contract.
type Inventory struct {
	Nodes []InventoryNode `json:"nodes"`
	// API and Timeline are the provisioner API and the timeline endpoint,
	// absent with --no-provisioner (Timeline then names the machines'
	// timeline, Config.TimelineAddr, when there is one).
	API      string `json:"api,omitempty"`
	Timeline string `json:"timeline,omitempty"`
	// Web is the dashboard, absent without it.
	Web string `json:"web,omitempty"`
	// BootNetwork is the real VMs' boot network, absent with simulated
	// machines.
	BootNetwork *InventoryBootNetwork `json:"boot_network,omitempty"`
	// Redfish is the Redfish service (each node's is under Nodes),
	// Metrics the metrics listener; absent without them.
	Redfish string `json:"redfish,omitempty"`
	Metrics string `json:"metrics,omitempty"`
	// Boot is the provisioner's boot servers; absent without it.
	Boot *InventoryBoot `json:"boot,omitempty"`
}

// InventoryBootNetwork is where a provisioner metalbed does not run (a
// real Ironic, `metalbed netboot serve`) joins the real VMs' boot network:
// `ip netns exec NAMESPACE ...`, listening on Address, DHCP on Interface.
type InventoryBootNetwork struct {
	Namespace string `json:"namespace"`
	Interface string `json:"interface"`
	Address   string `json:"address"` // the provisioner's, e.g. 10.235.0.1
	Prefix    string `json:"prefix"`  // e.g. 10.235.0.0/24
}

// InventoryBoot is where the boot servers listen and what they lease.
type InventoryBoot struct {
	DHCP string `json:"dhcp"` // HOST:PORT (UDP)
	TFTP string `json:"tftp"` // HOST:PORT (UDP)
	HTTP string `json:"http"` // base URL
	// DHCPRange is FIRST-LAST, the machines' addresses: the testbed's
	// own block of 127.0.0.0/8 with simulated machines.
	DHCPRange string `json:"dhcp_range"`
}

type InventoryNode struct {
	Name       string        `json:"name"`
	BMC        InventoryBMC  `json:"bmc"`
	MACs       []string      `json:"macs"`
	Disk       InventoryDisk `json:"disk"`
	UUID       string        `json:"uuid"`
	BootMode   vms.BootMode  `json:"boot_mode"`
	ConsoleLog string        `json:"console_log"`
	// Redfish is the node as a Redfish ComputerSystem; absent without
	// the Redfish service.
	Redfish *InventoryRedfish `json:"redfish,omitempty"`
}

// InventoryRedfish is what Ironic's redfish driver_info needs: the
// service (redfish_address), the system (redfish_system_id), the BMC's
// credentials and how to verify the service (redfish_verify_ca).
type InventoryRedfish struct {
	Address  string `json:"address"`
	SystemID string `json:"system_id"`
	Username string `json:"username"`
	Password string `json:"password"`
	// VerifyCA is the CA file's path with HTTPS, false with plain HTTP.
	VerifyCA any `json:"verify_ca"`
	// BootNetworkAddress is the same service as reached from inside the
	// real VMs' boot network (Inventory.BootNetwork), where a provisioner
	// on that network finds it; absent with simulated machines.
	BootNetworkAddress string `json:"boot_network_address,omitempty"`
}

type InventoryBMC struct {
	Address  string `json:"address"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type InventoryDisk struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
}

func (f *fleet) inventory(b *bed, rf *redfishService) Inventory {
	inv := Inventory{Nodes: make([]InventoryNode, 0, len(f.nodes))}
	if b != nil {
		inv.API, inv.Timeline = b.apiURL(), b.timelineURL()
		inv.Boot = &InventoryBoot{DHCP: b.dhcpConn.LocalAddr().String(), TFTP: b.tftpConn.LocalAddr().String(),
			HTTP: b.httpURL(), DHCPRange: b.boot.DHCPRange}
	}
	if rf != nil {
		inv.Redfish = rf.url
	}
	for _, n := range f.nodes {
		a := n.bmcAddr()
		in := InventoryNode{
			Name:       n.plan.Name,
			BMC:        InventoryBMC{Address: a.IP.String(), Port: a.Port, Username: n.plan.Username, Password: n.plan.Password},
			MACs:       []string{},
			Disk:       InventoryDisk{Path: n.machine.Disk().Path, SizeBytes: n.machine.Disk().SizeBytes},
			UUID:       sim.FormatUUID(n.machine.UUID()),
			BootMode:   n.machine.BootMode(),
			ConsoleLog: n.machine.ConsoleLog(),
		}
		for _, nic := range n.machine.NICs() {
			in.MACs = append(in.MACs, nic.MAC.String())
		}
		if rf != nil {
			in.Redfish = rf.nodeInfo(n)
		}
		inv.Nodes = append(inv.Nodes, in)
	}
	return inv
}

// writeInventory writes inventory.json atomically (temp file + rename).
func writeInventory(path string, inv Inventory) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".inventory.json.tmp*")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	err = tmp.Chmod(0o644)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("inventory %s: %w", path, err)
	}
	return nil
}
