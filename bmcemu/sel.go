package bmcemu

import (
	"encoding/binary"
	"sync"
	"time"
)

// selEntry is one 16-byte System Event Log record (IPMI v2.0 table 32-1).
type selEntry [16]byte

func (e selEntry) id() uint16 { return binary.LittleEndian.Uint16(e[0:2]) }

// selStore is a bounded System Event Log: when full the oldest record goes.
type selStore struct {
	mu          sync.Mutex
	entries     []selEntry
	capacity    int
	nextID      uint16
	reservation uint16
	lastAdd     uint32
	lastErase   uint32
	clockOffset time.Duration // Set SEL Time minus real time
}

func newSELStore(capacity int) *selStore {
	return &selStore{capacity: capacity, nextID: 1}
}

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

// add stores a system event record and returns its record ID.
func (s *selStore) add(now time.Time, sensorType, sensorNum, dirType, d1, d2, d3 uint8) uint16 {
	var e selEntry
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
func (s *selStore) addRaw(now time.Time, rec []byte) uint16 {
	var e selEntry
	copy(e[:], rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := uint32(now.Add(s.clockOffset).Unix())
	if e[2] < 0xe0 { // timestamped record types get the SEL's time
		binary.LittleEndian.PutUint32(e[3:7], ts)
	}
	return s.insertLocked(e, ts)
}

func (s *selStore) insertLocked(e selEntry, ts uint32) uint16 {
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
	return id
}

func (s *selStore) reserve() uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reservation++
	if s.reservation == 0 {
		s.reservation = 1
	}
	return s.reservation
}

func (s *selStore) validReservation(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return id != 0 && id == s.reservation
}

// get returns the record with the given ID (0x0000 first, 0xFFFF last) and
// the ID of the record after it (0xFFFF when it is the last).
func (s *selStore) get(id uint16) (selEntry, uint16, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.entries)
	if n == 0 {
		return selEntry{}, 0, false
	}
	i := -1
	switch id {
	case 0x0000:
		i = 0
	case 0xffff:
		i = n - 1
	default:
		for j, e := range s.entries {
			if e.id() == id {
				i = j
				break
			}
		}
	}
	if i < 0 {
		return selEntry{}, 0, false
	}
	next := uint16(0xffff)
	if i+1 < n {
		next = s.entries[i+1].id()
	}
	return s.entries[i], next, true
}

func (s *selStore) clear(now time.Time) {
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

func (s *selStore) info() selInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return selInfo{
		count:     len(s.entries),
		free:      (s.capacity - len(s.entries)) * 16,
		lastAdd:   s.lastAdd,
		lastErase: s.lastErase,
	}
}

func (s *selStore) time(now time.Time) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint32(now.Add(s.clockOffset).Unix())
}

func (s *selStore) setTime(now time.Time, t uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clockOffset = time.Unix(int64(t), 0).Sub(now)
}

// recordMachineEvent writes a Machine event into the SEL.
func (s *Server) recordMachineEvent(ev MachineEvent) {
	now := ev.Time
	if now.IsZero() {
		now = s.cfg.Now()
	}
	switch ev.Kind {
	case EventPowerOn:
		// Power Unit "Power Off / Power Down" deasserted.
		s.sel.add(now, selSensorPowerUnit, 0x01, selDeassert|selSensorSpecific, 0x00, 0xff, 0xff)
	case EventPowerOff:
		s.sel.add(now, selSensorPowerUnit, 0x01, selSensorSpecific, 0x00, 0xff, 0xff)
	case EventReset:
		// System Boot / Restart Initiated: "Initiated by hard reset".
		s.sel.add(now, selSensorBootRestart, 0x02, selSensorSpecific, 0x01, 0xff, 0xff)
	case EventBoot:
		// System Firmware Progress: "Starting OS boot process" (0x13).
		s.sel.add(now, selSensorFwProgress, 0x03, selSensorSpecific, 0xc2, 0x13, 0xff)
	default:
		return
	}
	s.metrics.selEntries.Inc()
	s.log.Debug("sel entry", "event", string(ev.Kind))
}

// recordControl writes the Chassis Control action a client requested.
func (s *Server) recordControl(a PowerAction) {
	now := s.cfg.Now()
	switch a {
	case PowerDown, PowerUp, SoftShutdown:
		// Button / Switch "Power Button pressed".
		s.sel.add(now, selSensorButton, 0x04, selSensorSpecific, 0x00, 0xff, 0xff)
	case PowerCycle:
		// Power Unit "Power Cycle".
		s.sel.add(now, selSensorPowerUnit, 0x01, selSensorSpecific, 0x01, 0xff, 0xff)
	case HardReset:
		// Button / Switch "Reset Button pressed".
		s.sel.add(now, selSensorButton, 0x04, selSensorSpecific, 0x02, 0xff, 0xff)
	case DiagnosticInterrupt:
		// Critical Interrupt "Front Panel NMI / Diagnostic Interrupt".
		s.sel.add(now, selSensorCritIntr, 0x05, selSensorSpecific, 0x00, 0xff, 0xff)
	default:
		return
	}
	s.metrics.selEntries.Inc()
}
