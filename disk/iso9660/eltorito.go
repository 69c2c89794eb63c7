package iso9660

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Platform is an El Torito platform ID.
type Platform uint8

// Platforms firmware looks for.
const (
	PlatformBIOS Platform = 0x00 // 80x86 (legacy BIOS)
	PlatformPPC  Platform = 0x01
	PlatformMac  Platform = 0x02
	PlatformEFI  Platform = 0xEF
)

func (p Platform) String() string {
	switch p {
	case PlatformBIOS:
		return "BIOS"
	case PlatformPPC:
		return "PowerPC"
	case PlatformMac:
		return "Mac"
	case PlatformEFI:
		return "EFI"
	}
	return fmt.Sprintf("platform 0x%02x", uint8(p))
}

// Emulation is a boot entry's media type.
type Emulation uint8

// Boot media emulations.
const (
	NoEmulation Emulation = 0
	Floppy12    Emulation = 1
	Floppy144   Emulation = 2
	Floppy288   Emulation = 3
	HardDisk    Emulation = 4
)

// BootEntry is one entry of the El Torito boot catalog.
type BootEntry struct {
	Platform  Platform
	Bootable  bool
	Emulation Emulation
	// LoadSegment is where a BIOS loads the image (0: the default 0x7C0).
	LoadSegment uint16
	// Sectors is the number of 512-byte virtual sectors the firmware loads.
	Sectors uint16
	// LBA is the image's first CD sector.
	LBA int64
}

// ErrNoElTorito says the image has no El Torito boot record: it is not
// bootable from a CD drive.
var ErrNoElTorito = errors.New("iso9660: no El Torito boot record (the image is not bootable)")

// maxCatalogEntries bounds the boot catalog walk (one sector holds 64).
const maxCatalogEntries = 64

// BootCatalog reads the El Torito boot catalog: the initial/default entry
// first, then each section's entries, with the platform of their section.
func (im *Image) BootCatalog() ([]BootEntry, error) {
	if im.bootLBA < 0 {
		return nil, ErrNoElTorito
	}
	if im.bootLBA < 16 || (im.bootLBA+1)*SectorSize > im.size {
		return nil, fmt.Errorf("iso9660: boot catalog at sector %d is outside the image", im.bootLBA)
	}
	b := make([]byte, SectorSize)
	if _, err := im.r.ReadAt(b, im.bootLBA*SectorSize); err != nil {
		return nil, fmt.Errorf("iso9660: read boot catalog: %w", err)
	}
	return parseCatalog(b)
}

func parseCatalog(b []byte) ([]BootEntry, error) {
	v := b[:32]
	if v[0] != 0x01 || v[30] != 0x55 || v[31] != 0xAA {
		return nil, errors.New("iso9660: boot catalog has no validation entry")
	}
	var sum uint16
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(v[i:])
	}
	if sum != 0 {
		return nil, errors.New("iso9660: boot catalog validation entry checksum mismatch")
	}
	platform := Platform(v[1])
	out := []BootEntry{entryAt(b[32:64], platform)}
	// Section headers (0x90: more follow, 0x91: the last) and their entries.
	off := 64
	for n := 0; off+32 <= len(b) && n < maxCatalogEntries; n++ {
		h := b[off : off+32]
		if h[0] != 0x90 && h[0] != 0x91 {
			break
		}
		last := h[0] == 0x91
		p := Platform(h[1])
		count := int(binary.LittleEndian.Uint16(h[2:]))
		off += 32
		for i := 0; i < count && off+32 <= len(b); i++ {
			e := b[off : off+32]
			off += 32
			if e[0] == 0x44 { // section entry extension
				i--
				continue
			}
			out = append(out, entryAt(e, p))
		}
		if last {
			break
		}
	}
	return out, nil
}

func entryAt(e []byte, p Platform) BootEntry {
	return BootEntry{
		Platform:    p,
		Bootable:    e[0] == 0x88,
		Emulation:   Emulation(e[1] & 0x0f),
		LoadSegment: binary.LittleEndian.Uint16(e[2:]),
		Sectors:     binary.LittleEndian.Uint16(e[6:]),
		LBA:         int64(binary.LittleEndian.Uint32(e[8:])),
	}
}

// BootEntryFor returns the first bootable entry for platform p.
func (im *Image) BootEntryFor(p Platform) (BootEntry, error) {
	entries, err := im.BootCatalog()
	if err != nil {
		return BootEntry{}, err
	}
	for _, e := range entries {
		if e.Bootable && e.Platform == p {
			return e, nil
		}
	}
	return BootEntry{}, fmt.Errorf("iso9660: no bootable El Torito %s entry", p)
}

// BootImage returns the image an entry boots. A no-emulation entry's
// sector count is what a BIOS loads (often 4 sectors of isolinux.bin);
// for an EFI entry, whose count is often 0 or 1 (too small for the 16-bit
// field), the size comes from the FAT boot sector in the image when it
// has one, bounded by the end of the ISO.
func (im *Image) BootImage(e BootEntry) (*io.SectionReader, error) {
	start := e.LBA * SectorSize
	if e.LBA < 16 || start >= im.size {
		return nil, fmt.Errorf("iso9660: boot image at sector %d is outside the image", e.LBA)
	}
	size := int64(e.Sectors) * 512
	if size <= 512 || e.Platform == PlatformEFI {
		if n := fatSize(im.r, start); n > 0 {
			size = n
		}
	}
	if size == 0 {
		size = 512
	}
	if start+size > im.size {
		size = im.size - start
	}
	return io.NewSectionReader(im.r, start, size), nil
}

// fatSize is the size a FAT boot sector at off declares (0 if none).
func fatSize(r io.ReaderAt, off int64) int64 {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, off); err != nil {
		return 0
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return 0
	}
	bps := int64(binary.LittleEndian.Uint16(bs[0x0B:]))
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return 0
	}
	total := int64(binary.LittleEndian.Uint16(bs[0x13:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(bs[0x20:]))
	}
	return total * bps
}
