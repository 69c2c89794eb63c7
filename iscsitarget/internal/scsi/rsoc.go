package scsi

import "encoding/binary"

const (
	OpMaintenanceIn = 0xa3
	saReportOpcodes = 0x0c
)

// opUsage describes one supported command for REPORT SUPPORTED OPERATION
// CODES: its service action (when sa is true) and its CDB usage data, the
// bits of each CDB byte this LU examines and honours.
type opUsage struct {
	op    byte
	sa    bool
	saVal uint16
	usage []byte
}

func u(b ...byte) []byte { return b }

// usageTable lists every command the LU implements; it must agree with
// the dispatch table (TestUsageTableMatchesDispatch checks).
func usageTable() []opUsage {
	ff4 := []byte{0xff, 0xff, 0xff, 0xff}
	ff8 := append(ff4, ff4...)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	rw10 := func(op, flags byte) []byte { return cat(u(op, flags), ff4, u(0, 0xff, 0xff, 0)) }
	rw12 := func(op, flags byte) []byte { return cat(u(op, flags), ff4, ff4, u(0, 0)) }
	rw16 := func(op, flags byte) []byte { return cat(u(op, flags), ff8, ff4, u(0, 0)) }
	return []opUsage{
		{op: OpTestUnitReady, usage: u(OpTestUnitReady, 0, 0, 0, 0, 0)},
		{op: OpRequestSense, usage: u(OpRequestSense, 0, 0, 0, 0xff, 0)},
		{op: OpRead6, usage: u(OpRead6, 0x1f, 0xff, 0xff, 0xff, 0)},
		{op: OpWrite6, usage: u(OpWrite6, 0x1f, 0xff, 0xff, 0xff, 0)},
		{op: OpInquiry, usage: u(OpInquiry, 0x01, 0xff, 0xff, 0xff, 0)},
		{op: OpModeSense6, usage: u(OpModeSense6, 0x08, 0xff, 0xff, 0xff, 0)},
		{op: OpStartStopUnit, usage: u(OpStartStopUnit, 0x01, 0, 0, 0x03, 0)},
		{op: OpPreventAllow, usage: u(OpPreventAllow, 0, 0, 0, 0, 0)},
		{op: OpReadCapacity10, usage: u(OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{op: OpRead10, usage: rw10(OpRead10, 0x18)},
		{op: OpWrite10, usage: rw10(OpWrite10, 0x18)},
		{op: OpWriteVerify10, usage: rw10(OpWriteVerify10, 0x12)},
		{op: OpVerify10, usage: rw10(OpVerify10, 0x16)},
		{op: OpPrefetch10, usage: rw10(OpPrefetch10, 0x02)},
		{op: OpSynchronizeCache10, usage: rw10(OpSynchronizeCache10, 0x02)},
		{op: OpWriteSame10, usage: rw10(OpWriteSame10, 0)},
		{op: OpModeSense10, usage: u(OpModeSense10, 0x08, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0)},
		{op: OpRead16, usage: rw16(OpRead16, 0x18)},
		{op: OpCompareAndWrite, usage: cat(u(OpCompareAndWrite, 0x18), ff8, u(0, 0, 0, 0xff, 0, 0))},
		{op: OpWrite16, usage: rw16(OpWrite16, 0x18)},
		{op: OpOrWrite16, usage: rw16(OpOrWrite16, 0x18)},
		{op: OpWriteVerify16, usage: rw16(OpWriteVerify16, 0x12)},
		{op: OpVerify16, usage: rw16(OpVerify16, 0x16)},
		{op: OpPrefetch16, usage: rw16(OpPrefetch16, 0x02)},
		{op: OpSynchronizeCache16, usage: rw16(OpSynchronizeCache16, 0x02)},
		{op: OpWriteSame16, usage: rw16(OpWriteSame16, 0x01)},
		{op: OpServiceActionIn16, sa: true, saVal: saReadCapacity16,
			usage: cat(u(OpServiceActionIn16, saReadCapacity16), make([]byte, 8), ff4, u(0, 0))},
		{op: OpReportLUNs, usage: cat(u(OpReportLUNs, 0, 0xff, 0, 0, 0), ff4, u(0, 0))},
		{op: OpRead12, usage: rw12(OpRead12, 0x18)},
		{op: OpWrite12, usage: rw12(OpWrite12, 0x18)},
		{op: OpWriteVerify12, usage: rw12(OpWriteVerify12, 0x12)},
		{op: OpVerify12, usage: rw12(OpVerify12, 0x16)},
		{op: OpReserve6, usage: u(OpReserve6, 0, 0, 0, 0, 0)},
		{op: OpRelease6, usage: u(OpRelease6, 0, 0, 0, 0, 0)},
		{op: OpMaintenanceIn, sa: true, saVal: saReportOpcodes,
			usage: cat(u(OpMaintenanceIn, saReportOpcodes, 0x87, 0xff, 0xff, 0xff), ff4, u(0, 0))},
	}
}

// timeouts is a command timeouts descriptor: no specific timeouts.
func timeouts() []byte { return []byte{0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} }

// maintenanceIn serves REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
func (lu *LU) maintenanceIn(c *Command) Result {
	if c.CDB[1]&0x1f != saReportOpcodes {
		return invalidField(1)
	}
	rctd := c.CDB[2]&0x80 != 0
	options := c.CDB[2] & 0x07
	op := c.CDB[3]
	sa := binary.BigEndian.Uint16(c.CDB[4:])
	alloc := binary.BigEndian.Uint32(c.CDB[6:])
	var b []byte
	switch options {
	case 0: // all commands
		b = make([]byte, 4)
		for _, e := range lu.usage {
			d := make([]byte, 8)
			d[0] = e.op
			if e.sa {
				binary.BigEndian.PutUint16(d[2:], e.saVal)
				d[5] |= 0x01 // SERVACTV
			}
			if rctd {
				d[5] |= 0x02 // CTDP
			}
			binary.BigEndian.PutUint16(d[6:], uint16(len(e.usage)))
			b = append(b, d...)
			if rctd {
				b = append(b, timeouts()...)
			}
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	case 1, 2, 3: // one command: by opcode, by opcode and service action, either
		var found *opUsage
		hasSA := false
		for i := range lu.usage {
			e := &lu.usage[i]
			if e.op != op {
				continue
			}
			hasSA = e.sa
			if !e.sa || e.saVal == sa {
				found = e
			}
		}
		switch {
		case options == 1 && hasSA, options == 2 && found != nil && !found.sa:
			return invalidField(2)
		case options == 2 && found == nil && !hasSA:
			return invalidField(2)
		}
		if options == 1 && found == nil && !hasSA && sa != 0 {
			return invalidField(4)
		}
		b = make([]byte, 4)
		if found == nil {
			b[1] = 0x01 // not supported
		} else {
			b[1] = 0x03 // supported per the standard
			binary.BigEndian.PutUint16(b[2:], uint16(len(found.usage)))
			b = append(b, found.usage...)
		}
		if rctd {
			b[1] |= 0x80
			b = append(b, timeouts()...)
		}
	default:
		return invalidField(2)
	}
	return data(c, b, alloc)
}
