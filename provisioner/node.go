// Package provisioner is metalbed's Ironic look-alike. This package holds the
// domain model in Ironic's vocabulary; api/, conductor/, store/, drivers/,
// dhcp/, tftp/ and images/ build on it. It imports none of them.
package provisioner

import (
	"net"
	"strings"
	"time"
)

// ProvisionState is an Ironic provision state, spelled exactly as Ironic does.
type ProvisionState string

// Provision states (ironic/common/states.py).
const (
	StateEnroll        ProvisionState = "enroll"
	StateVerifying     ProvisionState = "verifying"
	StateManageable    ProvisionState = "manageable"
	StateAvailable     ProvisionState = "available"
	StateDeploying     ProvisionState = "deploying"
	StateWaitCallback  ProvisionState = "wait call-back"
	StateActive        ProvisionState = "active"
	StateDeployFailed  ProvisionState = "deploy failed"
	StateDeleting      ProvisionState = "deleting"
	StateCleaning      ProvisionState = "cleaning"
	StateCleanWait     ProvisionState = "clean wait"
	StateCleanFailed   ProvisionState = "clean failed"
	StateError         ProvisionState = "error"
	StateInspecting    ProvisionState = "inspecting"
	StateInspectWait   ProvisionState = "inspect wait"
	StateInspectFailed ProvisionState = "inspect failed"
)

// PowerState is an Ironic power state string.
type PowerState string

// Power states and power targets as the API spells them.
const (
	PowerOn       PowerState = "power on"
	PowerOff      PowerState = "power off"
	PowerError    PowerState = "error"
	Rebooting     PowerState = "rebooting"
	SoftPowerOff  PowerState = "soft power off"
	SoftRebooting PowerState = "soft rebooting"
)

// Node is one bare-metal machine as the provisioner knows it. JSON-ish
// dictionaries stay maps so PATCH can edit any key, as in Ironic.
type Node struct {
	UUID         string
	Name         string
	Driver       string // hardware type: "ipmi", "fake-hardware"
	Interfaces   Interfaces
	DriverInfo   map[string]any
	Properties   map[string]any
	InstanceInfo map[string]any
	// DriverInternalInfo is conductor-private state (deploy key, agent URL,
	// root_uuid_or_disk_id, …).
	DriverInternalInfo map[string]any
	Extra              map[string]any

	ProvisionState       ProvisionState
	TargetProvisionState ProvisionState // "" when none
	PowerState           PowerState     // "" when unknown
	TargetPowerState     PowerState
	LastError            string
	Maintenance          bool
	MaintenanceReason    string
	Reservation          string // conductor holding the lock, "" when free
	InstanceUUID         string
	ResourceClass        string
	ChassisUUID          string // "" when the node is in no chassis
	AllocationUUID       string // "" when no allocation holds the node
	BootMode             string // "bios", "uefi" or ""
	Fault                string

	// Fields the API stores and shows as Ironic does; the conductor does not
	// act on them.
	Description     string
	Owner           string
	Lessee          string
	ConductorGroup  string
	Shard           string
	Protected       bool
	ProtectedReason string
	Retired         bool
	RetiredReason   string
	AutomatedClean  *bool // nil = conductor default
	Traits          []string
	NetworkData     map[string]any
	CleanStep       map[string]any
	DeployStep      map[string]any
	RaidConfig      map[string]any
	TargetRaidCfg   map[string]any
	ConsoleEnabled  bool

	CreatedAt          time.Time
	UpdatedAt          time.Time
	ProvisionUpdatedAt time.Time
}

// Interfaces names the driver interface chosen for each role.
type Interfaces struct {
	Boot, Console, Deploy, Inspect, Management, Network, Power, Raid,
	Rescue, Storage, Vendor, Bios string
}

// Port is one NIC of a node, identified by MAC.
type Port struct {
	UUID                string
	Address             net.HardwareAddr
	NodeUUID            string
	PXEEnabled          bool
	Extra               map[string]any
	InternalInfo        map[string]any
	LocalLinkConnection map[string]any
	PhysicalNetwork     string
	IsSmartNIC          bool
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Chassis groups nodes (Ironic's chassis): a description and extra, no
// behaviour.
type Chassis struct {
	UUID        string
	Description string
	Extra       map[string]any
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// DeployStep is one step of a deploy template, as Ironic's API takes it.
type DeployStep struct {
	Interface string         `json:"interface"`
	Step      string         `json:"step"`
	Args      map[string]any `json:"args"`
	Priority  int            `json:"priority"`
}

// DeployTemplate (API 1.55) names a set of deploy steps after a trait: a
// node deployed with that trait in its instance's traits runs them.
type DeployTemplate struct {
	UUID      string
	Name      string // a trait: CUSTOM_* or a standard one
	Steps     []DeployStep
	Extra     map[string]any
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Allocation states (Ironic's allocation state machine, short).
const (
	AllocationAllocating = "allocating"
	AllocationActive     = "active"
	AllocationError      = "error"
)

// Allocation (API 1.52) reserves one available node matching a resource
// class and traits, as Nova's and metalsmith's scheduling does.
type Allocation struct {
	UUID           string
	Name           string
	NodeUUID       string // "" until a node is picked
	State          string // AllocationAllocating, AllocationActive or AllocationError
	LastError      string
	ResourceClass  string
	Traits         []string
	CandidateNodes []string // node UUIDs
	Owner          string
	Extra          map[string]any
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// HistoryEvent is one entry of a node's history (API 1.78): errors and
// transitions the conductor recorded.
type HistoryEvent struct {
	UUID      string
	NodeUUID  string
	CreatedAt time.Time
	Severity  string // "INFO" or "ERROR"
	Event     string
	EventType string // "provisioning", "power", "maintenance", …
	Conductor string
	User      string
}

// Conductor is one registered conductor process with its heartbeat.
type Conductor struct {
	Hostname       string
	ConductorGroup string
	Drivers        []string
	CreatedAt      time.Time
	UpdatedAt      time.Time // last heartbeat
	Online         bool
}

// Capability reads key from Ironic capabilities: the "k1:v1,k2:v2" string
// properties hold, or a JSON object as instance_info may hold.
func Capability(caps any, key string) string {
	switch c := caps.(type) {
	case string:
		for _, kv := range strings.Split(c, ",") {
			k, v, ok := strings.Cut(kv, ":")
			if ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	case map[string]any:
		s, _ := c[key].(string)
		return s
	}
	return ""
}

// DeployBootMode is Ironic's boot_mode_utils.get_boot_mode: instance_info
// deploy_boot_mode, then the boot_mode capability of instance_info and of
// properties, then the node's boot_mode, then def ("bios" or "uefi").
func (n *Node) DeployBootMode(def string) string {
	ok := func(s string) bool { return s == "uefi" || s == "bios" }
	if m, _ := n.InstanceInfo["deploy_boot_mode"].(string); ok(m) {
		return m
	}
	if m := Capability(n.InstanceInfo["capabilities"], "boot_mode"); ok(m) {
		return m
	}
	if m := Capability(n.Properties["capabilities"], "boot_mode"); ok(m) {
		return m
	}
	if ok(n.BootMode) {
		return n.BootMode
	}
	return def
}

// DeployBootOption is Ironic's get_boot_option: instance_info boot_option,
// then the boot_option capability of instance_info and of properties, then
// def ("local" or "netboot").
func (n *Node) DeployBootOption(def string) string {
	ok := func(s string) bool { return s == "local" || s == "netboot" }
	if o, _ := n.InstanceInfo["boot_option"].(string); ok(o) {
		return o
	}
	if o := Capability(n.InstanceInfo["capabilities"], "boot_option"); ok(o) {
		return o
	}
	if o := Capability(n.Properties["capabilities"], "boot_option"); ok(o) {
		return o
	}
	return def
}
