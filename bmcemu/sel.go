package bmcemu

import (
	"encoding/binary"
	"sync"
	"time"
)

// SEL is one machine's System Event Log: bounded, the oldest record going
// when it is full, as IPMI v2.0 §31 describes it. One SEL may be shared by
// every BMC protocol serving the machine (Config.SEL, and the Redfish
// service's LogService), so what IPMI lists and clears Redfish lists and
// clears, and the other way round.
//
// Records come from three places: the machine's own events (power on and
// off, resets, boots), written by Follow; the actions a BMC carries out for
// a client (RecordControl); and records a client adds (Add, IPMI Add SEL
// Entry). Follow subscribes to the machine once however many protocols
// follow it, so each machine event is one record.
type SEL struct {
	mu          sync.Mutex
	entries     []SELRecord
	capacity    int
	nextID      uint16
	reservation uint16
	lastAdd     uint32
	lastErase   uint32
	clockOffset time.Duration // Set SEL Time minus real time
	written     counter       // metalbed_bmc_sel_entries_total

	followMu  sync.Mutex
	followers int
	unfollow  func()
}

// NewSEL returns an empty SEL of capacity records; capacity <= 0 means
// the default, 128.
func NewSEL(capacity int) *SEL {
	if capacity <= 0 {
		capacity = defaultSELCapacity
	}
	return &SEL{capacity: capacity, nextID: 1, written: nopCounter{}}
}

// SELRecord is one 16-byte System Event Log record (IPMI v2.0 table 32-1),
// record ID included.
type SELRecord [16]byte

// ID is the record ID the SEL assigned.
func (e SELRecord) ID() uint16 { return binary.LittleEndian.Uint16(e[0:2]) }

// Event record fields (IPMI v2.0 tables 29-6, 42-1 to 42-3).
const (
	selSensorPowerUnit   = 0x09
	selSensorFwProgress  = 0x0f
	selSensorCritIntr    = 0x13
	selSensorButton      = 0x14
	selSensorBootRestart = 0x1d
	selSensorSpecific    = 0x6f // event/reading type: sensor-specific
	selDeassert          = 0x80
)

// Capacity is the number of records the SEL holds before it wraps.
func (s *SEL) Capacity() int { return s.capacity }

// Entries returns a copy of the records, oldest first.
func (s *SEL) Entries() []SELRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SELRecord(nil), s.entries...)
}

// Add stores a record as Add SEL Entry does: the SEL assigns its record ID
// (returned) and, for the timestamped record types (below 0xE0), stamps it
// with the SEL's time at now.
func (s *SEL) Add(now time.Time, rec SELRecord) uint16 { return s.addRaw(now, rec[:]) }

// Clear empties the SEL and notes now as the last erase.
func (s *SEL) Clear(now time.Time) { s.clear(now) }

// Time is the SEL's clock at now: now unless Set SEL Time moved it.
func (s *SEL) Time(now time.Time) time.Time {
	return time.Unix(int64(s.time(now)), 0).UTC()
}

// Follow records m's events (power on and off, reset, boot) in the SEL
// until stop is called. Every BMC protocol serving m follows it while it
// serves: the first call subscribes to m and the others share that one
// subscription, which ends when every stop has been called, so each event
// is recorded once. An event without a time is stamped with the now of the
// call that subscribed. A SEL is one machine's log: later calls must name
// the machine of the first.
func (s *SEL) Follow(m Machine, now func() time.Time) (stop func()) {
	s.followMu.Lock()
	defer s.followMu.Unlock()
	s.followers++
	if s.followers == 1 {
		s.unfollow = m.Subscribe(func(ev MachineEvent) { s.recordEvent(ev, now) })
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.followMu.Lock()
			defer s.followMu.Unlock()
			s.followers--
			if s.followers == 0 {
				s.unfollow()
				s.unfollow = nil
			}
		})
	}
}

// countInto makes every record written count in c.
func (s *SEL) countInto(c counter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, unset := s.written.(nopCounter); unset {
		s.written = c
	}
}

// add stores a system event record and returns its record ID.
func (s *SEL) add(now time.Time, sensorType, sensorNum, dirType, d1, d2, d3 uint8) uint16 {
	var e SELRecord
	e[2] = 0x02 // system event record
	e[7], e[8] = 0x20, 0x00
	e[9] = 0x04 // EvM revision: IPMI 2.0
	e[10] = sensorType
	e[11] = sensorNum
	e[12] = dirType
	e[13], e[14], e[15] = d1, d2, d3
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := uint32(now.Add(s.clockOffset).Unix())
	binary.LittleEndian.PutUint32(e[3:7], ts)
	return s.insertLocked(e, ts)
}

// addRaw stores a record a client sent (Add SEL Entry), assigning its ID.
func (s *SEL) addRaw(now time.Time, rec []byte) uint16 {
	var e SELRecord
	copy(e[:], rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := uint32(now.Add(s.clockOffset).Unix())
	if e[2] < 0xe0 { // timestamped record types get the SEL's time
		binary.LittleEndian.PutUint32(e[3:7], ts)
	}
	return s.insertLocked(e, ts)
}

func (s *SEL) insertLocked(e SELRecord, ts uint32) uint16 {
	id := s.nextID
	s.nextID++
	if s.nextID == 0 || s.nextID == 0xffff {
		s.nextID = 1
	}
	binary.LittleEndian.PutUint16(e[0:2], id)
	if len(s.entries) >= s.capacity {
		copy(s.entries, s.entries[1:])
		s.entries = s.entries[:len(s.entries)-1]
	}
	s.entries = append(s.entries, e)
	s.lastAdd = ts
	s.written.Inc()
	return id
}

func (s *SEL) reserve() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reservation++
	if s.reservation == 0 {
		s.reservation = 1
	}
	return s.reservation
}

func (s *SEL) validReservation(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return id != 0 && id == s.reservation
}

// get returns the record with the given ID (0x0000 first, 0xFFFF last) and
// the ID of the record after it (0xFFFF when it is the last).
func (s *SEL) get(id uint16) (SELRecord, uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.entries)
	if n == 0 {
		return SELRecord{}, 0, false
	}
	i := -1
	switch id {
	case 0x0000:
		i = 0
	case 0xffff:
		i = n - 1
	default:
		for j, e := range s.entries {
			if e.ID() == id {
				i = j
				break
			}
		}
	}
	if i < 0 {
		return SELRecord{}, 0, false
	}
	next := uint16(0xffff)
	if i+1 < n {
		next = s.entries[i+1].ID()
	}
	return s.entries[i], next, true
}

func (s *SEL) clear(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = s.entries[:0]
	s.lastErase = uint32(now.Add(s.clockOffset).Unix())
}

type selInfo struct {
	count              int
	free               int
	lastAdd, lastErase uint32
}

func (s *SEL) info() selInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return selInfo{
		count:     len(s.entries),
		free:      (s.capacity - len(s.entries)) * 16,
		lastAdd:   s.lastAdd,
		lastErase: s.lastErase,
	}
}

func (s *SEL) time(now time.Time) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint32(now.Add(s.clockOffset).Unix())
}

func (s *SEL) setTime(now time.Time, t uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clockOffset = time.Unix(int64(t), 0).Sub(now)
}

// recordEvent writes a Machine event into the SEL.
func (s *SEL) recordEvent(ev MachineEvent, clock func() time.Time) {
	now := ev.Time
	if now.IsZero() {
		now = clock()
	}
	switch ev.Kind {
	case EventPowerOn:
		// Power Unit "Power Off / Power Down" deasserted.
		s.add(now, selSensorPowerUnit, 0x01, selDeassert|selSensorSpecific, 0x00, 0xff, 0xff)
	case EventPowerOff:
		s.add(now, selSensorPowerUnit, 0x01, selSensorSpecific, 0x00, 0xff, 0xff)
	case EventReset:
		// System Boot / Restart Initiated: "Initiated by hard reset".
		s.add(now, selSensorBootRestart, 0x02, selSensorSpecific, 0x01, 0xff, 0xff)
	case EventBoot:
		// System Firmware Progress: "Starting OS boot process" (0x13).
		s.add(now, selSensorFwProgress, 0x03, selSensorSpecific, 0xc2, 0x13, 0xff)
	}
}

// RecordControl writes the record of a power action a BMC carried out for
// a client, whichever protocol asked: the button press (or power cycle, or
// diagnostic interrupt) it amounts to. The machine's own events that
// follow are Follow's.
func (s *SEL) RecordControl(now time.Time, a PowerAction) {
	switch a {
	case PowerDown, PowerUp, SoftShutdown:
		// Button / Switch "Power Button pressed".
		s.add(now, selSensorButton, 0x04, selSensorSpecific, 0x00, 0xff, 0xff)
	case PowerCycle:
		// Power Unit "Power Cycle".
		s.add(now, selSensorPowerUnit, 0x01, selSensorSpecific, 0x01, 0xff, 0xff)
	case HardReset:
		// Button / Switch "Reset Button pressed".
		s.add(now, selSensorButton, 0x04, selSensorSpecific, 0x02, 0xff, 0xff)
	case DiagnosticInterrupt:
		// Critical Interrupt "Front Panel NMI / Diagnostic Interrupt".
		s.add(now, selSensorCritIntr, 0x05, selSensorSpecific, 0x00, 0xff, 0xff)
	}
}
