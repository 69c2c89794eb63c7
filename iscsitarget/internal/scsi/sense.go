package scsi

import "encoding/binary"

// SAM status codes.
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusTaskAborted         = 0x40
)

// Sense keys.
const (
	KeyNoSense        = 0x00
	KeyNotReady       = 0x02
	KeyMediumError    = 0x03
	KeyHardwareError  = 0x04
	KeyIllegalRequest = 0x05
	KeyUnitAttention  = 0x06
	KeyDataProtect    = 0x07
	KeyAbortedCommand = 0x0b
	KeyMiscompare     = 0x0e
)

// ASC/ASCQ pairs, as one 16-bit value.
const (
	ASCNone                   = 0x0000
	ASCWriteError             = 0x0c00
	ASCReadError              = 0x1100
	ASCParameterListLength    = 0x1a00
	ASCMiscompareDuringVerify = 0x1d00
	ASCInvalidOpcode          = 0x2000
	ASCLBAOutOfRange          = 0x2100
	ASCInvalidFieldInCDB      = 0x2400
	ASCLUNNotSupported        = 0x2500
	ASCInvalidFieldInParam    = 0x2600
	ASCSavingNotSupported     = 0x3900
	ASCInternalTargetFailure  = 0x4400
)

// Sense is a fixed-format sense condition. Information, when HasInfo is
// set, goes to bytes 3-6 (the VALID bit is set).
type Sense struct {
	Key     byte
	ASC     uint16
	Info    uint32
	HasInfo bool
	// Field, when HasField is set, is the sense-key specific field
	// pointer: the byte of the CDB (or parameter list) found wrong.
	Field    uint16
	HasField bool
	InCDB    bool
}

// Bytes encodes s as 18 bytes of fixed-format sense data (SPC-4 4.5.3).
// This is the only place sense data is encoded.
func (s Sense) Bytes() []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	if s.HasInfo {
		b[0] |= 0x80
		binary.BigEndian.PutUint32(b[3:], s.Info)
	}
	b[2] = s.Key & 0x0f
	b[7] = 10
	b[12] = byte(s.ASC >> 8)
	b[13] = byte(s.ASC)
	if s.HasField {
		b[15] = 0x80
		if s.InCDB {
			b[15] |= 0x40
		}
		binary.BigEndian.PutUint16(b[16:], s.Field)
	}
	return b
}

// Result is what a command ends with: a status, sense data for CHECK
// CONDITION, and the Data-In bytes (a prefix of the caller's buffer).
type Result struct {
	Status byte
	Sense  []byte
	Data   []byte
	// Want is the number of bytes the command would transfer (Data-In or
	// Data-Out) per its CDB, for residual accounting.
	Want uint32
}

// checkCondition is the one mapping from a sense condition to a Result.
func checkCondition(s Sense) Result {
	return Result{Status: StatusCheckCondition, Sense: s.Bytes()}
}

func invalidOpcode() Result {
	return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCInvalidOpcode, HasField: true, InCDB: true})
}

func invalidField(byteIndex uint16) Result {
	return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCInvalidFieldInCDB, HasField: true, InCDB: true, Field: byteIndex})
}

func lbaOutOfRange() Result {
	return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCLBAOutOfRange})
}

func mediumError(asc uint16) Result { return checkCondition(Sense{Key: KeyMediumError, ASC: asc}) }

func miscompare(offset uint32) Result {
	return checkCondition(Sense{Key: KeyMiscompare, ASC: ASCMiscompareDuringVerify, Info: offset, HasInfo: true})
}

func lunNotSupported() Result {
	return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCLUNNotSupported})
}

func invalidParam() Result {
	return checkCondition(Sense{Key: KeyIllegalRequest, ASC: ASCInvalidFieldInParam})
}

// ParseSense decodes the key and ASC/ASCQ of fixed or descriptor sense.
func ParseSense(b []byte) (key byte, asc uint16, ok bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 14 {
			return 0, 0, false
		}
		return b[2] & 0x0f, uint16(b[12])<<8 | uint16(b[13]), true
	case 0x72, 0x73:
		return b[1] & 0x0f, uint16(b[2])<<8 | uint16(b[3]), true
	}
	return 0, 0, false
}
