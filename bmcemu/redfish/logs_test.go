package redfish

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// entries lists the SEL as Redfish shows it under logs (a LogServices
// path).
func (b *bed) entries(t *testing.T, logs string) []map[string]any {
	t.Helper()
	st, _, coll := b.do(t, "GET", logs+"/Sel/Entries", "basic", nil)
	if st != 200 {
		t.Fatalf("GET %s/Sel/Entries: %d %v", logs, st, coll)
	}
	var out []map[string]any
	for _, m := range coll["Members"].([]any) {
		out = append(out, m.(map[string]any))
	}
	if n := coll["Members@odata.count"]; n != float64(len(out)) {
		t.Errorf("Members@odata.count %v for %d members", n, len(out))
	}
	return out
}

func messages(es []map[string]any) []string {
	var m []string
	for _, e := range es {
		m = append(m, e["Message"].(string))
	}
	return m
}

func findEntry(es []map[string]any, msg string) map[string]any {
	for _, e := range es {
		if e["Message"] == msg {
			return e
		}
	}
	return nil
}

// TestSELSharedWithIPMI: one SEL, two protocols. What a Redfish reset
// records ipmitool lists, once; what ipmitool adds Redfish decodes; a
// Redfish ClearLog empties what ipmitool sees and `ipmitool sel clear`
// empties what Redfish lists.
func TestSELSharedWithIPMI(t *testing.T) {
	sel := bmcemu.NewSEL(0)
	b := startBed(t, bedOptions{plain: true, sel: sel})
	ipmi := startIPMI(t, b.machines[0], sel)
	logs := b.sysPath(0) + "/LogServices"

	if st, _, body := b.do(t, "POST", b.sysPath(0)+"/Actions/ComputerSystem.Reset", "basic", map[string]string{"ResetType": "On"}); st != 204 {
		t.Fatalf("reset On: %d %v", st, body)
	}
	list := ipmi.must("sel", "list")
	for _, want := range []string{"Power Unit #0x01 | Power off/down | Deasserted", "Button #0x04 | Power Button pressed", "System Firmwares #0x03 | System boot initiated"} {
		if n := strings.Count(list, want); n != 1 {
			t.Errorf("ipmitool sel list has %d × %q, want 1 (both protocols serve the machine):\n%s", n, want, list)
		}
	}
	es := b.entries(t, logs)
	if len(es) != 3 {
		t.Fatalf("Redfish lists %d entries, want 3 (power on, boot, button): %v", len(es), messages(es))
	}
	on := findEntry(es, "Power Unit: Power Off / Power Down deasserted")
	if on == nil || on["SensorType"] != "PowerUnit" || on["EntryCode"] != "Deassert" || on["SensorNumber"] != 1.0 ||
		on["EntryType"] != "SEL" || on["Severity"] != "OK" || on["MessageId"] != "0x00FFFF" || on["GeneratorId"] != "0x0020" {
		t.Errorf("power-on entry: %v (all: %v)", on, messages(es))
	}
	btn := findEntry(es, "Button / Switch: Power Button pressed")
	if btn == nil || btn["SensorType"] != "Button/Switch" || btn["EntryCode"] != "Assert" ||
		btn["Created"] != "2026-01-02T03:04:05+00:00" || btn["EventTimestamp"] != btn["Created"] {
		t.Errorf("button entry (stamped by the service's clock): %v", btn)
	}
	if findEntry(es, "System Firmware Progress: Starting operating system boot process") == nil {
		t.Errorf("no boot entry: %v", messages(es))
	}
	// Each entry is a resource of its own, Id the SEL record ID.
	id := btn["Id"].(string)
	if st, hdr, e := b.do(t, "GET", logs+"/Sel/Entries/"+id, "basic", nil); st != 200 || e["Message"] != btn["Message"] || hdr.Get("ETag") == "" {
		t.Errorf("GET entry %s: %d %v", id, st, e)
	}

	// ipmitool sel add: a temperature sensor crossing its upper critical
	// threshold going high (event data: trigger reading and threshold).
	rec := filepath.Join(t.TempDir(), "sel.txt")
	if err := os.WriteFile(rec, []byte("0x04 0x01 0x02 0x01 0x59 0x61 0x5f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ipmi.must("sel", "add", rec)
	temp := findEntry(b.entries(t, logs), "Temperature: Upper Critical going high")
	if temp == nil || temp["SensorType"] != "Temperature" || temp["SensorNumber"] != 2.0 || temp["EntryCode"] != "Upper Critical - going high" ||
		temp["Severity"] != "Critical" || temp["MessageId"] != "0x59615F" {
		t.Errorf("entry added by ipmitool: %v", temp)
	}

	// Redfish ClearLog (under the Manager: the same SEL) empties what IPMI lists.
	mgrLogs := "/redfish/v1/Managers/" + b.machines[0].hw.UUID + "/LogServices"
	if st, _, body := b.do(t, "POST", mgrLogs+"/Sel/Actions/LogService.ClearLog", "basic", map[string]any{}); st != 204 {
		t.Fatalf("ClearLog: %d %v", st, body)
	}
	if out := ipmi.must("sel", "info"); !strings.Contains(out, "Entries          : 0") {
		t.Errorf("after a Redfish ClearLog, ipmitool sel info:\n%s", out)
	}
	if es := b.entries(t, logs); len(es) != 0 {
		t.Errorf("after ClearLog: %v", messages(es))
	}
	// ipmitool power off and sel clear show up on the Redfish side.
	ipmi.must("power", "off")
	es = b.entries(t, logs)
	if findEntry(es, "Power Unit: Power Off / Power Down") == nil || findEntry(es, "Button / Switch: Power Button pressed") == nil {
		t.Errorf("after ipmitool power off: %v", messages(es))
	}
	ipmi.must("sel", "clear")
	if es := b.entries(t, logs); len(es) != 0 {
		t.Errorf("after ipmitool sel clear: %v", messages(es))
	}
	var cleared int
	for _, k := range b.kinds() {
		if k == events.BMCRedfishLog {
			cleared++
		}
	}
	if cleared != 1 {
		t.Errorf("%d %s events, want 1", cleared, events.BMCRedfishLog)
	}
}

// TestLogServiceResources: the LogService is linked from the System and
// the Manager, and describes the SEL; ClearLog honours LogEntriesETag; bad
// entry IDs are 404.
func TestLogServiceResources(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	sys := b.sysPath(0)
	_, _, s := b.do(t, "GET", sys, "basic", nil)
	_, _, mgr := b.do(t, "GET", "/redfish/v1/Managers/node-0", "basic", nil)
	for _, base := range []map[string]any{s, mgr} {
		logs, _ := get(base, "LogServices", "@odata.id").(string)
		if logs != base["@odata.id"].(string)+"/LogServices" {
			t.Fatalf("%v links LogServices %q", base["@odata.id"], logs)
		}
		st, _, coll := b.do(t, "GET", logs, "basic", nil)
		members, _ := coll["Members"].([]any)
		if st != 200 || len(members) != 1 || get(members[0].(map[string]any), "@odata.id") != logs+"/Sel" {
			t.Fatalf("%s: %d %v", logs, st, coll)
		}
		st, hdr, ls := b.do(t, "GET", logs+"/Sel", "basic", nil)
		if st != 200 || hdr.Get("ETag") == "" || ls["@odata.type"] != "#LogService.v1_1_3.LogService" || ls["Id"] != "Sel" ||
			ls["MaxNumberOfRecords"] != 128.0 || ls["OverWritePolicy"] != "WrapsWhenFull" || ls["LogEntryType"] != "SEL" ||
			ls["ServiceEnabled"] != true || ls["DateTime"] != "2026-01-02T03:04:05+00:00" ||
			get(ls, "Entries", "@odata.id") != logs+"/Sel/Entries" ||
			get(ls, "Actions", "#LogService.ClearLog", "target") != logs+"/Sel/Actions/LogService.ClearLog" {
			t.Errorf("%s/Sel: %d %v", logs, st, ls)
		}
	}
	logs := sys + "/LogServices"
	b.do(t, "POST", sys+"/Actions/ComputerSystem.Reset", "basic", map[string]string{"ResetType": "On"})
	_, hdr, _ := b.do(t, "GET", logs+"/Sel/Entries", "basic", nil)
	tag := hdr.Get("ETag")
	b.do(t, "POST", sys+"/Actions/ComputerSystem.Reset", "basic", map[string]string{"ResetType": "ForceOff"})
	st, _, body := b.do(t, "POST", logs+"/Sel/Actions/LogService.ClearLog", "basic", map[string]string{"LogEntriesETag": tag})
	checkError(t, "ClearLog with the ETag of entries since added to", st, 412, body)
	es := b.entries(t, logs)
	if len(es) == 0 {
		t.Fatal("a refused ClearLog emptied the log")
	}
	_, hdr, _ = b.do(t, "GET", logs+"/Sel/Entries", "basic", nil)
	if st, _, body := b.do(t, "POST", logs+"/Sel/Actions/LogService.ClearLog", "basic", map[string]string{"LogEntriesETag": hdr.Get("ETag")}); st != 204 {
		t.Fatalf("ClearLog with the current ETag: %d %v", st, body)
	}
	if es := b.entries(t, logs); len(es) != 0 {
		t.Errorf("after ClearLog: %v", messages(es))
	}
	for _, tt := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", logs + "/Sel/Entries/" + es[0]["Id"].(string), nil, 404}, // cleared
		{"GET", logs + "/Sel/Entries/abc", nil, 404},
		{"GET", logs + "/Sel/Entries/99999", nil, 404},
		{"GET", logs + "/Lclog", nil, 404},
		{"GET", logs + "/Sel/Actions/LogService.ClearLog", nil, 405},
		{"POST", logs + "/Sel/Actions/LogService.ClearLog", `{"Bogus": 1}`, 400},
		{"POST", logs + "/Sel/Actions/LogService.ClearLog", `{`, 400},
	} {
		st, _, body := b.do(t, tt.method, tt.path, "basic", tt.body)
		checkError(t, tt.method+" "+tt.path, st, tt.want, body)
	}
}

// TestLogEntryOf decodes SEL records of every shape into LogEntries.
func TestLogEntryOf(t *testing.T) {
	rec := func(typ byte, sensorType, num, dirType, d1, d2, d3 byte) bmcemu.SELRecord {
		r := bmcemu.SELRecord{0x07, 0x00, typ, 0xc0, 0x61, 0x56, 0x69, 0x20, 0x00, 0x04, sensorType, num, dirType, d1, d2, d3}
		return r
	}
	for _, tt := range []struct {
		name                            string
		rec                             bmcemu.SELRecord
		msg, sensorType, code, severity string
	}{
		{"power off", rec(2, 0x09, 1, 0x6f, 0x00, 0xff, 0xff), "Power Unit: Power Off / Power Down", "PowerUnit", "Assert", "OK"},
		{"AC lost", rec(2, 0x09, 1, 0x6f, 0x04, 0xff, 0xff), "Power Unit: AC lost / Power input lost", "PowerUnit", "Assert", "Critical"},
		{"reset", rec(2, 0x1d, 2, 0x6f, 0x01, 0xff, 0xff), "System Boot / Restart Initiated: Initiated by hard reset", "SystemBoot/Restart", "Assert", "OK"},
		{"NMI", rec(2, 0x13, 5, 0x6f, 0x00, 0xff, 0xff), "Critical Interrupt: Front Panel NMI / Diagnostic Interrupt", "Critical Interrupt", "Assert", "Warning"},
		{"fan low", rec(2, 0x04, 3, 0x01, 0x52, 0x05, 0x06), "Fan: Lower Critical going low", "Fan", "Lower Critical - going low", "Critical"},
		{"temp nc", rec(2, 0x01, 1, 0x01, 0x57, 0x2b, 0x2a), "Temperature: Upper Non-critical going high", "Temperature", "Upper Non-critical - going high", "Warning"},
		{"temp back", rec(2, 0x01, 1, 0x81, 0x57, 0x29, 0x2a), "Temperature: Upper Non-critical going high deasserted", "Temperature", "Upper Non-critical - going high", "OK"},
		{"unknown offset", rec(2, 0x14, 4, 0x6f, 0x0e, 0xff, 0xff), "Button / Switch: Event offset 0x0e", "Button/Switch", "Assert", "OK"},
		{"OEM sensor", rec(2, 0xd0, 9, 0x6f, 0x01, 0xff, 0xff), "OEM: Event offset 0x01", "OEM", "Assert", "OK"},
		{"OEM record", rec(0xe0, 0, 0, 0, 0, 0, 0), "OEM record 0xe0: c0 61 56 69 20 00 04 00 00 00 00 00 00", "OEM", "OEM", "OK"},
	} {
		e := logEntryOf(tt.rec, "/x/Entries")
		if e.Message != tt.msg || e.SensorType != tt.sensorType || e.EntryCode != tt.code || e.Severity != tt.severity ||
			e.ID != "7" || e.ODataID != "/x/Entries/7" || e.EntryType != "SEL" {
			t.Errorf("%s: %+v", tt.name, e)
		}
		if tt.rec.Timestamped() && e.Created != "2026-01-01T12:00:00+00:00" {
			t.Errorf("%s: Created %q", tt.name, e.Created)
		}
	}
}

// FuzzLogEntryOf: any 16 bytes a client adds with Add SEL Entry decode
// into a LogEntry with the properties a SEL entry must have.
func FuzzLogEntryOf(f *testing.F) {
	f.Add(make([]byte, 16))
	f.Add([]byte{1, 0, 2, 0, 0, 0, 0, 0x20, 0, 4, 0x09, 1, 0xef, 0x00, 0xff, 0xff})
	f.Add([]byte{1, 0, 2, 0, 0, 0, 0, 0x20, 0, 4, 0x01, 2, 0x01, 0x5b, 0x61, 0x5f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec bmcemu.SELRecord
		copy(rec[:], b)
		e := logEntryOf(rec, "/x")
		if e.Message == "" || e.SensorType == "" || e.EntryCode == "" || (e.SensorType == "OEM" && e.OemSensorType == "") {
			t.Fatalf("% x: %+v", rec, e)
		}
		switch e.Severity {
		case "OK", "Warning", "Critical":
		default:
			t.Fatalf("% x: severity %q", rec, e.Severity)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatal(err)
		}
	})
}
