package disk

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical sector size metalbed partitions with; iSCSI
// LUNs exported by the ramdisk and image files both use 512.
const SectorSize = 512

const (
	mbrBootCodeSize   = 440
	mbrDiskIDOffset   = 440
	mbrTableOffset    = 446
	mbrSignatureOff   = 510
	gptHeaderSize     = 92
	gptEntrySize      = 128
	gptEntryCount     = 128
	gptEntriesSectors = gptEntryCount * gptEntrySize / SectorSize // 32
)

// GPT partition type GUIDs, as parted sets them for Ironic's partitions.
const (
	TypeGUIDESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeGUIDBIOSBoot  = "21686148-6449-6E6F-744E-656564454649"
	TypeGUIDLinuxFS   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeGUIDLinuxSwap = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
)

// MBR partition type bytes, as parted sets them.
const (
	mbrTypeLinux      = 0x83
	mbrTypeSwap       = 0x82
	mbrTypeFAT32LBA   = 0x0c
	mbrTypeESP        = 0xef
	mbrTypeProtective = 0xee
)

// guid is a GPT GUID in its on-disk (mixed-endian) byte order.
type guid [16]byte

func (g guid) String() string {
	var b [16]byte
	b[0], b[1], b[2], b[3] = g[3], g[2], g[1], g[0]
	b[4], b[5] = g[5], g[4]
	b[6], b[7] = g[7], g[6]
	copy(b[8:], g[8:])
	s := hex.EncodeToString(b[:])
	return strings.ToUpper(s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32])
}

func (g guid) isZero() bool { return g == guid{} }

func parseGUID(s string) (guid, error) {
	var g guid
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || len(s) != 36 {
		return g, fmt.Errorf("malformed GUID %q", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return g, fmt.Errorf("malformed GUID %q: %w", s, err)
	}
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	copy(g[8:], b[8:])
	return g, nil
}

func mustGUID(s string) guid {
	g, err := parseGUID(s)
	if err != nil {
		panic(err) // only called on the constants above
	}
	return g
}

// randomUUID returns 16 random bytes with the RFC 4122 version 4 bits set,
// in the big-endian order of a file system UUID.
func randomUUID() ([16]byte, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("random UUID: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

// randomGUID is randomUUID in GPT byte order.
func randomGUID() (guid, error) {
	u, err := randomUUID()
	if err != nil {
		return guid{}, err
	}
	g, _ := parseGUID(formatUUID(u))
	return g, nil
}

// formatUUID prints big-endian UUID bytes the way blkid does (lower case).
func formatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// tableEntry is one partition for the label writers: sectors, inclusive start.
type tableEntry struct {
	startLBA, sectors int64
	mbrType           byte
	bootable          bool
	typeGUID          guid
	partGUID          guid
	name              string
}

// writeMBR writes an msdos label keeping nothing of the old sector 0 but
// the boot code area when keepBootCode is set.
func writeMBR(w io.WriterAt, old []byte, diskID uint32, entries []tableEntry) error {
	if len(entries) > 4 {
		return fmt.Errorf("msdos label: %d partitions, at most 4 primary partitions fit", len(entries))
	}
	sec := make([]byte, SectorSize)
	if old != nil {
		copy(sec[:mbrBootCodeSize], old)
	}
	binary.LittleEndian.PutUint32(sec[mbrDiskIDOffset:], diskID)
	for i, e := range entries {
		p := sec[mbrTableOffset+16*i : mbrTableOffset+16*(i+1)]
		if e.bootable {
			p[0] = 0x80
		}
		// CHS fields: the LBA-only marker (0xfe 0xff 0xff) as parted writes
		// for disks past the CHS limit; readers use the LBA fields.
		copy(p[1:4], []byte{0xfe, 0xff, 0xff})
		p[4] = e.mbrType
		copy(p[5:8], []byte{0xfe, 0xff, 0xff})
		if e.startLBA > 0xffffffff || e.sectors > 0xffffffff {
			return fmt.Errorf("msdos label: partition %d beyond 2 TiB", i+1)
		}
		binary.LittleEndian.PutUint32(p[8:], uint32(e.startLBA))
		binary.LittleEndian.PutUint32(p[12:], uint32(e.sectors))
	}
	sec[mbrSignatureOff], sec[mbrSignatureOff+1] = 0x55, 0xaa
	if _, err := w.WriteAt(sec, 0); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	return nil
}

// gptLayout computes the usable sector range of a GPT disk.
func gptUsable(diskSectors int64) (first, last int64) {
	return 2 + gptEntriesSectors, diskSectors - 2 - gptEntriesSectors
}

// writeGPT writes a protective MBR, the primary and the backup GPT.
func writeGPT(w io.WriterAt, diskSectors int64, diskGUID guid, entries []tableEntry) error {
	if len(entries) > gptEntryCount {
		return fmt.Errorf("gpt label: %d partitions, at most %d", len(entries), gptEntryCount)
	}
	first, last := gptUsable(diskSectors)
	arr := make([]byte, gptEntryCount*gptEntrySize)
	for i, e := range entries {
		if e.startLBA < first || e.startLBA+e.sectors-1 > last {
			return fmt.Errorf("gpt label: partition %d outside usable sectors %d-%d", i+1, first, last)
		}
		p := arr[i*gptEntrySize : (i+1)*gptEntrySize]
		copy(p[0:16], e.typeGUID[:])
		copy(p[16:32], e.partGUID[:])
		binary.LittleEndian.PutUint64(p[32:], uint64(e.startLBA))
		binary.LittleEndian.PutUint64(p[40:], uint64(e.startLBA+e.sectors-1))
		for j, r := range utf16.Encode([]rune(e.name)) {
			if j >= 36 {
				break
			}
			binary.LittleEndian.PutUint16(p[56+2*j:], r)
		}
	}
	arrCRC := crc32.ChecksumIEEE(arr)

	header := func(current, backup, entriesLBA int64) []byte {
		h := make([]byte, SectorSize)
		copy(h[0:8], "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
		binary.LittleEndian.PutUint64(h[24:], uint64(current))
		binary.LittleEndian.PutUint64(h[32:], uint64(backup))
		binary.LittleEndian.PutUint64(h[40:], uint64(first))
		binary.LittleEndian.PutUint64(h[48:], uint64(last))
		copy(h[56:72], diskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], gptEntryCount)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], arrCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	lastLBA := diskSectors - 1
	writes := []struct {
		off  int64
		data []byte
	}{
		{2 * SectorSize, arr},
		{SectorSize, header(1, lastLBA, 2)},
		{(lastLBA - gptEntriesSectors) * SectorSize, arr},
		{lastLBA * SectorSize, header(lastLBA, 1, lastLBA-gptEntriesSectors)},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, wr.off); err != nil {
			return fmt.Errorf("write GPT at byte %d: %w", wr.off, err)
		}
	}
	// Protective MBR: one 0xEE partition covering the disk.
	pm := make([]byte, SectorSize)
	p := pm[mbrTableOffset:]
	copy(p[1:4], []byte{0x00, 0x02, 0x00})
	p[4] = mbrTypeProtective
	copy(p[5:8], []byte{0xff, 0xff, 0xff})
	binary.LittleEndian.PutUint32(p[8:], 1)
	n := diskSectors - 1
	if n > 0xffffffff {
		n = 0xffffffff
	}
	binary.LittleEndian.PutUint32(p[12:], uint32(n))
	pm[mbrSignatureOff], pm[mbrSignatureOff+1] = 0x55, 0xaa
	if _, err := w.WriteAt(pm, 0); err != nil {
		return fmt.Errorf("write protective MBR: %w", err)
	}
	return nil
}

// errNoGPT means the disk has no valid GPT header at LBA 1.
var errNoGPT = errors.New("no valid GPT")

// gptTable is a parsed GPT.
type gptTable struct {
	diskGUID guid
	entries  []tableEntry // only used entries, in table order
	numbers  []int        // 1-based slot numbers of entries
}

// readGPT parses the primary GPT, falling back to the backup header. It
// bounds every field: this reads untrusted disks.
func readGPT(r io.ReaderAt, diskSectors int64) (*gptTable, error) {
	t, err := readGPTAt(r, 1, diskSectors)
	if err == nil || diskSectors < 2 {
		return t, err
	}
	if bt, berr := readGPTAt(r, diskSectors-1, diskSectors); berr == nil {
		return bt, nil
	}
	return nil, err
}

func readGPTAt(r io.ReaderAt, lba, diskSectors int64) (*gptTable, error) {
	h := make([]byte, SectorSize)
	if _, err := r.ReadAt(h, lba*SectorSize); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", errNoGPT, err)
	}
	if string(h[0:8]) != "EFI PART" {
		return nil, errNoGPT
	}
	hsize := binary.LittleEndian.Uint32(h[12:])
	if hsize < gptHeaderSize || hsize > SectorSize {
		return nil, fmt.Errorf("%w: header size %d", errNoGPT, hsize)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	c := append([]byte(nil), h[:hsize]...)
	clear(c[16:20])
	if crc32.ChecksumIEEE(c) != want {
		return nil, fmt.Errorf("%w: header CRC mismatch", errNoGPT)
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(h[72:]))
	n := binary.LittleEndian.Uint32(h[80:])
	esize := binary.LittleEndian.Uint32(h[84:])
	if esize < gptEntrySize || esize > 4096 || esize%8 != 0 || n == 0 || n > 1024 {
		return nil, fmt.Errorf("%w: %d entries of %d bytes", errNoGPT, n, esize)
	}
	total := int64(n) * int64(esize)
	if entriesLBA < 1 || entriesLBA >= diskSectors || entriesLBA*SectorSize+total > diskSectors*SectorSize {
		return nil, fmt.Errorf("%w: entries at LBA %d outside the disk", errNoGPT, entriesLBA)
	}
	arr := make([]byte, total)
	if _, err := r.ReadAt(arr, entriesLBA*SectorSize); err != nil {
		return nil, fmt.Errorf("%w: read entries: %v", errNoGPT, err)
	}
	if crc32.ChecksumIEEE(arr) != binary.LittleEndian.Uint32(h[88:]) {
		return nil, fmt.Errorf("%w: entries CRC mismatch", errNoGPT)
	}
	t := &gptTable{}
	copy(t.diskGUID[:], h[56:72])
	for i := 0; i < int(n); i++ {
		p := arr[i*int(esize) : (i+1)*int(esize)]
		var e tableEntry
		copy(e.typeGUID[:], p[0:16])
		if e.typeGUID.isZero() {
			continue
		}
		copy(e.partGUID[:], p[16:32])
		start := binary.LittleEndian.Uint64(p[32:])
		end := binary.LittleEndian.Uint64(p[40:])
		if end < start || end >= uint64(diskSectors) {
			return nil, fmt.Errorf("%w: entry %d spans sectors %d-%d outside the disk", errNoGPT, i+1, start, end)
		}
		e.startLBA, e.sectors = int64(start), int64(end-start+1)
		u := make([]uint16, 0, 36)
		for j := 0; j < 36; j++ {
			v := binary.LittleEndian.Uint16(p[56+2*j:])
			if v == 0 {
				break
			}
			u = append(u, v)
		}
		e.name = string(utf16.Decode(u))
		t.entries = append(t.entries, e)
		t.numbers = append(t.numbers, i+1)
	}
	return t, nil
}

// mbrTable is a parsed msdos label (primary partitions only).
type mbrTable struct {
	diskID   uint32
	bootCode bool
	signed   bool
	entries  []tableEntry
	numbers  []int
}

func parseMBR(sec []byte, diskSectors int64) mbrTable {
	var t mbrTable
	t.diskID = binary.LittleEndian.Uint32(sec[mbrDiskIDOffset:])
	t.signed = sec[mbrSignatureOff] == 0x55 && sec[mbrSignatureOff+1] == 0xaa
	for _, b := range sec[:mbrBootCodeSize] {
		if b != 0 {
			t.bootCode = true
			break
		}
	}
	for i := 0; i < 4; i++ {
		p := sec[mbrTableOffset+16*i : mbrTableOffset+16*(i+1)]
		if p[4] == 0 {
			continue
		}
		start := int64(binary.LittleEndian.Uint32(p[8:]))
		n := int64(binary.LittleEndian.Uint32(p[12:]))
		if n == 0 || start == 0 || start+n > diskSectors {
			continue // empty or pointing outside the disk: firmware ignores it too
		}
		t.entries = append(t.entries, tableEntry{startLBA: start, sectors: n, mbrType: p[4], bootable: p[0]&0x80 != 0})
		t.numbers = append(t.numbers, i+1)
	}
	return t
}
