package scsi

import (
	"bytes"
	"encoding/binary"
)

// extent decodes the LBA and block count of a block command.
func extent(cdb []byte) (lba uint64, n uint32) {
	switch cdb[0] {
	case OpRead6, OpWrite6:
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		n = uint32(cdb[4])
		if n == 0 {
			n = 256
		}
	case OpRead10, OpWrite10, OpWriteVerify10, OpVerify10, OpPrefetch10, OpSynchronizeCache10, OpWriteSame10:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = uint32(binary.BigEndian.Uint16(cdb[7:]))
	case OpRead12, OpWrite12, OpWriteVerify12, OpVerify12:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = binary.BigEndian.Uint32(cdb[6:])
	case OpRead16, OpWrite16, OpWriteVerify16, OpVerify16, OpPrefetch16, OpSynchronizeCache16, OpWriteSame16, OpOrWrite16:
		lba = binary.BigEndian.Uint64(cdb[2:])
		n = binary.BigEndian.Uint32(cdb[10:])
	case OpCompareAndWrite:
		lba = binary.BigEndian.Uint64(cdb[2:])
		n = uint32(cdb[13])
	}
	return lba, n
}

// inRange reports whether blocks [lba, lba+n) exist.
func (lu *LU) inRange(lba uint64, n uint32) bool {
	return lba <= lu.blocks && uint64(n) <= lu.blocks-lba
}

// protectField is non-zero when RDPROTECT/WRPROTECT/VRPROTECT asks for
// protection information, which this LU does not have.
func protectField(cdb []byte) bool {
	return cdb[0] != OpRead6 && cdb[0] != OpWrite6 && cdb[1]&0xe0 != 0
}

func (lu *LU) read(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	want := uint64(n) * uint64(lu.bs)
	if want > MaxTransferBytes {
		return invalidField(uint16(lenField(c.CDB[0])))
	}
	buf := c.DataIn
	if uint64(len(buf)) > want {
		buf = buf[:want]
	}
	if len(buf) > 0 {
		if _, err := lu.cfg.Disk.ReadAt(buf, int64(lba)*int64(lu.bs)); err != nil {
			return mediumError(ASCReadError)
		}
	}
	return Result{Data: buf, Want: uint32(want)}
}

// lenField is the CDB byte index of the transfer length, for sense.
func lenField(op byte) int {
	switch cdbLen(op) {
	case 6:
		return 4
	case 10:
		return 7
	case 12:
		return 6
	}
	return 10
}

// residualMismatch is the answer to a write whose expected data transfer
// length differs from what its CDB asks for: no data is written (SAM-5
// 5.2, option b), the transport reports the residual.
func residualMismatch(want uint32) Result {
	r := checkCondition(Sense{Key: KeyIllegalRequest, ASC: 0x0e03}) // INVALID FIELD IN COMMAND INFORMATION UNIT
	r.Want = want
	return r
}

func (lu *LU) write(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	want := uint64(n) * uint64(lu.bs)
	if want > MaxTransferBytes {
		return invalidField(uint16(lenField(c.CDB[0])))
	}
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	// With an expected data transfer length other than the CDB's, only the
	// smaller of the two is written (SAM-5 5.2 option a); the transport
	// reports the residual.
	out := c.DataOut
	if uint64(len(out)) > want {
		out = out[:want]
	}
	if len(out) == 0 {
		return Result{Want: uint32(want)}
	}
	if lu.cfg.WriteFault != nil && lu.cfg.WriteFault(lba, n) {
		return mediumError(ASCWriteError)
	}
	off := int64(lba) * int64(lu.bs)
	lu.atomic.RLock()
	_, err := lu.cfg.Disk.WriteAt(out, off)
	lu.atomic.RUnlock()
	if err != nil {
		return mediumError(ASCWriteError)
	}
	fua := c.CDB[0] != OpWrite6 && c.CDB[1]&0x08 != 0
	switch c.CDB[0] {
	case OpWriteVerify10, OpWriteVerify12, OpWriteVerify16:
		got := make([]byte, len(out))
		if _, err := lu.cfg.Disk.ReadAt(got, off); err != nil {
			return mediumError(ASCReadError)
		}
		if i := firstDiff(got, out); i >= 0 {
			return miscompare(uint32(i))
		}
	default:
		if fua && lu.cfg.Sync != nil {
			if err := lu.cfg.Sync(); err != nil {
				return mediumError(ASCWriteError)
			}
		}
	}
	return Result{Want: uint32(want)}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

func (lu *LU) verify(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	bytchk := c.CDB[1] >> 1 & 3
	if bytchk == 2 {
		return invalidField(1)
	}
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	if uint64(n)*uint64(lu.bs) > MaxTransferBytes {
		return invalidField(uint16(lenField(c.CDB[0])))
	}
	var want uint32
	switch bytchk {
	case 1:
		want = n * lu.bs
	case 3:
		want = lu.bs
	}
	if uint32(len(c.DataOut)) != want {
		return residualMismatch(want)
	}
	got := make([]byte, uint64(n)*uint64(lu.bs))
	if len(got) > 0 {
		if _, err := lu.cfg.Disk.ReadAt(got, int64(lba)*int64(lu.bs)); err != nil {
			return mediumError(ASCReadError)
		}
	}
	switch bytchk {
	case 1:
		if i := firstDiff(got, c.DataOut); i >= 0 {
			return miscompare(uint32(i))
		}
	case 3:
		for b := uint32(0); b < n; b++ {
			blk := got[b*lu.bs : (b+1)*lu.bs]
			if i := firstDiff(blk, c.DataOut); i >= 0 {
				return miscompare(b*lu.bs + uint32(i))
			}
		}
	}
	return Result{Want: want}
}

func (lu *LU) prefetch(c *Command) Result {
	lba, n := extent(c.CDB)
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	return Result{}
}

func (lu *LU) synchronizeCache(c *Command) Result {
	lba, n := extent(c.CDB)
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	if lu.cfg.Sync != nil {
		if err := lu.cfg.Sync(); err != nil {
			return mediumError(ASCWriteError)
		}
	}
	return Result{}
}

func (lu *LU) writeSame(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	flags := c.CDB[1]
	ndob := c.CDB[0] == OpWriteSame16 && flags&0x01 != 0
	// ANCHOR, LBDATA/PBDATA, and UNMAP: this LU does not provision thinly
	// (LBPME=0, LBPWS=0), so it refuses to unmap rather than pretend.
	if flags&0x1e != 0 {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	if n == 0 || n > maxWriteSameBlocks { // WSNZ=1 in the Block Limits page
		return invalidField(uint16(lenField(c.CDB[0])))
	}
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	want := lu.bs
	if ndob {
		want = 0
	}
	if uint32(len(c.DataOut)) != want {
		return residualMismatch(want)
	}
	if lu.cfg.WriteFault != nil && lu.cfg.WriteFault(lba, n) {
		return mediumError(ASCWriteError)
	}
	block := make([]byte, lu.bs)
	if !ndob {
		copy(block, c.DataOut)
	}
	if z, ok := lu.cfg.Disk.(Zeroer); ok && allZero(block) {
		lu.atomic.RLock()
		err := z.WriteZeroesAt(int64(lba)*int64(lu.bs), int64(n)*int64(lu.bs))
		lu.atomic.RUnlock()
		if err != nil {
			return mediumError(ASCWriteError)
		}
		return Result{Want: want}
	}
	// Write in chunks of up to 1 MiB of repeated blocks.
	per := uint32(1<<20) / lu.bs
	if per > n {
		per = n
	}
	chunk := bytes.Repeat(block, int(per))
	for done := uint32(0); done < n; {
		k := per
		if n-done < k {
			k = n - done
		}
		off := int64(lba+uint64(done)) * int64(lu.bs)
		lu.atomic.RLock()
		_, err := lu.cfg.Disk.WriteAt(chunk[:k*lu.bs], off)
		lu.atomic.RUnlock()
		if err != nil {
			return mediumError(ASCWriteError)
		}
		done += k
	}
	return Result{Want: want}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (lu *LU) compareAndWrite(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	if n > maxCompareBlocks {
		return invalidField(13)
	}
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	want := 2 * n * lu.bs
	if uint32(len(c.DataOut)) != want {
		// The CDB and the data disagree (e.g. 256 blocks wrapped to 0).
		return invalidField(13)
	}
	if n == 0 {
		return Result{}
	}
	size := n * lu.bs
	off := int64(lba) * int64(lu.bs)
	lu.atomic.Lock()
	defer lu.atomic.Unlock()
	got := make([]byte, size)
	if _, err := lu.cfg.Disk.ReadAt(got, off); err != nil {
		return mediumError(ASCReadError)
	}
	if i := firstDiff(got, c.DataOut[:size]); i >= 0 {
		return miscompare(uint32(i))
	}
	if lu.cfg.WriteFault != nil && lu.cfg.WriteFault(lba, n) {
		return mediumError(ASCWriteError)
	}
	if _, err := lu.cfg.Disk.WriteAt(c.DataOut[size:], off); err != nil {
		return mediumError(ASCWriteError)
	}
	return Result{Want: want}
}

func (lu *LU) orWrite(c *Command) Result {
	if protectField(c.CDB) {
		return invalidField(1)
	}
	lba, n := extent(c.CDB)
	want := uint64(n) * uint64(lu.bs)
	if want > MaxTransferBytes {
		return invalidField(10)
	}
	if !lu.inRange(lba, n) {
		return lbaOutOfRange()
	}
	if uint64(len(c.DataOut)) != want {
		return residualMismatch(uint32(want))
	}
	if n == 0 {
		return Result{}
	}
	if lu.cfg.WriteFault != nil && lu.cfg.WriteFault(lba, n) {
		return mediumError(ASCWriteError)
	}
	off := int64(lba) * int64(lu.bs)
	lu.atomic.Lock()
	defer lu.atomic.Unlock()
	cur := make([]byte, want)
	if _, err := lu.cfg.Disk.ReadAt(cur, off); err != nil {
		return mediumError(ASCReadError)
	}
	for i := range cur {
		cur[i] |= c.DataOut[i]
	}
	if _, err := lu.cfg.Disk.WriteAt(cur, off); err != nil {
		return mediumError(ASCWriteError)
	}
	return Result{Want: uint32(want)}
}
