// Package provisioner is metalbed's Ironic look-alike. This package holds the
// domain model in Ironic's vocabulary; api/, conductor/, store/, drivers/,
// dhcp/, tftp/ and images/ build on it. It imports none of them.
package provisioner

import (
	"net"
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
