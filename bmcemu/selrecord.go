package bmcemu

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The fields of a SEL record (IPMI v2.0 table 32-1) and what they mean
// (tables 42-1 to 42-3), for the BMC protocols that show the SEL in words.

// RecordType is 0x02 for a system event record, 0xC0–0xDF for OEM records
// with a timestamp, 0xE0–0xFF for OEM records without.
func (e SELRecord) RecordType() uint8 { return e[2] }

// SystemEvent reports whether e is a system event record, the only kind
// whose sensor fields mean anything.
func (e SELRecord) SystemEvent() bool { return e[2] == 0x02 }

// Timestamped reports whether e carries a timestamp.
func (e SELRecord) Timestamped() bool { return e[2] < 0xe0 }

// Time is the record's timestamp (meaningful when Timestamped).
func (e SELRecord) Time() time.Time {
	return time.Unix(int64(binary.LittleEndian.Uint32(e[3:7])), 0).UTC()
}

// GeneratorID is the software or IPMB address that generated the event
// (0x0020: the BMC).
func (e SELRecord) GeneratorID() uint16 { return binary.LittleEndian.Uint16(e[7:9]) }

// SensorType is the IPMI sensor type (table 42-3).
func (e SELRecord) SensorType() uint8 { return e[10] }

// SensorNumber is the number of the sensor that saw the event.
func (e SELRecord) SensorNumber() uint8 { return e[11] }

// Deasserted reports whether the event is a deassertion.
func (e SELRecord) Deasserted() bool { return e[12]&0x80 != 0 }

// EventType is the event/reading type code: 0x01 threshold, 0x02–0x0C
// generic discrete, 0x6F sensor-specific.
func (e SELRecord) EventType() uint8 { return e[12] & 0x7f }

// EventData is event data bytes 1 to 3.
func (e SELRecord) EventData() [3]byte { return [3]byte{e[13], e[14], e[15]} }

// Offset is the event offset of event data 1: which state or threshold.
func (e SELRecord) Offset() uint8 { return e[13] & 0x0f }

// Threshold reports, for a threshold event, the threshold crossed and
// whether the reading was going high.
func (e SELRecord) Threshold() (t Threshold, goingHigh, ok bool) {
	if !e.SystemEvent() || e.EventType() != 0x01 || e.Offset() > 0x0b {
		return 0, false, false
	}
	return Threshold(1 << (e.Offset() / 2)), e.Offset()%2 == 1, true
}

// SensorTypeName names e's sensor type as the IPMI specification does
// (table 42-3), "OEM" for the OEM range.
func (e SELRecord) SensorTypeName() string {
	if int(e.SensorType()) < len(sensorTypeNames) && sensorTypeNames[e.SensorType()] != "" {
		return sensorTypeNames[e.SensorType()]
	}
	if e.SensorType() >= 0xc0 {
		return "OEM"
	}
	return fmt.Sprintf("Sensor type 0x%02x", e.SensorType())
}

// Description says what happened in words: the threshold crossing, or the
// sensor-specific state of the offset ("Power Off / Power Down"), or the
// raw offset for states this BMC does not name.
func (e SELRecord) Description() string {
	if !e.SystemEvent() {
		return fmt.Sprintf("OEM record 0x%02x", e.RecordType())
	}
	off := e.Offset()
	switch t := e.EventType(); {
	case t == 0x01:
		if int(off) < len(thresholdEvents) {
			return thresholdEvents[off]
		}
	case t == selSensorSpecific:
		if e.SensorType() == selSensorFwProgress && off == 0x02 && e[13]&0xc0 == 0xc0 {
			if p, ok := firmwareProgress[e[14]]; ok {
				return p
			}
		}
		if s, ok := sensorSpecificEvents[e.SensorType()]; ok && int(off) < len(s) {
			return s[off]
		}
	}
	return fmt.Sprintf("Event offset 0x%02x", off)
}

// sensorTypeNames are IPMI v2.0 table 42-3's sensor types.
var sensorTypeNames = [...]string{
	0x01: "Temperature", 0x02: "Voltage", 0x03: "Current", 0x04: "Fan",
	0x05: "Physical Security", 0x06: "Platform Security Violation Attempt",
	0x07: "Processor", 0x08: "Power Supply", 0x09: "Power Unit", 0x0a: "Cooling Device",
	0x0b: "Other Units-based Sensor", 0x0c: "Memory", 0x0d: "Drive Slot (Bay)",
	0x0e: "POST Memory Resize", 0x0f: "System Firmware Progress", 0x10: "Event Logging Disabled",
	0x11: "Watchdog 1", 0x12: "System Event", 0x13: "Critical Interrupt", 0x14: "Button / Switch",
	0x15: "Module / Board", 0x16: "Microcontroller / Coprocessor", 0x17: "Add-in Card",
	0x18: "Chassis", 0x19: "Chip Set", 0x1a: "Other FRU", 0x1b: "Cable / Interconnect",
	0x1c: "Terminator", 0x1d: "System Boot / Restart Initiated", 0x1e: "Boot Error",
	0x1f: "Base OS Boot / Installation Status", 0x20: "OS Stop / Shutdown", 0x21: "Slot / Connector",
	0x22: "System ACPI Power State", 0x23: "Watchdog 2", 0x24: "Platform Alert",
	0x25: "Entity Presence", 0x26: "Monitor ASIC / IC", 0x27: "LAN",
	0x28: "Management Subsystem Health", 0x29: "Battery", 0x2a: "Session Audit",
	0x2b: "Version Change", 0x2c: "FRU State",
}

// thresholdEvents are the threshold event offsets (table 42-2).
var thresholdEvents = [...]string{
	"Lower Non-critical going low", "Lower Non-critical going high",
	"Lower Critical going low", "Lower Critical going high",
	"Lower Non-recoverable going low", "Lower Non-recoverable going high",
	"Upper Non-critical going low", "Upper Non-critical going high",
	"Upper Critical going low", "Upper Critical going high",
	"Upper Non-recoverable going low", "Upper Non-recoverable going high",
}

// sensorSpecificEvents are the sensor-specific offsets (table 42-3) of the
// sensor types a machine's BMC writes or a client commonly adds.
var sensorSpecificEvents = map[uint8][]string{
	0x09: {"Power Off / Power Down", "Power Cycle", "240VA Power Down", "Interlock Power Down",
		"AC lost / Power input lost", "Soft Power Control Failure", "Power Unit Failure detected",
		"Predictive Failure"},
	0x0f: {"System Firmware Error (POST Error)", "System Firmware Hang", "System Firmware Progress"},
	0x10: {"Correctable Memory Error Logging Disabled", "Event Type Logging Disabled",
		"Log Area Reset/Cleared", "All Event Logging Disabled", "SEL Full", "SEL Almost Full",
		"Correctable Machine Check Error Logging Disabled"},
	0x12: {"System Reconfigured", "OEM System Boot Event", "Undetermined system hardware failure",
		"Entry added to Auxiliary Log", "PEF Action", "Timestamp Clock Synch"},
	0x13: {"Front Panel NMI / Diagnostic Interrupt", "Bus Timeout", "I/O channel check NMI",
		"Software NMI", "PCI PERR", "PCI SERR", "EISA Fail Safe Timeout", "Bus Correctable Error",
		"Bus Uncorrectable Error", "Fatal NMI", "Bus Fatal Error", "Bus Degraded"},
	0x14: {"Power Button pressed", "Sleep Button pressed", "Reset Button pressed",
		"FRU latch open", "FRU service request button"},
	0x1d: {"Initiated by power up", "Initiated by hard reset", "Initiated by warm reset",
		"User requested PXE boot", "Automatic boot to diagnostic",
		"OS / run-time software initiated hard reset", "OS / run-time software initiated warm reset",
		"System Restart"},
}

// firmwareProgress names the System Firmware Progress codes (event data 2
// of offset 0x02, table 42-3) a boot goes through.
var firmwareProgress = map[uint8]string{
	0x01: "Memory initialization", 0x02: "Hard-disk initialization",
	0x03: "Secondary processor(s) initialization", 0x04: "User authentication",
	0x05: "User-initiated system setup", 0x06: "USB resource configuration",
	0x07: "PCI resource configuration", 0x08: "Option ROM initialization",
	0x09: "Video initialization", 0x0a: "Cache initialization", 0x0b: "SM Bus initialization",
	0x0c: "Keyboard controller initialization", 0x0d: "Embedded controller/management controller initialization",
	0x0e: "Docking station attachment", 0x0f: "Enabling docking station", 0x10: "Docking station ejection",
	0x11: "Disabling docking station", 0x12: "Calling operating system wake-up vector",
	0x13: "Starting operating system boot process", 0x14: "Baseboard or motherboard initialization",
	0x16: "Floppy initialization", 0x17: "Keyboard test", 0x18: "Pointing device test",
	0x19: "Primary processor initialization",
}
