package initiator

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SCSI status bytes (SAM-5) carried in a SCSI Response or a final Data-In.
const (
	statusGood                = 0x00
	statusCheckCondition      = 0x02
	statusConditionMet        = 0x04
	statusBusy                = 0x08
	statusReservationConflict = 0x18
	statusTaskSetFull         = 0x28
	statusACAActive           = 0x30
	statusTaskAborted         = 0x40
)

func statusName(s byte) string {
	switch s {
	case statusGood:
		return "GOOD"
	case statusCheckCondition:
		return "CHECK CONDITION"
	case statusConditionMet:
		return "CONDITION MET"
	case statusBusy:
		return "BUSY"
	case statusReservationConflict:
		return "RESERVATION CONFLICT"
	case statusTaskSetFull:
		return "TASK SET FULL"
	case statusACAActive:
		return "ACA ACTIVE"
	case statusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("status 0x%02x", s)
}

// SenseKey is the 4-bit sense key of SCSI sense data (SPC-4 table 27).
type SenseKey uint8

// Sense keys callers may branch on.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseVendorSpecific SenseKey = 0x9
	SenseCopyAborted    SenseKey = 0xa
	SenseAbortedCommand SenseKey = 0xb
	SenseVolumeOverflow SenseKey = 0xd
	SenseMiscompare     SenseKey = 0xe
)

var senseKeyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR",
	"ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC",
	"COPY ABORTED", "ABORTED COMMAND", "RESERVED", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

func (k SenseKey) String() string { return senseKeyNames[k&0x0f] }

// ascNames describes the additional sense codes an initiator of a deploy is likely to meet.
var ascNames = map[uint16]string{
	0x0000: "no additional sense information",
	0x0400: "logical unit not ready, cause not reportable",
	0x0401: "logical unit is in process of becoming ready",
	0x0402: "logical unit not ready, initializing command required",
	0x0c00: "write error",
	0x0c02: "write error, auto reallocation failed",
	0x1100: "unrecovered read error",
	0x1400: "recorded entity not found",
	0x1a00: "parameter list length error",
	0x2000: "invalid command operation code",
	0x2100: "logical block address out of range",
	0x2400: "invalid field in CDB",
	0x2500: "logical unit not supported",
	0x2600: "invalid field in parameter list",
	0x2700: "write protected",
	0x2800: "not ready to ready change, medium may have changed",
	0x2900: "power on, reset, or bus device reset occurred",
	0x2a01: "mode parameters changed",
	0x2a09: "capacity data has changed",
	0x3a00: "medium not present",
	0x3f0e: "reported LUNs data has changed",
	0x4400: "internal target failure",
	0x4700: "SCSI parity error",
	0x4b00: "data phase error",
	0x4e00: "overlapped commands attempted",
	0x5d00: "failure prediction threshold exceeded",
}

// SenseError is a SCSI command that ended in a status other than GOOD. Key, ASC and ASCQ
// are set when the target returned sense data (CHECK CONDITION).
type SenseError struct {
	Op       string // command name and range, e.g. "WRITE(16) lba 2048 blocks 128"
	Status   byte
	HasSense bool
	Key      SenseKey
	ASC      byte
	ASCQ     byte
	// Info is the INFORMATION field (typically the failing LBA) when the target marked it valid.
	Info      uint64
	InfoValid bool
}

func (e *SenseError) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Op, statusName(e.Status))
	if !e.HasSense {
		return msg
	}
	msg += fmt.Sprintf(": sense key %s (0x%x), ASC/ASCQ 0x%02x/0x%02x", e.Key, uint8(e.Key), e.ASC, e.ASCQ)
	if d, ok := ascNames[uint16(e.ASC)<<8|uint16(e.ASCQ)]; ok {
		msg += " (" + d + ")"
	}
	if e.InfoValid {
		msg += fmt.Sprintf(", information 0x%x", e.Info)
	}
	return msg
}

// IsSense reports whether err is a SenseError with the given sense key.
func IsSense(err error, key SenseKey) bool {
	var se *SenseError
	return errors.As(err, &se) && se.HasSense && se.Key == key
}

// decodeSense parses SCSI sense data, fixed (0x70/0x71) or descriptor (0x72/0x73) format.
// It never panics on short or malformed input; it reports ok=false when nothing usable
// was found.
func decodeSense(b []byte) (key SenseKey, asc, ascq byte, info uint64, infoValid, ok bool) {
	if len(b) < 1 {
		return 0, 0, 0, 0, false, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 3 {
			return 0, 0, 0, 0, false, false
		}
		key = SenseKey(b[2] & 0x0f)
		if len(b) >= 7 && b[0]&0x80 != 0 {
			info = uint64(binary.BigEndian.Uint32(b[3:7]))
			infoValid = true
		}
		if len(b) >= 14 {
			asc, ascq = b[12], b[13]
		}
		return key, asc, ascq, info, infoValid, true
	case 0x72, 0x73:
		if len(b) < 4 {
			return 0, 0, 0, 0, false, false
		}
		key = SenseKey(b[1] & 0x0f)
		asc, ascq = b[2], b[3]
		if len(b) >= 8 {
			// Walk the descriptors looking for INFORMATION (type 0x00).
			end := min(len(b), 8+int(b[7]))
			for p := 8; p+2 <= end; {
				typ, l := b[p], int(b[p+1])
				if typ == 0x00 && l >= 0x0a && p+12 <= end {
					info = binary.BigEndian.Uint64(b[p+4 : p+12])
					infoValid = b[p+2]&0x80 != 0
				}
				p += 2 + l
			}
		}
		return key, asc, ascq, info, infoValid, true
	}
	return 0, 0, 0, 0, false, false
}

// senseFromResponse turns the data segment of a SCSI Response (2-byte SenseLength then
// sense data, RFC 7143 section 11.4.7) into a SenseError.
func senseFromResponse(op string, status byte, seg []byte) *SenseError {
	e := &SenseError{Op: op, Status: status}
	if len(seg) < 2 {
		return e
	}
	n := int(binary.BigEndian.Uint16(seg[:2]))
	sense := seg[2:]
	if n < len(sense) {
		sense = sense[:n]
	}
	e.Key, e.ASC, e.ASCQ, e.Info, e.InfoValid, e.HasSense = decodeSense(sense)
	return e
}
