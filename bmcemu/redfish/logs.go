package redfish

import (
	"context"
	"fmt"
	"strconv"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// The machine's System Event Log as a Redfish LogService, "Sel", with one
// LogEntry per SEL record. The same log is served under the System (where
// redfishtool's `Systems Logs` and OpenBMC put it) and under the Manager
// (where iDRAC keeps its SEL), backed by the bmcemu.SEL the IPMI BMC uses:
// ClearLog empties what `ipmitool sel list` lists, and what IPMI adds
// Redfish shows.

const selServiceID = "Sel"

// logRoutes are the LogService routes under the System and the Manager.
func (s *Server) logRoutes() []route {
	var rs []route
	for _, base := range []struct {
		pattern string
		path    func(*system) string
	}{
		{"/redfish/v1/Systems/{sys}", (*system).path},
		{"/redfish/v1/Managers/{sys}", (*system).managerPath},
	} {
		at := func(h func(q *request, sys *system, logs string) error) func(*request) error {
			return s.onSystem(func(q *request, sys *system) error { return h(q, sys, base.path(sys)+"/LogServices") })
		}
		p := base.pattern + "/LogServices"
		rs = append(rs,
			route{"GET " + p, false, at(s.getLogServices)},
			route{"GET " + p + "/" + selServiceID, false, at(s.getLogService)},
			route{"GET " + p + "/" + selServiceID + "/Entries", false, at(s.getLogEntries)},
			route{"GET " + p + "/" + selServiceID + "/Entries/{entry}", false, at(s.getLogEntry)},
			route{"POST " + p + "/" + selServiceID + "/Actions/LogService.ClearLog", false, at(s.postClearLog)},
		)
	}
	return rs
}

func (s *Server) getLogServices(q *request, _ *system, logs string) error {
	return q.ok(newCollection(logs, "#LogServiceCollection.LogServiceCollection", "Log Service Collection",
		[]string{logs + "/" + selServiceID}))
}

func (s *Server) getLogService(q *request, sys *system, logs string) error {
	p := logs + "/" + selServiceID
	return q.ok(logService{
		resource:            resource{ODataID: p, ODataType: "#LogService.v1_1_3.LogService", ID: selServiceID, Name: "System Event Log"},
		Description:         "IPMI System Event Log of " + sys.hw.Name,
		MaxNumberOfRecords:  sys.sel.Capacity(),
		OverWritePolicy:     "WrapsWhenFull",
		DateTime:            sys.sel.Time(s.cfg.Now()).Format(dateTimeFormat),
		DateTimeLocalOffset: "+00:00",
		LogEntryType:        "SEL",
		ServiceEnabled:      true,
		Status:              enabledOK,
		Entries:             odataID{p + "/Entries"},
		Actions:             logServiceActions{Clear: action{Target: p + "/Actions/LogService.ClearLog"}},
	})
}

// dateTimeFormat is RFC 3339 with a numeric offset, as Redfish writes it.
const dateTimeFormat = "2006-01-02T15:04:05-07:00"

// entriesView is the LogEntry collection of the SEL as it is now; its
// members are expanded, as LogEntryCollection asks.
func entriesView(sys *system, logs string) logEntryCollection {
	p := logs + "/" + selServiceID + "/Entries"
	c := logEntryCollection{ODataID: p, ODataType: "#LogEntryCollection.LogEntryCollection", Name: "System Event Log Entries", Members: []logEntry{}}
	for _, rec := range sys.sel.Entries() {
		c.Members = append(c.Members, logEntryOf(rec, p))
	}
	c.Count = len(c.Members)
	return c
}

func (s *Server) getLogEntries(q *request, sys *system, logs string) error {
	return q.ok(entriesView(sys, logs))
}

func (s *Server) getLogEntry(q *request, sys *system, logs string) error {
	id, err := strconv.ParseUint(q.r.PathValue("entry"), 10, 16)
	if err == nil {
		for _, rec := range sys.sel.Entries() {
			if rec.ID() == uint16(id) {
				return q.ok(logEntryOf(rec, logs+"/"+selServiceID+"/Entries"))
			}
		}
	}
	return errNotFound(q.r.URL.Path)
}

// postClearLog empties the SEL. With LogEntriesETag (LogService v1_3) it
// clears only when the entries are still those the client saw.
func (s *Server) postClearLog(q *request, sys *system, logs string) error {
	var req clearLogRequest
	if err := decodeBody(q.r.Body, &req, true); err != nil {
		return err
	}
	if req.LogEntriesETag != nil {
		tag, err := etagOf(entriesView(sys, logs))
		if err != nil {
			return err
		}
		if !ifMatch([]string{*req.LogEntriesETag}, tag) {
			return errPrecondition()
		}
	}
	sys.sel.Clear(s.cfg.Now())
	sys.log().Info("sel cleared", "event", "sel-clear")
	s.record(sys, events.BMCRedfishLog, "clear SEL")
	return q.noContent()
}

// control carries out a power action and writes its record in the SEL, as
// the IPMI BMC does for Chassis Control; the machine's events that follow
// are recorded by the SEL itself (bmcemu.SEL.Follow).
func (sys *system) control(ctx context.Context, a bmcemu.PowerAction) error {
	if err := sys.m.Control(ctx, a); err != nil {
		return err
	}
	sys.sel.RecordControl(sys.srv.cfg.Now(), a)
	return nil
}

// logEntryOf decodes a SEL record into a LogEntry of the collection at
// entries.
func logEntryOf(rec bmcemu.SELRecord, entries string) logEntry {
	id := strconv.Itoa(int(rec.ID()))
	e := logEntry{
		resource:  resource{ODataID: entries + "/" + id, ODataType: "#LogEntry.v1_5_0.LogEntry", ID: id, Name: "SEL entry " + id},
		EntryType: "SEL",
		Severity:  severity(rec),
	}
	if rec.Timestamped() {
		e.Created = rec.Time().Format(dateTimeFormat)
		e.EventTimestamp = e.Created
	}
	if !rec.SystemEvent() {
		e.Message = fmt.Sprintf("%s: % x", rec.Description(), rec[3:])
		e.SensorType, e.OemSensorType = "OEM", fmt.Sprintf("Record type 0x%02x", rec.RecordType())
		e.EntryCode, e.OemLogEntryCode = "OEM", e.OemSensorType
		return e
	}
	e.Message = rec.SensorTypeName() + ": " + rec.Description()
	if rec.Deasserted() {
		e.Message += " deasserted"
	}
	d := rec.EventData()
	e.MessageID = fmt.Sprintf("0x%02X%02X%02X", d[0], d[1], d[2])
	e.GeneratorID = fmt.Sprintf("0x%04X", rec.GeneratorID())
	n := int(rec.SensorNumber())
	e.SensorNumber = &n
	e.SensorType = sensorTypes[rec.SensorType()]
	if e.SensorType == "" {
		e.SensorType, e.OemSensorType = "OEM", rec.SensorTypeName()
	}
	e.EntryCode = entryCode(rec)
	return e
}

// entryCode is the LogEntryCode of a system event record: the threshold
// crossing, or whether the state was asserted or deasserted.
func entryCode(rec bmcemu.SELRecord) string {
	t, high, ok := rec.Threshold()
	if !ok {
		if rec.Deasserted() {
			return "Deassert"
		}
		return "Assert"
	}
	dir := " - going low"
	if high {
		dir = " - going high"
	}
	return thresholdNames[t] + dir
}

// severity rates a record: threshold crossings by the threshold, failures
// and fatal interrupts Critical, a deassertion or anything else OK.
func severity(rec bmcemu.SELRecord) string {
	if !rec.SystemEvent() || rec.Deasserted() {
		return "OK"
	}
	if t, _, ok := rec.Threshold(); ok {
		if t == bmcemu.LowerNonCritical || t == bmcemu.UpperNonCritical {
			return "Warning"
		}
		return "Critical"
	}
	if rec.EventType() != 0x6f {
		return "OK"
	}
	switch off := rec.Offset(); rec.SensorType() {
	case 0x09: // Power Unit: AC lost, failures; predictive failure
		switch {
		case off >= 4 && off <= 6:
			return "Critical"
		case off == 7:
			return "Warning"
		}
	case 0x13: // Critical Interrupt: a diagnostic NMI asked for, or a fault
		if off == 0 {
			return "Warning"
		}
		return "Critical"
	}
	return "OK"
}

// thresholdNames are the thresholds as LogEntryCode names them.
var thresholdNames = map[bmcemu.Threshold]string{
	bmcemu.LowerNonCritical:    "Lower Non-critical",
	bmcemu.LowerCritical:       "Lower Critical",
	bmcemu.LowerNonRecoverable: "Lower Non-recoverable",
	bmcemu.UpperNonCritical:    "Upper Non-critical",
	bmcemu.UpperCritical:       "Upper Critical",
	bmcemu.UpperNonRecoverable: "Upper Non-recoverable",
}

// sensorTypes are LogEntry's SensorType values by IPMI sensor type (IPMI
// v2.0 table 42-3, as the LogEntry schema spells them).
var sensorTypes = map[uint8]string{
	0x01: "Temperature", 0x02: "Voltage", 0x03: "Current", 0x04: "Fan",
	0x05: "Physical Chassis Security", 0x06: "Platform Security Violation Attempt",
	0x07: "Processor", 0x08: "Power Supply / Converter", 0x09: "PowerUnit", 0x0a: "CoolingDevice",
	0x0b: "Other Units-based Sensor", 0x0c: "Memory", 0x0d: "Drive Slot/Bay",
	0x0e: "POST Memory Resize", 0x0f: "System Firmware Progress", 0x10: "Event Logging Disabled",
	0x11: "Watchdog", 0x12: "System Event", 0x13: "Critical Interrupt", 0x14: "Button/Switch",
	0x15: "Module/Board", 0x16: "Microcontroller/Coprocessor", 0x17: "Add-in Card",
	0x18: "Chassis", 0x19: "ChipSet", 0x1a: "Other FRU", 0x1b: "Cable/Interconnect",
	0x1c: "Terminator", 0x1d: "SystemBoot/Restart", 0x1e: "Boot Error",
	0x1f: "BaseOSBoot/InstallationStatus", 0x20: "OS Stop/Shutdown", 0x21: "Slot/Connector",
	0x22: "System ACPI PowerState", 0x23: "Watchdog", 0x24: "Platform Alert",
	0x25: "Entity Presence", 0x26: "Monitor ASIC/IC", 0x27: "LAN",
	0x28: "Management Subsystem Health", 0x29: "Battery", 0x2a: "Session Audit",
	0x2b: "Version Change", 0x2c: "FRUState",
}

// LogService and LogEntry resources (DSP8010 LogService.v1_1_3,
// LogEntry.v1_5_0).

type logService struct {
	resource
	Description         string            `json:"Description"`
	MaxNumberOfRecords  int               `json:"MaxNumberOfRecords"`
	OverWritePolicy     string            `json:"OverWritePolicy"`
	DateTime            string            `json:"DateTime"`
	DateTimeLocalOffset string            `json:"DateTimeLocalOffset"`
	LogEntryType        string            `json:"LogEntryType"`
	ServiceEnabled      bool              `json:"ServiceEnabled"`
	Status              *status           `json:"Status"`
	Entries             odataID           `json:"Entries"`
	Actions             logServiceActions `json:"Actions"`
}

type logServiceActions struct {
	Clear action `json:"#LogService.ClearLog"`
}

type logEntryCollection struct {
	ODataID   string     `json:"@odata.id"`
	ODataType string     `json:"@odata.type"`
	Name      string     `json:"Name"`
	Members   []logEntry `json:"Members"`
	Count     int        `json:"Members@odata.count"`
}

type logEntry struct {
	resource
	EntryType       string `json:"EntryType"`
	Created         string `json:"Created,omitempty"`
	EventTimestamp  string `json:"EventTimestamp,omitempty"`
	Severity        string `json:"Severity"`
	Message         string `json:"Message"`
	MessageID       string `json:"MessageId,omitempty"`
	GeneratorID     string `json:"GeneratorId,omitempty"`
	SensorType      string `json:"SensorType"`
	OemSensorType   string `json:"OemSensorType,omitempty"`
	SensorNumber    *int   `json:"SensorNumber,omitempty"`
	EntryCode       string `json:"EntryCode"`
	OemLogEntryCode string `json:"OemLogEntryCode,omitempty"`
}

type clearLogRequest struct {
	LogEntriesETag *string `json:"LogEntriesETag"`
}
