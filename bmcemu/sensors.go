package bmcemu

// Sensor is one analog threshold sensor of a virtual machine as its SDR
// describes it and Get Sensor Reading reads it, in the units ipmitool
// shows. Other BMC protocols (the Redfish service's Thermal and Power)
// read the same sensors through Sensors, so both report the same values.
type Sensor struct {
	// Number is the sensor number; Name its ID string.
	Number uint8
	Name   string
	// Type is the IPMI sensor type (v2.0 table 42-3): SensorTemperature,
	// SensorCurrent or SensorFan here. Entity is the entity ID it
	// measures (table 43-13): EntityProcessor, EntityAirInlet, ….
	Type, Entity uint8
	// Unit is the base unit as ipmitool names it: "degrees C", "RPM",
	// "Watts".
	Unit string
	// Thresholds are the readable thresholds, in Unit.
	Thresholds map[Threshold]float64

	def sensor
}

// Threshold is a set of sensor thresholds, one bit each in Get Sensor
// Thresholds order (IPMI v2.0 §35.9).
type Threshold uint8

// Sensor thresholds.
const (
	LowerNonCritical    Threshold = thLNC
	LowerCritical       Threshold = thLCR
	LowerNonRecoverable Threshold = thLNR
	UpperNonCritical    Threshold = thUNC
	UpperCritical       Threshold = thUCR
	UpperNonRecoverable Threshold = thUNR
)

// IPMI sensor types (v2.0 table 42-3) of the machine's sensors.
const (
	SensorTemperature uint8 = 0x01
	SensorCurrent     uint8 = 0x03
	SensorFan         uint8 = 0x04
)

// IPMI entity IDs (v2.0 table 43-13) the machine's sensors measure.
const (
	EntityProcessor uint8 = 0x03
	EntityPowerUnit uint8 = 0x15
	EntityFan       uint8 = 0x1d
	EntityAirInlet  uint8 = 0x37
)

// sensorUnits names the base units (IPMI v2.0 table 43-15) the sensors use.
var sensorUnits = map[uint8]string{1: "degrees C", 6: "Watts", 18: "RPM"}

// Sensors returns the fixed sensor set of every virtual machine, the one
// the IPMI SDR repository lists.
func Sensors() []Sensor {
	var out []Sensor
	for _, d := range machineSensors() {
		s := Sensor{Number: d.number, Name: d.name, Type: d.sensorType, Entity: d.entityID,
			Unit: sensorUnits[d.unit], Thresholds: map[Threshold]float64{}, def: d}
		for i, t := range d.thresholds {
			if bit := Threshold(1 << i); d.readable&uint8(bit) != 0 {
				s.Thresholds[bit] = float64(t) * float64(d.m)
			}
		}
		out = append(out, s)
	}
	return out
}

// Reading is what Get Sensor Reading answers for the machine powered on or
// off: the value in Unit and the thresholds it has crossed (none while
// the machine is off).
func (s Sensor) Reading(on bool) (value float64, crossed Threshold) {
	raw, status := s.def.reading(on)
	return float64(raw) * float64(s.def.m), Threshold(status)
}
