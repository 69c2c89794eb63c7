// Package scsi is the SCSI command layer of metalbed's iSCSI target: a
// logical unit over an io.ReaderAt/io.WriterAt (SBC-3 block commands) and
// a controller LUN 0 that answers INQUIRY and REPORT LUNS, the way tgtd
// exposes its targets. Every command that is not truly implemented here
// ends with CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION
// CODE.
package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Operation codes handled here.
const (
	OpTestUnitReady      = 0x00
	OpRequestSense       = 0x03
	OpRead6              = 0x08
	OpWrite6             = 0x0a
	OpInquiry            = 0x12
	OpModeSense6         = 0x1a
	OpStartStopUnit      = 0x1b
	OpPreventAllow       = 0x1e
	OpReadCapacity10     = 0x25
	OpRead10             = 0x28
	OpWrite10            = 0x2a
	OpWriteVerify10      = 0x2e
	OpVerify10           = 0x2f
	OpPrefetch10         = 0x34
	OpSynchronizeCache10 = 0x35
	OpWriteSame10        = 0x41
	OpModeSense10        = 0x5a
	OpRead16             = 0x88
	OpCompareAndWrite    = 0x89
	OpWrite16            = 0x8a
	OpOrWrite16          = 0x8b
	OpWriteVerify16      = 0x8e
	OpVerify16           = 0x8f
	OpPrefetch16         = 0x90
	OpSynchronizeCache16 = 0x91
	OpWriteSame16        = 0x93
	OpServiceActionIn16  = 0x9e
	OpReportLUNs         = 0xa0
	OpReserve6           = 0x16
	OpRelease6           = 0x17
	OpRead12             = 0xa8
	OpWrite12            = 0xaa
	OpWriteVerify12      = 0xae
	OpVerify12           = 0xaf

	saReadCapacity16 = 0x10
)

// Disk is the storage behind a logical unit.
type Disk interface {
	io.ReaderAt
	io.WriterAt
}

// Zeroer is a Disk that can make a range read back as zeros without
// writing them (a hole punched in a sparse file); WRITE SAME of a zero
// block uses it.
type Zeroer interface {
	WriteZeroesAt(off, n int64) error
}

// Limits advertised in the Block Limits VPD page; commands above them are
// refused with INVALID FIELD IN CDB before any data moves.
const (
	// MaxTransferBytes is the largest READ/WRITE the LU accepts.
	MaxTransferBytes = 8 << 20
	// maxWriteSameBlocks bounds one WRITE SAME.
	maxWriteSameBlocks = 1 << 16
	// maxCompareBlocks bounds COMPARE AND WRITE.
	maxCompareBlocks = 255
)

// Command is one SCSI command as the transport hands it over.
type Command struct {
	CDB []byte
	// DataOut holds the Data-Out bytes the initiator sent (at most the
	// expected data transfer length).
	DataOut []byte
	// DataIn is the caller's buffer for Data-In, of the expected data
	// transfer length; Result.Data is a prefix of it.
	DataIn []byte
	// Nexus identifies the I_T nexus (the session) for reservations;
	// zero is a valid nexus.
	Nexus uint64
}

// LUConfig describes a logical unit.
type LUConfig struct {
	Disk      Disk
	Size      int64  // bytes; rounded down to BlockSize
	BlockSize uint32 // 512 or 4096
	// Serial is the unit serial number (VPD 0x80), ASCII.
	Serial string
	// NAA is the 64-bit NAA identifier (VPD 0x83); its top nibble is
	// forced to 6 (NAA IEEE Registered Extended is 16 bytes; we use the
	// 8-byte locally assigned format 3).
	NAA uint64
	// Sync flushes the disk (SYNCHRONIZE CACHE); nil is a no-op.
	Sync func() error
	// WriteFault, if set and true for (lba, blocks), fails the write with
	// MEDIUM ERROR / WRITE ERROR without touching the disk.
	WriteFault func(lba uint64, blocks uint32) bool
}

// LU is a block logical unit. It is safe for concurrent use.
type LU struct {
	cfg    LUConfig
	bs     uint32
	blocks uint64
	// atomic makes the read-modify-write commands (COMPARE AND WRITE,
	// ORWRITE; write lock) atomic against every other write (read lock).
	atomic sync.RWMutex
	table  [256]func(*Command) Result
	usage  []opUsage

	// resv is the SPC-2 RESERVE(6) reservation: held (by holder) or not.
	resvMu sync.Mutex
	held   bool
	holder uint64
}

// NewLU validates cfg and builds the dispatch table.
func NewLU(cfg LUConfig) (*LU, error) {
	if cfg.Disk == nil {
		return nil, errors.New("scsi: no disk")
	}
	switch cfg.BlockSize {
	case 0:
		cfg.BlockSize = 512
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("scsi: block size %d not 512..4096", cfg.BlockSize)
	}
	blocks := uint64(cfg.Size) / uint64(cfg.BlockSize)
	if cfg.Size < 0 || blocks == 0 {
		return nil, fmt.Errorf("scsi: disk of %d bytes holds no %d-byte block", cfg.Size, cfg.BlockSize)
	}
	lu := &LU{cfg: cfg, bs: cfg.BlockSize, blocks: blocks}
	lu.table = [256]func(*Command) Result{
		OpTestUnitReady:      lu.testUnitReady,
		OpRequestSense:       lu.requestSense,
		OpRead6:              lu.read,
		OpRead10:             lu.read,
		OpRead12:             lu.read,
		OpRead16:             lu.read,
		OpWrite6:             lu.write,
		OpWrite10:            lu.write,
		OpWrite12:            lu.write,
		OpWrite16:            lu.write,
		OpWriteVerify10:      lu.write,
		OpWriteVerify12:      lu.write,
		OpWriteVerify16:      lu.write,
		OpVerify10:           lu.verify,
		OpVerify12:           lu.verify,
		OpVerify16:           lu.verify,
		OpPrefetch10:         lu.prefetch,
		OpPrefetch16:         lu.prefetch,
		OpSynchronizeCache10: lu.synchronizeCache,
		OpSynchronizeCache16: lu.synchronizeCache,
		OpWriteSame10:        lu.writeSame,
		OpWriteSame16:        lu.writeSame,
		OpCompareAndWrite:    lu.compareAndWrite,
		OpOrWrite16:          lu.orWrite,
		OpInquiry:            lu.inquiry,
		OpModeSense6:         lu.modeSense,
		OpModeSense10:        lu.modeSense,
		OpReadCapacity10:     lu.readCapacity10,
		OpServiceActionIn16:  lu.serviceActionIn,
		OpReportLUNs:         reportLUNs,
		OpStartStopUnit:      lu.startStopUnit,
		OpPreventAllow:       lu.preventAllow,
		OpMaintenanceIn:      lu.maintenanceIn,
		OpReserve6:           lu.reserve6,
		OpRelease6:           lu.release6,
	}
	lu.usage = usageTable()
	return lu, nil
}

// Blocks is the number of logical blocks; BlockSize their size.
func (lu *LU) Blocks() uint64    { return lu.blocks }
func (lu *LU) BlockSize() uint32 { return lu.bs }

// cdbLen is the CDB length implied by the group code of the opcode.
func cdbLen(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 16
}

// Execute runs one command on the LU. It never panics on any CDB or data.
func (lu *LU) Execute(c *Command) Result {
	if len(c.CDB) == 0 || len(c.CDB) < cdbLen(c.CDB[0]) {
		return invalidOpcode()
	}
	h := lu.table[c.CDB[0]]
	if h == nil {
		return invalidOpcode()
	}
	if lu.conflicts(c) {
		return Result{Status: StatusReservationConflict}
	}
	if control := c.CDB[cdbLen(c.CDB[0])-1]; control&0x07 != 0 { // NACA, obsolete link bits
		return invalidField(uint16(cdbLen(c.CDB[0]) - 1))
	}
	return h(c)
}

// ExecuteLUN0 runs a command addressed to the controller LUN 0 (or to any
// LUN that does not exist, when exists is false): INQUIRY, REPORT LUNS,
// TEST UNIT READY and REQUEST SENSE only.
func ExecuteLUN0(c *Command, exists bool) Result {
	if len(c.CDB) == 0 || len(c.CDB) < cdbLen(c.CDB[0]) {
		return invalidOpcode()
	}
	switch c.CDB[0] {
	case OpInquiry:
		return inquiryController(c, exists)
	case OpReportLUNs:
		return reportLUNs(c)
	case OpRequestSense:
		return requestSenseData(c)
	case OpTestUnitReady:
		if exists {
			return Result{}
		}
	}
	if !exists {
		return lunNotSupported()
	}
	return invalidOpcode()
}

// data returns a Result carrying b truncated to the allocation length and
// to the caller's buffer.
func data(c *Command, b []byte, alloc uint32) Result {
	if uint32(len(b)) > alloc {
		b = b[:alloc]
	}
	n := copy(c.DataIn, b)
	return Result{Data: c.DataIn[:n], Want: uint32(len(b))}
}

func (lu *LU) testUnitReady(c *Command) Result { return Result{} }

func (lu *LU) requestSense(c *Command) Result { return requestSenseData(c) }

func requestSenseData(c *Command) Result {
	if c.CDB[1]&0x01 != 0 { // DESC: descriptor format not supported
		return invalidField(1)
	}
	return data(c, Sense{Key: KeyNoSense}.Bytes(), uint32(c.CDB[4]))
}

func reportLUNs(c *Command) Result {
	alloc := binary.BigEndian.Uint32(c.CDB[6:])
	if alloc < 16 {
		return invalidField(6)
	}
	var luns []uint64
	switch c.CDB[2] {
	case 0x00, 0x02: // all logical units
		luns = []uint64{0, 1}
	case 0x01: // well known LUNs only: none
	default:
		return invalidField(2)
	}
	b := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(b, uint32(8*len(luns)))
	for i, l := range luns {
		binary.BigEndian.PutUint16(b[8+8*i:], uint16(l)) // peripheral device addressing
	}
	return data(c, b, alloc)
}

func (lu *LU) startStopUnit(c *Command) Result {
	if c.CDB[4]&0xf0 != 0 { // power conditions: not supported
		return invalidField(4)
	}
	if c.CDB[4]&0x02 != 0 && c.CDB[4]&0x01 == 0 { // LOEJ on a non-removable medium
		return invalidField(4)
	}
	return Result{}
}

func (lu *LU) preventAllow(c *Command) Result {
	if c.CDB[4]&0x03 != 0 { // the medium is not removable (RMB=0)
		return invalidField(4)
	}
	return Result{}
}

func (lu *LU) readCapacity10(c *Command) Result {
	if c.CDB[8]&0x01 != 0 || binary.BigEndian.Uint32(c.CDB[2:]) != 0 { // PMI, LBA: obsolete
		return invalidField(8)
	}
	b := make([]byte, 8)
	last := lu.blocks - 1
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b, uint32(last))
	binary.BigEndian.PutUint32(b[4:], lu.bs)
	return data(c, b, 8)
}

func (lu *LU) serviceActionIn(c *Command) Result {
	if c.CDB[1]&0x1f != saReadCapacity16 {
		return invalidOpcode()
	}
	alloc := binary.BigEndian.Uint32(c.CDB[10:])
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, lu.blocks-1)
	binary.BigEndian.PutUint32(b[8:], lu.bs)
	// Logical blocks per physical block exponent: 4 KiB physical.
	if lu.bs < 4096 {
		for e, n := byte(0), lu.bs; n < 4096; e, n = e+1, n*2 {
			b[13] = e + 1
		}
	}
	return data(c, b, alloc)
}

// conflicts reports whether another nexus holds a RESERVE(6) reservation
// that c must respect (SPC-2 5.5.1: only INQUIRY, REQUEST SENSE, REPORT
// LUNS, RELEASE and REPORT SUPPORTED OPERATION CODES are allowed).
func (lu *LU) conflicts(c *Command) bool {
	switch c.CDB[0] {
	case OpInquiry, OpRequestSense, OpReportLUNs, OpRelease6, OpMaintenanceIn:
		return false
	}
	lu.resvMu.Lock()
	defer lu.resvMu.Unlock()
	return lu.held && lu.holder != c.Nexus
}

func (lu *LU) reserve6(c *Command) Result {
	if c.CDB[1]&0x1f != 0 { // third-party and extent reservations: obsolete
		return invalidField(1)
	}
	lu.resvMu.Lock()
	defer lu.resvMu.Unlock()
	if lu.held && lu.holder != c.Nexus {
		return Result{Status: StatusReservationConflict}
	}
	lu.held, lu.holder = true, c.Nexus
	return Result{}
}

// release6 releases the caller's reservation; from another nexus it does
// nothing and succeeds (SPC-2 7.17).
func (lu *LU) release6(c *Command) Result {
	if c.CDB[1]&0x1f != 0 {
		return invalidField(1)
	}
	lu.resvMu.Lock()
	defer lu.resvMu.Unlock()
	if lu.held && lu.holder == c.Nexus {
		lu.held = false
	}
	return Result{}
}

// NexusLost drops the reservation of a nexus that ended (logout,
// connection loss).
func (lu *LU) NexusLost(n uint64) {
	lu.resvMu.Lock()
	defer lu.resvMu.Unlock()
	if lu.held && lu.holder == n {
		lu.held = false
	}
}

// Reset is a logical unit reset: it drops any reservation.
func (lu *LU) Reset() {
	lu.resvMu.Lock()
	lu.held = false
	lu.resvMu.Unlock()
}
