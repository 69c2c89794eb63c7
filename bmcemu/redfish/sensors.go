package redfish

import (
	"fmt"
	"strconv"

	"github.com/metalbed/metalbed/bmcemu"
)

// Chassis Power and Thermal show the sensors of the IPMI BMC's SDR
// (bmcemu.Sensors): the same names, numbers, thresholds and readings, on
// and off, that `ipmitool sdr` and `ipmitool sensor` show.

// sensorReadings reads every sensor for the machine's power state.
func (sys *system) sensorReadings(q *request) ([]sensorReading, error) {
	ctx, cancel := q.machineCtx()
	defer cancel()
	on, err := sys.m.PowerState(ctx)
	if err != nil {
		return nil, fmt.Errorf("power state: %w", err)
	}
	var out []sensorReading
	for _, sn := range bmcemu.Sensors() {
		v, crossed := sn.Reading(on)
		out = append(out, sensorReading{Sensor: sn, value: v, crossed: crossed})
	}
	return out, nil
}

// sensorReading is one sensor and what it reads now.
type sensorReading struct {
	bmcemu.Sensor
	value   float64
	crossed bmcemu.Threshold
}

// status is the sensor's Status: Health from the thresholds it has crossed.
func (r sensorReading) status() *status {
	switch {
	case r.crossed&(bmcemu.LowerCritical|bmcemu.LowerNonRecoverable|bmcemu.UpperCritical|bmcemu.UpperNonRecoverable) != 0:
		return &status{State: "Enabled", Health: "Critical"}
	case r.crossed != 0:
		return &status{State: "Enabled", Health: "Warning"}
	}
	return enabledOK
}

// threshold is the threshold t in the sensor's unit, nil when the sensor
// has none.
// member names r as the i-th member of the array at prefix.
func (r sensorReading) member(prefix string, i int) sensorMember {
	id := strconv.Itoa(i)
	return sensorMember{ODataID: prefix + id, MemberID: id, Name: r.Name, SensorNumber: int(r.Number)}
}

// limits are r's thresholds, physical context and health.
func (r sensorReading) limits() sensorLimits {
	return sensorLimits{
		UpperThresholdNonCritical: r.threshold(bmcemu.UpperNonCritical),
		UpperThresholdCritical:    r.threshold(bmcemu.UpperCritical),
		UpperThresholdFatal:       r.threshold(bmcemu.UpperNonRecoverable),
		LowerThresholdNonCritical: r.threshold(bmcemu.LowerNonCritical),
		LowerThresholdCritical:    r.threshold(bmcemu.LowerCritical),
		LowerThresholdFatal:       r.threshold(bmcemu.LowerNonRecoverable),
		PhysicalContext:           physicalContext(r.Entity),
		Status:                    r.status(),
	}
}

func (r sensorReading) threshold(t bmcemu.Threshold) *float64 {
	v, ok := r.Thresholds[t]
	if !ok {
		return nil
	}
	return &v
}

// physicalContext is the Redfish PhysicalContext of an IPMI entity.
func physicalContext(entity uint8) string {
	switch entity {
	case bmcemu.EntityProcessor:
		return "CPU"
	case bmcemu.EntityAirInlet:
		return "Intake"
	case bmcemu.EntityFan:
		return "Fan"
	case bmcemu.EntityPowerUnit:
		return "PowerSupply"
	}
	return "SystemBoard"
}

func (s *Server) getThermal(q *request, sys *system) error {
	readings, err := sys.sensorReadings(q)
	if err != nil {
		return err
	}
	p := sys.chassisPath() + "/Thermal"
	v := thermal{
		resource:     resource{ODataID: p, ODataType: "#Thermal.v1_5_0.Thermal", ID: "Thermal", Name: "Thermal"},
		Temperatures: []temperature{},
		Fans:         []fan{},
		Status:       enabledOK,
	}
	for _, r := range readings {
		switch {
		case r.Type == bmcemu.SensorTemperature:
			v.Temperatures = append(v.Temperatures, temperature{
				sensorMember:   r.member(p+"#/Temperatures/", len(v.Temperatures)),
				ReadingCelsius: r.value,
				sensorLimits:   r.limits(),
			})
		case r.Type == bmcemu.SensorFan && r.Unit == "RPM":
			v.Fans = append(v.Fans, fan{
				sensorMember: r.member(p+"#/Fans/", len(v.Fans)),
				Reading:      r.value,
				ReadingUnits: "RPM",
				sensorLimits: r.limits(),
			})
		}
	}
	v.TempCount, v.FanCount = len(v.Temperatures), len(v.Fans)
	return q.ok(v)
}

// getPower shows the power sensors (those in Watts): what the machine
// consumes (PowerControl) is what its one power supply puts out.
func (s *Server) getPower(q *request, sys *system) error {
	readings, err := sys.sensorReadings(q)
	if err != nil {
		return err
	}
	p := sys.chassisPath() + "/Power"
	v := power{
		resource:      resource{ODataID: p, ODataType: "#Power.v1_5_0.Power", ID: "Power", Name: "Power"},
		PowerControl:  []powerControl{},
		PowerSupplies: []powerSupply{},
	}
	for _, r := range readings {
		if r.Unit != "Watts" {
			continue
		}
		id := strconv.Itoa(len(v.PowerControl))
		v.PowerControl = append(v.PowerControl, powerControl{
			ODataID: p + "#/PowerControl/" + id, MemberID: id, Name: r.Name,
			PowerConsumedWatts: r.value,
			Status:             r.status(),
		})
		v.PowerSupplies = append(v.PowerSupplies, powerSupply{
			ODataID: p + "#/PowerSupplies/" + id, MemberID: id, Name: "Power Supply " + id,
			LastPowerOutputWatts: r.value,
			Status:               r.status(),
		})
	}
	v.ControlCount, v.SupplyCount = len(v.PowerControl), len(v.PowerSupplies)
	return q.ok(v)
}

// Power and Thermal resources (DSP8010 Power.v1_5_0, Thermal.v1_5_0).
// Thresholds a sensor does not have are left out.

type thermal struct {
	resource
	Temperatures []temperature `json:"Temperatures"`
	TempCount    int           `json:"Temperatures@odata.count"`
	Fans         []fan         `json:"Fans"`
	FanCount     int           `json:"Fans@odata.count"`
	Status       *status       `json:"Status"`
}

type temperature struct {
	sensorMember
	ReadingCelsius float64 `json:"ReadingCelsius"`
	sensorLimits
}

type fan struct {
	sensorMember
	Reading      float64 `json:"Reading"`
	ReadingUnits string  `json:"ReadingUnits"`
	sensorLimits
}

// sensorMember is what a Thermal array member says of its sensor.
type sensorMember struct {
	ODataID      string `json:"@odata.id"`
	MemberID     string `json:"MemberId"`
	Name         string `json:"Name"`
	SensorNumber int    `json:"SensorNumber"`
}

// sensorLimits are a Thermal member's thresholds (only those the sensor
// has), where it sits and its health against them.
type sensorLimits struct {
	UpperThresholdNonCritical *float64 `json:"UpperThresholdNonCritical,omitempty"`
	UpperThresholdCritical    *float64 `json:"UpperThresholdCritical,omitempty"`
	UpperThresholdFatal       *float64 `json:"UpperThresholdFatal,omitempty"`
	LowerThresholdNonCritical *float64 `json:"LowerThresholdNonCritical,omitempty"`
	LowerThresholdCritical    *float64 `json:"LowerThresholdCritical,omitempty"`
	LowerThresholdFatal       *float64 `json:"LowerThresholdFatal,omitempty"`
	PhysicalContext           string   `json:"PhysicalContext"`
	Status                    *status  `json:"Status"`
}

type power struct {
	resource
	PowerControl  []powerControl `json:"PowerControl"`
	ControlCount  int            `json:"PowerControl@odata.count"`
	PowerSupplies []powerSupply  `json:"PowerSupplies"`
	SupplyCount   int            `json:"PowerSupplies@odata.count"`
}

type powerControl struct {
	ODataID            string  `json:"@odata.id"`
	MemberID           string  `json:"MemberId"`
	Name               string  `json:"Name"`
	PowerConsumedWatts float64 `json:"PowerConsumedWatts"`
	Status             *status `json:"Status"`
}

type powerSupply struct {
	ODataID              string  `json:"@odata.id"`
	MemberID             string  `json:"MemberId"`
	Name                 string  `json:"Name"`
	LastPowerOutputWatts float64 `json:"LastPowerOutputWatts"`
	Status               *status `json:"Status"`
}
