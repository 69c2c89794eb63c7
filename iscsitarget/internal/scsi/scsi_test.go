package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

type memDisk struct {
	mu sync.Mutex
	b  []byte
	// failAt makes I/O at this offset fail (-1: never).
	failAt int64
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off == m.failAt {
		return 0, errors.New("injected")
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off == m.failAt {
		return 0, errors.New("injected")
	}
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("beyond end")
	}
	return copy(m.b[off:], p), nil
}

func newLU(t testing.TB, blocks int) (*LU, *memDisk) {
	d := &memDisk{b: make([]byte, blocks*512), failAt: -1}
	lu, err := NewLU(LUConfig{Disk: d, Size: int64(len(d.b)), BlockSize: 512, Serial: "SERIAL1", NAA: 0x1234})
	if err != nil {
		t.Fatal(err)
	}
	return lu, d
}

func run(lu *LU, cdb []byte, out []byte, in int) Result {
	return lu.Execute(&Command{CDB: cdb, DataOut: out, DataIn: make([]byte, in)})
}

func sense(r Result) (byte, uint16) {
	k, a, _ := ParseSense(r.Sense)
	return k, a
}

func TestSenseEncoding(t *testing.T) {
	b := Sense{Key: KeyMiscompare, ASC: ASCMiscompareDuringVerify, Info: 0x01020304, HasInfo: true}.Bytes()
	want := []byte{0xf0, 0, 0x0e, 1, 2, 3, 4, 10, 0, 0, 0, 0, 0x1d, 0, 0, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Errorf("sense % x, want % x", b, want)
	}
	b = Sense{Key: KeyIllegalRequest, ASC: ASCInvalidFieldInCDB, HasField: true, InCDB: true, Field: 2}.Bytes()
	if b[15] != 0xc0 || b[17] != 2 || b[2] != 5 || b[12] != 0x24 {
		t.Errorf("field pointer sense % x", b)
	}
	if k, a, ok := ParseSense([]byte{0x72, 5, 0x20, 0}); !ok || k != 5 || a != 0x2000 {
		t.Errorf("descriptor sense %x %x %v", k, a, ok)
	}
}

func TestCommands(t *testing.T) {
	lu, d := newLU(t, 2048)
	rc10 := run(lu, []byte{OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	if rc10.Status != 0 || binary.BigEndian.Uint32(rc10.Data) != 2047 || binary.BigEndian.Uint32(rc10.Data[4:]) != 512 {
		t.Errorf("READ CAPACITY(10) %x", rc10.Data)
	}
	// READ(6) of 0 blocks means 256.
	r := run(lu, []byte{OpRead6, 0, 0, 0, 0, 0}, nil, 256*512)
	if r.Status != 0 || len(r.Data) != 256*512 {
		t.Errorf("READ(6) len %d", len(r.Data))
	}
	// WRITE(10) and READ(12) see the same bytes.
	data := bytes.Repeat([]byte("metalbed"), 128) // 1024 bytes
	w10 := []byte{OpWrite10, 0, 0, 0, 0, 5, 0, 0, 2, 0}
	if r := run(lu, w10, data, 0); r.Status != 0 {
		t.Fatalf("WRITE(10) %x", r.Sense)
	}
	r12 := []byte{OpRead12, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0}
	if r := run(lu, r12, nil, 1024); !bytes.Equal(r.Data, data) {
		t.Errorf("READ(12) after WRITE(10) differs")
	}
	// VERIFY(16) with BYTCHK=1: equal and different.
	v := make([]byte, 16)
	v[0], v[1] = OpVerify16, 0x02
	binary.BigEndian.PutUint64(v[2:], 5)
	binary.BigEndian.PutUint32(v[10:], 2)
	if r := run(lu, v, data, 0); r.Status != 0 {
		t.Errorf("VERIFY equal: %x", r.Sense)
	}
	bad := bytes.Clone(data)
	bad[700] ^= 1
	r = run(lu, v, bad, 0)
	if k, a := sense(r); k != KeyMiscompare || a != ASCMiscompareDuringVerify || binary.BigEndian.Uint32(r.Sense[3:]) != 700 {
		t.Errorf("VERIFY miscompare: %x", r.Sense)
	}
	// Reads and writes beyond the end.
	r = run(lu, []byte{OpRead10, 0, 0, 0, 0x07, 0xff, 0, 0, 2, 0}, nil, 1024)
	if k, a := sense(r); k != KeyIllegalRequest || a != ASCLBAOutOfRange {
		t.Errorf("read past end: %x/%x", k, a)
	}
	// Disk errors become MEDIUM ERROR.
	d.failAt = 0
	r = run(lu, []byte{OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}, nil, 512)
	if k, a := sense(r); k != KeyMediumError || a != ASCReadError {
		t.Errorf("failing read: %x/%x", k, a)
	}
	d.failAt = -1
	// MODE SENSE(6) all pages, saved values refused.
	r = run(lu, []byte{OpModeSense6, 0, 0x3f, 0, 255, 0}, nil, 255)
	if r.Status != 0 || int(r.Data[0])+1 != len(r.Data) || r.Data[3] != 8 {
		t.Errorf("MODE SENSE(6) %x", r.Data)
	}
	r = run(lu, []byte{OpModeSense6, 0, 0xff, 0, 255, 0}, nil, 255)
	if _, a := sense(r); a != ASCSavingNotSupported {
		t.Errorf("MODE SENSE saved: %x", r.Sense)
	}
	// INQUIRY VPD pages, sorted list, unknown page refused.
	r = run(lu, []byte{OpInquiry, 1, 0, 0, 255, 0}, nil, 255)
	if !bytes.Equal(r.Data[4:], []byte{0, 0x80, 0x83, 0xb0, 0xb1}) {
		t.Errorf("supported VPD %x", r.Data)
	}
	r = run(lu, []byte{OpInquiry, 1, 0x80, 0, 255, 0}, nil, 255)
	if string(r.Data[4:]) != "SERIAL1" {
		t.Errorf("serial %q", r.Data[4:])
	}
	if r := run(lu, []byte{OpInquiry, 1, 0x99, 0, 255, 0}, nil, 255); r.Status != StatusCheckCondition {
		t.Errorf("unknown VPD page accepted")
	}
	// Allocation length truncates.
	if r := run(lu, []byte{OpInquiry, 0, 0, 0, 5, 0}, nil, 255); len(r.Data) != 5 {
		t.Errorf("INQUIRY alloc 5 returned %d", len(r.Data))
	}
	// NACA in the control byte is refused.
	if r := run(lu, []byte{OpTestUnitReady, 0, 0, 0, 0, 0x04}, nil, 0); r.Status != StatusCheckCondition {
		t.Errorf("NACA accepted")
	}
	// LUN 0 and absent LUNs.
	if r := ExecuteLUN0(&Command{CDB: []byte{OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}}, false); r.Status != StatusCheckCondition {
		t.Errorf("read on absent LUN")
	} else if _, a := sense(r); a != ASCLUNNotSupported {
		t.Errorf("absent LUN sense %x", r.Sense)
	}
	if r := ExecuteLUN0(&Command{CDB: []byte{OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}}, true); r.Status != StatusCheckCondition {
		t.Errorf("read on LUN 0 accepted")
	}
}

func TestWriteSameAndFriends(t *testing.T) {
	lu, d := newLU(t, 2048)
	ws := make([]byte, 10)
	ws[0] = OpWriteSame10
	binary.BigEndian.PutUint32(ws[2:], 100)
	binary.BigEndian.PutUint16(ws[7:], 300)
	blk := bytes.Repeat([]byte{0x5a}, 512)
	if r := run(lu, ws, blk, 0); r.Status != 0 {
		t.Fatalf("WRITE SAME(10) %x", r.Sense)
	}
	if !bytes.Equal(d.b[100*512:400*512], bytes.Repeat(blk, 300)) || d.b[400*512] != 0 || d.b[100*512-1] != 0 {
		t.Error("WRITE SAME wrote the wrong blocks")
	}
	binary.BigEndian.PutUint16(ws[7:], 0)
	if r := run(lu, ws, blk, 0); r.Status != StatusCheckCondition {
		t.Error("WRITE SAME of 0 blocks accepted (WSNZ=1)")
	}
	ws16 := make([]byte, 16)
	ws16[0], ws16[1] = OpWriteSame16, 0x01 // NDOB: zeros, no data
	binary.BigEndian.PutUint64(ws16[2:], 100)
	binary.BigEndian.PutUint32(ws16[10:], 10)
	if r := run(lu, ws16, nil, 0); r.Status != 0 {
		t.Fatalf("WRITE SAME(16) NDOB %x", r.Sense)
	}
	if d.b[100*512] != 0 || d.b[110*512] != 0x5a {
		t.Error("NDOB did not zero exactly 10 blocks")
	}
	ws16[1] = 0x08 // UNMAP: not provisioned thinly
	if r := run(lu, ws16, blk, 0); r.Status != StatusCheckCondition {
		t.Error("WRITE SAME with UNMAP accepted")
	}
}

// zeroingDisk is a memDisk with WriteZeroesAt (a sparse file's hole
// punching), recording the ranges it was given.
type zeroingDisk struct {
	memDisk
	zeroed [][2]int64
}

func (z *zeroingDisk) WriteZeroesAt(off, n int64) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.zeroed = append(z.zeroed, [2]int64{off, n})
	clear(z.b[off : off+n])
	return nil
}

// TestWriteSameZeroesThroughTheDisk: WRITE SAME of a zero block (or NDOB)
// on a disk that can write zeroes is one WriteZeroesAt over the range; a
// non-zero block is written as data.
func TestWriteSameZeroesThroughTheDisk(t *testing.T) {
	d := &zeroingDisk{memDisk: memDisk{b: bytes.Repeat([]byte{0xee}, 2048*512), failAt: -1}}
	lu, err := NewLU(LUConfig{Disk: d, Size: int64(len(d.b)), BlockSize: 512, Serial: "SERIAL1", NAA: 0x1234})
	if err != nil {
		t.Fatal(err)
	}
	ws16 := func(flags byte, lba uint64, n uint32) []byte {
		c := make([]byte, 16)
		c[0], c[1] = OpWriteSame16, flags
		binary.BigEndian.PutUint64(c[2:], lba)
		binary.BigEndian.PutUint32(c[10:], n)
		return c
	}
	if r := run(lu, ws16(0, 100, 300), make([]byte, 512), 0); r.Status != 0 {
		t.Fatalf("WRITE SAME(16) of a zero block: %x", r.Sense)
	}
	if r := run(lu, ws16(0x01, 1000, 10), nil, 0); r.Status != 0 {
		t.Fatalf("WRITE SAME(16) NDOB: %x", r.Sense)
	}
	if r := run(lu, ws16(0, 1500, 2), bytes.Repeat([]byte{1}, 512), 0); r.Status != 0 {
		t.Fatalf("WRITE SAME(16) of a data block: %x", r.Sense)
	}
	want := [][2]int64{{100 * 512, 300 * 512}, {1000 * 512, 10 * 512}}
	if fmt.Sprint(d.zeroed) != fmt.Sprint(want) {
		t.Errorf("WriteZeroesAt calls %v, want %v", d.zeroed, want)
	}
	if d.b[100*512-1] != 0xee || d.b[100*512] != 0 || d.b[400*512-1] != 0 || d.b[400*512] != 0xee || d.b[1500*512] != 1 || d.b[1502*512] != 0xee {
		t.Error("WRITE SAME changed the wrong blocks")
	}
}

func TestNewLU(t *testing.T) {
	d := &memDisk{b: make([]byte, 4096), failAt: -1}
	for _, c := range []LUConfig{
		{Size: 4096},
		{Disk: d, Size: 100},
		{Disk: d, Size: 4096, BlockSize: 100},
		{Disk: d, Size: -1},
	} {
		if _, err := NewLU(c); err == nil {
			t.Errorf("NewLU(%+v) accepted", c)
		}
	}
}

// FuzzSCSICommand feeds arbitrary CDBs and data to the LU and to LUN 0;
// nothing may panic, data never exceeds the buffer, a CHECK CONDITION
// always carries parseable sense.
func FuzzSCSICommand(f *testing.F) {
	seeds := [][]byte{
		{OpInquiry, 1, 0xb0, 0, 255, 0},
		{OpModeSense10, 0, 0x3f, 0xff, 0, 0, 0, 1, 0, 0},
		{OpRead16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0},
		{OpWrite16, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0},
		{OpCompareAndWrite, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		{OpOrWrite16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		{OpWriteSame16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0},
		{OpReportLUNs, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
		{OpServiceActionIn16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
		{OpVerify10, 0x06, 0, 0, 0, 0, 0, 0, 4, 0},
	}
	for _, s := range seeds {
		f.Add(s, []byte{1, 2, 3}, uint16(512), true)
	}
	f.Fuzz(func(t *testing.T, cdb, out []byte, inLen uint16, lun1 bool) {
		lu, _ := newLU(t, 64)
		c := &Command{CDB: cdb, DataOut: out, DataIn: make([]byte, inLen)}
		var r Result
		if lun1 {
			r = lu.Execute(c)
		} else {
			r = ExecuteLUN0(c, len(out)%2 == 0)
		}
		if len(r.Data) > int(inLen) {
			t.Fatalf("%d bytes of data for a %d-byte buffer", len(r.Data), inLen)
		}
		if r.Status == StatusCheckCondition {
			if _, _, ok := ParseSense(r.Sense); !ok {
				t.Fatalf("CHECK CONDITION with sense %x", r.Sense)
			}
		}
	})
}

// TestUsageTableMatchesDispatch: REPORT SUPPORTED OPERATION CODES lists
// exactly the commands the dispatch table implements.
func TestUsageTableMatchesDispatch(t *testing.T) {
	lu, _ := newLU(t, 64)
	listed := map[byte]bool{}
	for _, e := range lu.usage {
		listed[e.op] = true
		if lu.table[e.op] == nil {
			t.Errorf("opcode %#x listed but not implemented", e.op)
		}
		if e.usage[0] != e.op || len(e.usage) != cdbLen(e.op) {
			t.Errorf("opcode %#x: usage % x", e.op, e.usage)
		}
	}
	for op, h := range lu.table {
		if h != nil && !listed[byte(op)] {
			t.Errorf("opcode %#x implemented but not listed", op)
		}
	}
	r := run(lu, []byte{OpMaintenanceIn, saReportOpcodes, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}, nil, 4096)
	if r.Status != 0 || int(binary.BigEndian.Uint32(r.Data))+4 != len(r.Data) || len(r.Data) != 4+8*len(lu.usage) {
		t.Errorf("RSOC all: status %d len %d", r.Status, len(r.Data))
	}
	r = run(lu, []byte{OpMaintenanceIn, saReportOpcodes, 1, OpRead10, 0, 0, 0, 0, 0x10, 0, 0, 0}, nil, 4096)
	if r.Status != 0 || r.Data[1]&7 != 3 || r.Data[5]&0x18 != 0x18 {
		t.Errorf("RSOC READ(10): %x", r.Data)
	}
	r = run(lu, []byte{OpMaintenanceIn, saReportOpcodes, 1, OpServiceActionIn16, 0, 0, 0, 0, 0x10, 0, 0, 0}, nil, 4096)
	if r.Status != StatusCheckCondition {
		t.Errorf("RSOC option 1 on a service-action opcode accepted")
	}
}

func TestReserve6(t *testing.T) {
	lu, _ := newLU(t, 64)
	as := func(n uint64, cdb ...byte) Result {
		return lu.Execute(&Command{CDB: cdb, DataIn: make([]byte, 512), Nexus: n})
	}
	read := []byte{OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	if r := as(1, OpReserve6, 0, 0, 0, 0, 0); r.Status != 0 {
		t.Fatalf("RESERVE(6): %x", r.Sense)
	}
	if r := as(1, read...); r.Status != 0 {
		t.Errorf("holder's READ: %d", r.Status)
	}
	for _, cdb := range [][]byte{read, {OpReserve6, 0, 0, 0, 0, 0}, {OpModeSense6, 0, 0x3f, 0, 255, 0}, {OpTestUnitReady, 0, 0, 0, 0, 0}} {
		if r := as(2, cdb...); r.Status != StatusReservationConflict {
			t.Errorf("other nexus %#x: status %d, want RESERVATION CONFLICT", cdb[0], r.Status)
		}
	}
	for _, cdb := range [][]byte{{OpInquiry, 0, 0, 0, 36, 0}, {OpRelease6, 0, 0, 0, 0, 0}} {
		if r := as(2, cdb...); r.Status != 0 {
			t.Errorf("other nexus %#x: status %d, want GOOD", cdb[0], r.Status)
		}
	}
	lu.NexusLost(1)
	if r := as(2, OpReserve6, 0, 0, 0, 0, 0); r.Status != 0 {
		t.Errorf("RESERVE after the holder's nexus was lost: %d", r.Status)
	}
	lu.Reset()
	if r := as(3, read...); r.Status != 0 {
		t.Errorf("READ after LU reset: %d", r.Status)
	}
}
