package events

import "strings"

// Kind names what happened. Every kind metalbed records is a constant
// below; its prefix up to the first dot is the Source that records it.
// Kinds are stored and matched as these strings (timeline.jsonl, the
// timeline API, features), so a constant's value never changes.
type Kind string

// Source is the layer that recorded an entry: the part of its Kind before
// the first dot.
func (k Kind) Source() string {
	s, _, _ := strings.Cut(string(k), ".")
	return s
}

func (k Kind) String() string { return string(k) }

// The machine: power, boots and what its console says.
const (
	MachineUp         Kind = "machine.up"          // the testbed wired the machine
	MachinePowerOn    Kind = "machine.power-on"    //
	MachinePowerOff   Kind = "machine.power-off"   //
	MachineReset      Kind = "machine.reset"       //
	MachineBoot       Kind = "machine.boot"        // Detail: the device booted from
	MachineBootFailed Kind = "machine.boot-failed" //
	MachineDHCP       Kind = "machine.dhcp"        // the PXE ROM's lease
	MachineNBP        Kind = "machine.nbp"         // the network boot program fetched
	MachineKernel     Kind = "machine.kernel"      // the kernel the firmware started
	MachineLoader     Kind = "machine.loader"      // the local-boot loader's entry
	MachineNMI        Kind = "machine.NMI"         // a diagnostic interrupt
	MachineConsole    Kind = "machine.console"     // another console line worth keeping
	InstanceBooted    Kind = "instance.booted"     // the deployed instance announced its boot
)

// The BMC.
const (
	BMCChassisControl  Kind = "bmc.chassis_control"
	BMCSetBootOptions  Kind = "bmc.set_boot_options"
	BMCRedfishRequest  Kind = "bmc.redfish.request"
	BMCRedfishReset    Kind = "bmc.redfish.reset"
	BMCRedfishBoot     Kind = "bmc.redfish.boot"
	BMCRedfishMedia    Kind = "bmc.redfish.virtual_media"
	BMCRedfishSessions Kind = "bmc.redfish.session"
	// Detail: staged, applied (at a power-on or reset), reset to defaults, a password changed.
	BMCRedfishBios Kind = "bmc.redfish.bios"
	// Detail: SecureBootEnable set, keys reset, SecureBootCurrentBoot decided at a boot.
	BMCRedfishSecureBoot Kind = "bmc.redfish.secure_boot"
	// BMCRedfishManager: a Manager's DateTime set.
	BMCRedfishManager Kind = "bmc.redfish.manager"
	BMCRedfishLog     Kind = "bmc.redfish.log" // a LogService cleared
)

// The Redfish service's tasks and firmware updates.
const (
	BMCRedfishTask     Kind = "bmc.redfish.task"     // a task changed state
	BMCRedfishFirmware Kind = "bmc.redfish.firmware" // an image applied; the BMC rebooted
)

// The boot servers.
const (
	DHCPOffer   Kind = "dhcp.offer"
	DHCPAck     Kind = "dhcp.ack"
	DHCPNak     Kind = "dhcp.nak"
	DHCPRelease Kind = "dhcp.release"
	DHCPDecline Kind = "dhcp.decline"
	DHCPInform  Kind = "dhcp.inform"
	TFTPFile    Kind = "tftp.file"
	TFTPError   Kind = "tftp.error"
	HTTPFile    Kind = "http.file"
	HTTPError   Kind = "http.error"
)

// The iSCSI target (the ramdisk's export of the machine's disk).
const (
	ISCSILogin  Kind = "iscsi.login"
	ISCSILogout Kind = "iscsi.logout"
)

// The deploy ramdisk (Ironic's old bash ramdisk) and the agent.
const (
	RamdiskUp                    Kind = "ramdisk.up"
	RamdiskDisk                  Kind = "ramdisk.disk"
	RamdiskISCSI                 Kind = "ramdisk.iscsi"
	RamdiskPassDeployInfo        Kind = "ramdisk.pass_deploy_info"
	RamdiskPassBootloaderInstall Kind = "ramdisk.pass_bootloader_install_info"
	RamdiskNotice                Kind = "ramdisk.notice"
	RamdiskBootloader            Kind = "ramdisk.bootloader" // Detail: boot mode and loader
	// RamdiskBootloaderFallback: the bootloader step installed metalbed's
	// placeholder loader because the ramdisk carries no GRUB for the boot
	// mode, unasked. Detail: why.
	RamdiskBootloaderFallback Kind = "ramdisk.bootloader_fallback"
	RamdiskReboot             Kind = "ramdisk.reboot"
	AgentUp                   Kind = "agent.up"
	AgentLookup               Kind = "agent.lookup"
	AgentHeartbeat            Kind = "agent.heartbeat"
	AgentImage                Kind = "agent.image"
	AgentImageWritten         Kind = "agent.image.written"
	AgentBootloader           Kind = "agent.bootloader" // Detail: boot mode and loader
	// AgentBootloaderFallback: as RamdiskBootloaderFallback, in the agent's
	// image.install_bootloader.
	AgentBootloaderFallback Kind = "agent.bootloader_fallback"
	AgentClean              Kind = "agent.clean"
	AgentPowerOff           Kind = "agent.poweroff"
	AgentReboot             Kind = "agent.reboot"
	AgentTokenMissing       Kind = "agent.token_missing"
)

// The conductor and the API.
const (
	ConductorState          Kind = "conductor.state" // Detail: "state" or "state → target"
	ConductorImageCached    Kind = "conductor.image_cached"
	ConductorPrepare        Kind = "conductor.prepare"
	ConductorPowerOn        Kind = "conductor.power_on"
	ConductorPowerOff       Kind = "conductor.power_off"
	ConductorPassDeployInfo Kind = "conductor.pass_deploy_info"
	ConductorISCSILogin     Kind = "conductor.iscsi_login"
	ConductorISCSILogout    Kind = "conductor.iscsi_logout"
	ConductorImageWritten   Kind = "conductor.image_written"
	ConductorWriteImage     Kind = "conductor.write_image"
	ConductorAgentBusy      Kind = "conductor.agent_busy"
	ConductorBootloader     Kind = "conductor.bootloader"
	ConductorNotify         Kind = "conductor.notify"
	ConductorReboot         Kind = "conductor.reboot"
	ConductorDiskWiped      Kind = "conductor.disk_wiped"
	ConductorActive         Kind = "conductor.active"
	ConductorFailed         Kind = "conductor.failed"
	ConductorRestart        Kind = "conductor.restart"
	ConductorDeployStep     Kind = "conductor.deploy_step"      // Detail: "iface.step (priority N)", as it starts
	ConductorDeployStepDone Kind = "conductor.deploy_step_done" // Detail: "iface.step"
	PortCreated             Kind = "api.port_created"           // ties a MAC to a node
	PortUpdated             Kind = "api.port_updated"
	PortDeleted             Kind = "api.port_deleted"
)

// known is every constant above, for ParseKind.
var known = func() map[Kind]bool {
	m := map[Kind]bool{}
	for _, k := range []Kind{
		MachineUp, MachinePowerOn, MachinePowerOff, MachineReset, MachineBoot, MachineBootFailed,
		MachineDHCP, MachineNBP, MachineKernel, MachineLoader, MachineNMI, MachineConsole, InstanceBooted,
		BMCChassisControl, BMCSetBootOptions, BMCRedfishRequest, BMCRedfishReset, BMCRedfishBoot, BMCRedfishMedia, BMCRedfishSessions,
		BMCRedfishBios, BMCRedfishSecureBoot, BMCRedfishManager,
		BMCRedfishTask, BMCRedfishFirmware,
		BMCRedfishLog,
		DHCPOffer, DHCPAck, DHCPNak, DHCPRelease, DHCPDecline, DHCPInform, TFTPFile, TFTPError, HTTPFile, HTTPError,
		ISCSILogin, ISCSILogout,
		RamdiskUp, RamdiskDisk, RamdiskISCSI, RamdiskPassDeployInfo, RamdiskPassBootloaderInstall, RamdiskNotice,
		RamdiskBootloader, RamdiskBootloaderFallback, RamdiskReboot, AgentUp, AgentLookup, AgentHeartbeat, AgentImage, AgentImageWritten,
		AgentBootloader, AgentBootloaderFallback, AgentClean, AgentPowerOff, AgentReboot, AgentTokenMissing,
		ConductorState, ConductorImageCached, ConductorPrepare, ConductorPowerOn, ConductorPowerOff,
		ConductorPassDeployInfo, ConductorISCSILogin, ConductorISCSILogout, ConductorImageWritten,
		ConductorWriteImage, ConductorAgentBusy, ConductorBootloader, ConductorNotify, ConductorReboot,
		ConductorDiskWiped, ConductorActive, ConductorFailed, ConductorRestart, ConductorDeployStep, ConductorDeployStepDone, PortCreated, PortUpdated, PortDeleted,
	} {
		m[k] = true
	}
	return m
}()

// ParseKind returns the Kind named s, for kinds that arrive as text: a real
// VM's ramdisk prints "milestone KIND detail" on its serial console, the
// only channel out of it. Fault kinds ("fault.LAYER.ACTION") come from the
// fault catalog and are accepted by IsFault.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, known[k]
}

// IsFault reports whether k is a fault's kind ("fault.LAYER.ACTION", the
// fault catalog's names).
func (k Kind) IsFault() bool { return strings.HasPrefix(string(k), "fault.") }
