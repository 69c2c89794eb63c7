package bmcemu

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/bougou/go-ipmi/pkg/hal"
)

// sensor is one analog threshold sensor of the virtual machine. Readings are
// raw bytes; the value shown is raw × M (B = 0, exponents 0).
type sensor struct {
	number     uint8
	name       string
	sensorType uint8 // IPMI v2.0 table 42-3
	entityID   uint8 // IPMI v2.0 table 43-13
	unit       uint8 // IPMI v2.0 table 43-15
	m          uint8
	// thresholds in raw units: LNC, LCR, LNR, UNC, UCR, UNR.
	thresholds [6]uint8
	readable   uint8 // readable threshold mask, bits in Get Sensor Thresholds order
	// raw readings with the machine powered off and on.
	off, on uint8
}

// Threshold mask bits (IPMI v2.0 §35.9).
const (
	thLNC = 1 << iota
	thLCR
	thLNR
	thUNC
	thUCR
	thUNR
)

// machineSensors is the fixed sensor set of every virtual machine.
func machineSensors() []sensor {
	return []sensor{
		{number: 1, name: "Inlet Temp", sensorType: 0x01, entityID: 0x37, unit: 1, m: 1,
			thresholds: [6]uint8{0, 0, 0, 42, 47, 50}, readable: thUNC | thUCR | thUNR, off: 22, on: 24},
		{number: 2, name: "CPU Temp", sensorType: 0x01, entityID: 0x03, unit: 1, m: 1,
			thresholds: [6]uint8{0, 0, 0, 85, 95, 100}, readable: thUNC | thUCR | thUNR, off: 22, on: 46},
		{number: 3, name: "Fan1", sensorType: 0x04, entityID: 0x1d, unit: 18, m: 100,
			thresholds: [6]uint8{8, 6, 5, 0, 0, 0}, readable: thLNC | thLCR | thLNR, off: 0, on: 54},
		{number: 4, name: "Pwr Consumption", sensorType: 0x03, entityID: 0x15, unit: 6, m: 2,
			thresholds: [6]uint8{0, 0, 0, 200, 225, 0}, readable: thUNC | thUCR, off: 3, on: 87},
	}
}

// sdrRepo is the read-only SDR repository built from machineSensors; it
// backs go-ipmi's SDR repository commands (hal.SDRStore).
type sdrRepo struct {
	sensors []sensor
	records map[uint16][]byte
	ids     []uint16
}

var _ hal.SDRStore = (*sdrRepo)(nil)

// sharedSDR is the one repository every BMC serves: it is read-only and
// the same for every machine, so one copy, not one per BMC.
var sharedSDR = sync.OnceValue(newSDRRepo)

func newSDRRepo() *sdrRepo {
	r := &sdrRepo{sensors: machineSensors(), records: make(map[uint16][]byte)}
	for i, s := range r.sensors {
		id := uint16(i + 1)
		r.records[id] = fullSensorRecord(id, s)
		r.ids = append(r.ids, id)
	}
	return r
}

func (r *sdrRepo) sensor(number uint8) (sensor, bool) {
	for _, s := range r.sensors {
		if s.number == number {
			return s, true
		}
	}
	return sensor{}, false
}

func (r *sdrRepo) Read(_ context.Context, id uint16) ([]byte, error) {
	rec, ok := r.records[id]
	if !ok {
		return nil, hal.ErrNotFound
	}
	return slices.Clone(rec), nil
}

func (r *sdrRepo) Write(context.Context, uint16, []byte) error { return hal.ErrNotSupported }
func (r *sdrRepo) Delete(context.Context, uint16) error        { return hal.ErrNotSupported }
func (r *sdrRepo) RecordIDs(context.Context) ([]uint16, error) { return slices.Clone(r.ids), nil }

// fullSensorRecord encodes a Full Sensor Record (IPMI v2.0 table 43-1).
func fullSensorRecord(id uint16, s sensor) []byte {
	name := s.name
	if len(name) > 16 {
		name = name[:16]
	}
	rec := make([]byte, 48, 48+len(name))
	binary.LittleEndian.PutUint16(rec[0:2], id)
	rec[2] = 0x51 // SDR version 1.5 (IPMI 2.0)
	rec[3] = 0x01 // full sensor record
	rec[5] = 0x20 // owner: BMC
	rec[6] = 0x00 // LUN 0, channel 0
	rec[7] = s.number
	rec[8] = s.entityID
	rec[9] = 0x01          // entity instance 1, physical entity
	rec[10] = 0x7f         // init: scanning, events, thresholds, hysteresis, type; events+scanning enabled
	rec[11] = 0x44         // auto re-arm; thresholds readable per mask
	rec[12] = s.sensorType //
	rec[13] = 0x01         // event/reading type: threshold
	rec[18] = s.readable   // readable threshold mask
	rec[19] = 0x00         // settable threshold mask
	rec[20] = 0x00         // unsigned, no rate, no percentage
	rec[21] = s.unit
	rec[22] = 0x00 // no modifier unit
	rec[23] = 0x00 // linear
	rec[24] = s.m  // M (LS 8 bits); M MS bits, tolerance 0
	rec[28] = 0x00 // accuracy MS, exponent, direction unspecified
	rec[29] = 0x00 // R exp 0, B exp 0
	rec[30] = 0x00 // analog characteristic flags
	rec[34] = 0xff // sensor maximum
	rec[35] = 0x00 // sensor minimum
	rec[36] = s.thresholds[5]
	rec[37] = s.thresholds[4]
	rec[38] = s.thresholds[3]
	rec[39] = s.thresholds[2]
	rec[40] = s.thresholds[1]
	rec[41] = s.thresholds[0]
	rec[42], rec[43] = 1, 1 // hysteresis
	rec[47] = 0xc0 | uint8(len(name))
	rec = append(rec, name...)
	rec[4] = uint8(len(rec) - 5)
	return rec
}

// reading returns the raw reading and threshold status (Get Sensor Reading
// byte 3) of s for the machine's power state.
func (s sensor) reading(on bool) (raw, status uint8) {
	raw = s.off
	if on {
		raw = s.on
	}
	if !on {
		return raw, 0 // a machine that is off trips no threshold
	}
	t := s.thresholds
	check := func(mask uint8, hit bool) {
		if s.readable&mask != 0 && hit {
			status |= mask
		}
	}
	check(thLNC, raw <= t[0])
	check(thLCR, raw <= t[1])
	check(thLNR, raw <= t[2])
	check(thUNC, raw >= t[3])
	check(thUCR, raw >= t[4])
	check(thUNR, raw >= t[5])
	return raw, status
}
