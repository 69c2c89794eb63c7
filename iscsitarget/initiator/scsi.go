package initiator

import (
	"encoding/binary"
	"fmt"
)

// SCSI operation codes the initiator sends (SBC-3, SPC-4).
const (
	opTestUnitReady    = 0x00
	opInquiry          = 0x12
	opReadCapacity10   = 0x25
	opRead10           = 0x28
	opWrite10          = 0x2a
	opSyncCache10      = 0x35
	opRead16           = 0x88
	opWrite16          = 0x8a
	opSyncCache16      = 0x91
	opWriteSame16      = 0x93
	opServiceAction16  = 0x9e
	saReadCapacity16   = 0x10
	peripheralDisk     = 0x00
	inquiryAllocLength = 96
)

// scsiCmd is one SCSI command: its CDB and the direction and length of its data.
type scsiCmd struct {
	cdb   []byte
	name  string
	read  []byte // Data-In buffer (nil when no data comes back)
	write []byte // Data-Out payload (nil when no data goes out)
}

func inquiryCmd(buf []byte) scsiCmd {
	cdb := make([]byte, 6)
	cdb[0] = opInquiry
	binary.BigEndian.PutUint16(cdb[3:5], uint16(len(buf)))
	return scsiCmd{cdb: cdb, name: "INQUIRY", read: buf}
}

func testUnitReadyCmd() scsiCmd {
	return scsiCmd{cdb: make([]byte, 6), name: "TEST UNIT READY"}
}

func readCapacity16Cmd(buf []byte) scsiCmd {
	cdb := make([]byte, 16)
	cdb[0] = opServiceAction16
	cdb[1] = saReadCapacity16
	binary.BigEndian.PutUint32(cdb[10:14], uint32(len(buf)))
	return scsiCmd{cdb: cdb, name: "READ CAPACITY(16)", read: buf}
}

func readCapacity10Cmd(buf []byte) scsiCmd {
	cdb := make([]byte, 10)
	cdb[0] = opReadCapacity10
	return scsiCmd{cdb: cdb, name: "READ CAPACITY(10)", read: buf}
}

// rwCmd builds READ/WRITE(10) when the range fits, else (16).
func rwCmd(write bool, lba uint64, blocks uint32, buf []byte) scsiCmd {
	var cdb []byte
	var name string
	if lba+uint64(blocks) <= 1<<32 && blocks <= 0xffff {
		cdb = make([]byte, 10)
		cdb[0] = opRead10
		name = "READ(10)"
		if write {
			cdb[0] = opWrite10
			name = "WRITE(10)"
		}
		binary.BigEndian.PutUint32(cdb[2:6], uint32(lba))
		binary.BigEndian.PutUint16(cdb[7:9], uint16(blocks))
	} else {
		cdb = make([]byte, 16)
		cdb[0] = opRead16
		name = "READ(16)"
		if write {
			cdb[0] = opWrite16
			name = "WRITE(16)"
		}
		binary.BigEndian.PutUint64(cdb[2:10], lba)
		binary.BigEndian.PutUint32(cdb[10:14], blocks)
	}
	c := scsiCmd{cdb: cdb, name: fmt.Sprintf("%s lba %d blocks %d", name, lba, blocks)}
	if write {
		c.write = buf
	} else {
		c.read = buf
	}
	return c
}

// writeSameCmd writes block, one logical block of data, to blocks blocks
// from lba on: WRITE SAME(16), no UNMAP, no NDOB (every target that has the
// command takes this form).
func writeSameCmd(lba uint64, blocks uint32, block []byte) scsiCmd {
	cdb := make([]byte, 16)
	cdb[0] = opWriteSame16
	binary.BigEndian.PutUint64(cdb[2:10], lba)
	binary.BigEndian.PutUint32(cdb[10:14], blocks)
	return scsiCmd{cdb: cdb, name: fmt.Sprintf("WRITE SAME(16) lba %d blocks %d", lba, blocks), write: block}
}

// syncCacheCmd flushes the whole medium: SYNCHRONIZE CACHE with LBA 0 and 0 blocks.
func syncCacheCmd(sixteen bool) scsiCmd {
	if sixteen {
		cdb := make([]byte, 16)
		cdb[0] = opSyncCache16
		return scsiCmd{cdb: cdb, name: "SYNCHRONIZE CACHE(16)"}
	}
	cdb := make([]byte, 10)
	cdb[0] = opSyncCache10
	return scsiCmd{cdb: cdb, name: "SYNCHRONIZE CACHE(10)"}
}

// parseCapacity16 returns the block count and block size from READ CAPACITY(16) data.
func parseCapacity16(b []byte) (blocks uint64, blockSize uint32, err error) {
	if len(b) < 12 {
		return 0, 0, fmt.Errorf("READ CAPACITY(16): %d bytes of data, want 12", len(b))
	}
	last := binary.BigEndian.Uint64(b[0:8])
	blockSize = binary.BigEndian.Uint32(b[8:12])
	if err := checkBlockSize(blockSize); err != nil {
		return 0, 0, fmt.Errorf("READ CAPACITY(16): %w", err)
	}
	if last == ^uint64(0) {
		return 0, 0, fmt.Errorf("READ CAPACITY(16): last LBA 0x%x is not a size", last)
	}
	return last + 1, blockSize, nil
}

// parseCapacity10 returns the block count and block size from READ CAPACITY(10) data;
// needs16 is set when the medium is too big for it.
func parseCapacity10(b []byte) (blocks uint64, blockSize uint32, needs16 bool, err error) {
	if len(b) < 8 {
		return 0, 0, false, fmt.Errorf("READ CAPACITY(10): %d bytes of data, want 8", len(b))
	}
	last := binary.BigEndian.Uint32(b[0:4])
	if last == 0xffffffff {
		return 0, 0, true, nil
	}
	blockSize = binary.BigEndian.Uint32(b[4:8])
	if err := checkBlockSize(blockSize); err != nil {
		return 0, 0, false, fmt.Errorf("READ CAPACITY(10): %w", err)
	}
	return uint64(last) + 1, blockSize, false, nil
}

func checkBlockSize(n uint32) error {
	if n < 512 || n > 1<<20 || n&(n-1) != 0 {
		return fmt.Errorf("block size %d is not a power of two in [512, 1 MiB]", n)
	}
	return nil
}

// checkInquiry verifies standard INQUIRY data names a connected direct-access device.
func checkInquiry(b []byte, lun uint64) (vendor, product string, err error) {
	if len(b) < 1 {
		return "", "", fmt.Errorf("INQUIRY on LUN %d: no data", lun)
	}
	qual, typ := b[0]>>5, b[0]&0x1f
	if qual != 0 {
		return "", "", fmt.Errorf("LUN %d does not exist (INQUIRY peripheral qualifier %d, type 0x%02x)", lun, qual, typ)
	}
	if typ != peripheralDisk {
		return "", "", fmt.Errorf("LUN %d is not a disk (INQUIRY peripheral device type 0x%02x)", lun, typ)
	}
	if len(b) >= 32 {
		vendor, product = trimASCII(b[8:16]), trimASCII(b[16:32])
	}
	return vendor, product, nil
}

func trimASCII(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	for len(out) > 0 && out[len(out)-1] == ' ' {
		out = out[:len(out)-1]
	}
	return string(out)
}
