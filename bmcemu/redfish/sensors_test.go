package redfish

import (
	"strconv"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/bmcemu"
)

// ipmiSensor is one row of `ipmitool sensor`.
type ipmiSensor struct {
	value  float64
	unit   string
	status string
	// thresholds by column: lnr, lcr, lnc, unc, ucr, unr; absent ones
	// ("na") are missing.
	thresholds map[string]float64
}

// parseIpmitoolSensor reads `ipmitool sensor`: name | value | unit |
// status | lnr | lcr | lnc | unc | ucr | unr.
func parseIpmitoolSensor(t *testing.T, out string) map[string]ipmiSensor {
	t.Helper()
	cols := []string{"lnr", "lcr", "lnc", "unc", "ucr", "unr"}
	m := map[string]ipmiSensor{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 10 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("ipmitool sensor %q: reading %q", line, f[1])
		}
		s := ipmiSensor{value: v, unit: f[2], status: f[3], thresholds: map[string]float64{}}
		for i, c := range cols {
			if x, err := strconv.ParseFloat(f[4+i], 64); err == nil {
				s.thresholds[c] = x
			}
		}
		m[f[0]] = s
	}
	return m
}

// TestSensorsMatchIPMI: Chassis Thermal and Power read what `ipmitool
// sensor` reads for the same machine, powered off and on: readings,
// thresholds, sensor numbers and health.
func TestSensorsMatchIPMI(t *testing.T) {
	b := startBed(t, bedOptions{plain: true})
	ipmi := startIPMI(t, b.machines[0], nil)
	chs := "/redfish/v1/Chassis/" + b.machines[0].hw.UUID
	for _, power := range []string{"off", "on"} {
		ipmi.must("power", power)
		sensors := parseIpmitoolSensor(t, ipmi.must("sensor"))
		if len(sensors) != len(bmcemu.Sensors()) {
			t.Fatalf("ipmitool lists %d sensors, bmcemu.Sensors %d:\n%v", len(sensors), len(bmcemu.Sensors()), sensors)
		}
		_, _, th := b.do(t, "GET", chs+"/Thermal", "basic", nil)
		_, _, pw := b.do(t, "GET", chs+"/Power", "basic", nil)
		seen := map[string]bool{}
		check := func(kind string, m map[string]any, reading string, thresholds map[string]string) {
			t.Helper()
			name, _ := m["Name"].(string)
			ip, ok := sensors[name]
			if !ok {
				t.Errorf("power %s: Redfish %s %q is no IPMI sensor", power, kind, name)
				return
			}
			seen[name] = true
			if m[reading] != ip.value {
				t.Errorf("power %s: %s %s = %v, ipmitool reads %v %s", power, name, reading, m[reading], ip.value, ip.unit)
			}
			for col, prop := range thresholds {
				want, has := ip.thresholds[col]
				if got, ok := m[prop]; ok != has || (has && got != want) {
					t.Errorf("power %s: %s %s = %v, ipmitool %s %v (present %v)", power, name, prop, got, col, want, has)
				}
			}
			health := map[string]string{"ok": "OK", "nc": "Warning", "cr": "Critical", "nr": "Critical"}[ip.status]
			if h := get(m, "Status", "Health"); h != health {
				t.Errorf("power %s: %s health %v, ipmitool status %q", power, name, h, ip.status)
			}
		}
		upper := map[string]string{"unc": "UpperThresholdNonCritical", "ucr": "UpperThresholdCritical", "unr": "UpperThresholdFatal"}
		lower := map[string]string{"lnc": "LowerThresholdNonCritical", "lcr": "LowerThresholdCritical", "lnr": "LowerThresholdFatal"}
		both := map[string]string{}
		for k, v := range upper {
			both[k] = v
		}
		for k, v := range lower {
			both[k] = v
		}
		for _, x := range th["Temperatures"].([]any) {
			check("temperature", x.(map[string]any), "ReadingCelsius", both)
		}
		for _, x := range th["Fans"].([]any) {
			f := x.(map[string]any)
			if f["ReadingUnits"] != "RPM" {
				t.Errorf("fan %v ReadingUnits %v", f["Name"], f["ReadingUnits"])
			}
			check("fan", f, "Reading", both)
		}
		for _, x := range pw["PowerControl"].([]any) {
			check("power control", x.(map[string]any), "PowerConsumedWatts", nil)
		}
		for _, x := range pw["PowerSupplies"].([]any) {
			ps := x.(map[string]any)
			if w := sensors["Pwr Consumption"].value; ps["LastPowerOutputWatts"] != w {
				t.Errorf("power %s: supply output %v, consumption %v", power, ps["LastPowerOutputWatts"], w)
			}
		}
		for name := range sensors {
			if !seen[name] {
				t.Errorf("power %s: IPMI sensor %q not in Thermal or Power", power, name)
			}
		}
	}
	// Powered on, the numbers are those of a running machine.
	_, _, th := b.do(t, "GET", chs+"/Thermal", "basic", nil)
	cpu := th["Temperatures"].([]any)[1].(map[string]any)
	if cpu["Name"] != "CPU Temp" || cpu["ReadingCelsius"] != 46.0 || cpu["SensorNumber"] != 2.0 || cpu["PhysicalContext"] != "CPU" {
		t.Errorf("CPU Temp on: %v", cpu)
	}
}

// TestSensorsExport: bmcemu.Sensors reads in units what the SDR encodes
// raw, and trips thresholds only while the machine is on.
func TestSensorsExport(t *testing.T) {
	byName := map[string]bmcemu.Sensor{}
	for _, s := range bmcemu.Sensors() {
		byName[s.Name] = s
	}
	fan := byName["Fan1"]
	if fan.Unit != "RPM" || fan.Type != bmcemu.SensorFan || fan.Thresholds[bmcemu.LowerCritical] != 600 || len(fan.Thresholds) != 3 {
		t.Errorf("Fan1: %+v", fan)
	}
	if v, crossed := fan.Reading(true); v != 5400 || crossed != 0 {
		t.Errorf("Fan1 on: %v %v", v, crossed)
	}
	if v, crossed := fan.Reading(false); v != 0 || crossed != 0 {
		t.Errorf("Fan1 off: %v %v (an off machine trips nothing)", v, crossed)
	}
	if w, _ := byName["Pwr Consumption"].Reading(true); w != 174 || byName["Pwr Consumption"].Unit != "Watts" {
		t.Errorf("Pwr Consumption on: %v", w)
	}
}
