package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Files a local boot looks for.
const (
	GrubConfigPath  = "/boot/grub/grub.cfg"
	ESPLoaderPath   = "/EFI/BOOT/BOOTX64.EFI"
	ESPGrubCfgPath  = "/EFI/BOOT/grub.cfg"
	grubConfigLimit = 1 << 20
	probeBytes      = 32768 + 2048 // through ISO 9660's primary volume descriptor
)

// Inspection is what firmware finds on a disk when it boots locally.
type Inspection struct {
	Layout Layout
	// BootCode is set when the MBR's 440-byte boot code area is not all
	// zero; BootSignature when sector 0 ends in 0x55 0xAA.
	BootCode      bool
	BootSignature bool
	// BootLoader names the MBR boot code when it is one metalbed knows:
	// "metalbed" (what InstallBootloader writes for bios), "grub" (GRUB's
	// boot.img), "unknown" for other code, "" when there is none.
	BootLoader string
	// ESP is the Number of the EFI system partition (by GPT type GUID, MBR
	// type 0xEF or FAT label efi-part); 0 when there is none.
	ESP int
	// ESPLoader is set when the ESP holds EFI/BOOT/BOOTX64.EFI;
	// ESPLoaderPE when that file starts as a PE/COFF image (MZ ... PE\0\0).
	ESPLoader   bool
	ESPLoaderPE bool
	// ESPLoaderGrub is set when that file is a GRUB image from
	// grub-mkimage (a PE/COFF image with a "mods" section).
	ESPLoaderGrub bool
	// ESPGrubConfig is EFI/BOOT/grub.cfg on the ESP, if any.
	ESPGrubConfig string
	// GrubConfigs holds /boot/grub/grub.cfg of every ext2/3/4 partition
	// that has one.
	GrubConfigs []GrubConfig
	// Problems lists what could not be read, for the console.
	Problems []string
}

// GrubConfig is a grub.cfg and the file system it was read from.
type GrubConfig struct {
	Partition int
	FSUUID    string
	Text      string
}

// Partition returns the partition with a number, or nil.
func (in *Inspection) Partition(n int) *Partition {
	for i := range in.Layout.Partitions {
		if in.Layout.Partitions[i].Number == n {
			return &in.Layout.Partitions[i]
		}
	}
	return nil
}

// Inspect reads the partition table and the file systems of a disk the way
// firmware and a boot loader would. The disk is untrusted: malformed
// structures become Problems, never panics; the error is for a disk that
// cannot be read at all.
func Inspect(disk io.ReaderAt, size int64) (*Inspection, error) {
	if size < SectorSize {
		return nil, fmt.Errorf("inspect: disk of %d bytes has no sector 0", size)
	}
	size = size / SectorSize * SectorSize
	disk = &sectorDisk{r: disk, size: size}
	sec := make([]byte, SectorSize)
	if _, err := disk.ReadAt(sec, 0); err != nil {
		return nil, fmt.Errorf("inspect: read sector 0: %w", err)
	}
	sectors := size / SectorSize
	ins := &Inspection{}
	mbr := parseMBR(sec, sectors)
	ins.BootCode, ins.BootSignature = mbr.bootCode, mbr.signed
	ins.BootLoader = bootLoaderOf(sec[:mbrBootCodeSize], mbr.bootCode)
	if !mbr.signed {
		return ins, nil
	}
	protective := len(mbr.entries) > 0 && mbr.entries[0].mbrType == mbrTypeProtective
	if !protective {
		// A 0xEE entry anywhere still means GPT to Linux; the first one is
		// what UEFI requires.
		for _, e := range mbr.entries {
			if e.mbrType == mbrTypeProtective {
				protective = true
			}
		}
	}
	if protective {
		t, err := readGPT(disk, sectors)
		if err != nil {
			ins.Problems = append(ins.Problems, fmt.Sprintf("protective MBR but %v", err))
			return ins, nil
		}
		ins.Layout.Label, ins.Layout.DiskID = LabelGPT, t.diskGUID.String()
		for i, e := range t.entries {
			ins.Layout.Partitions = append(ins.Layout.Partitions, Partition{
				Number: t.numbers[i], Start: e.startLBA * SectorSize, Size: e.sectors * SectorSize,
				Type: e.typeGUID.String(), PartUUID: strings.ToLower(e.partGUID.String()), Name: e.name,
			})
		}
	} else {
		ins.Layout.Label, ins.Layout.DiskID = LabelMSDOS, fmt.Sprintf("0x%08x", mbr.diskID)
		for i, e := range mbr.entries {
			ins.Layout.Partitions = append(ins.Layout.Partitions, Partition{
				Number: mbr.numbers[i], Start: e.startLBA * SectorSize, Size: e.sectors * SectorSize,
				Type: fmt.Sprintf("0x%02x", e.mbrType), Bootable: e.bootable,
				PartUUID: fmt.Sprintf("%08x-%02x", mbr.diskID, mbr.numbers[i]),
			})
		}
	}
	lastLinux := -1
	for i := range ins.Layout.Partitions {
		p := &ins.Layout.Partitions[i]
		ins.probe(disk, p)
		switch {
		case p.Type == TypeGUIDESP || p.Type == "0xef" || (p.FSType == "vfat" && strings.EqualFold(p.Label, ESPLabel)):
			p.Role = RoleESP
		case p.Type == TypeGUIDBIOSBoot:
			p.Role = RoleBIOSBoot
		case p.FSType == "swap":
			p.Role = RoleSwap
		case strings.EqualFold(p.Label, configDriveLabel):
			p.Role = RoleConfigDrive
		case p.Label == ephemeralLabel:
			p.Role = RoleEphemeral
		case strings.HasPrefix(p.FSType, "ext"):
			lastLinux = i
		}
	}
	if lastLinux >= 0 {
		ins.Layout.Partitions[lastLinux].Role = RoleRoot
	}
	for i := range ins.Layout.Partitions {
		p := &ins.Layout.Partitions[i]
		if p.Role == RoleESP && ins.ESP == 0 {
			ins.ESP = p.Number
			ins.inspectESP(disk, p)
		}
	}
	return ins, nil
}

// probe fills FSType, Label and UUID from the partition's first bytes.
func (ins *Inspection) probe(disk io.ReaderAt, p *Partition) {
	n := min(int64(probeBytes), p.Size)
	b := make([]byte, n)
	if _, err := disk.ReadAt(b, p.Start); err != nil && !errors.Is(err, io.EOF) {
		ins.Problems = append(ins.Problems, fmt.Sprintf("partition %d: %v", p.Number, err))
		return
	}
	part := io.NewSectionReader(disk, p.Start, p.Size)
	switch {
	case n >= 2048 && binary.LittleEndian.Uint16(b[1024+0x38:]) == ext4Magic:
		sb, err := parseExt4Super(b[1024:2048])
		if err != nil {
			ins.Problems = append(ins.Problems, fmt.Sprintf("partition %d: %v", p.Number, err))
			return
		}
		p.FSType, p.Label, p.UUID = "ext4", sb.Label, sb.UUID
		cfg, err := ReadExt4File(part, p.Size, GrubConfigPath, grubConfigLimit)
		if err == nil {
			ins.GrubConfigs = append(ins.GrubConfigs, GrubConfig{Partition: p.Number, FSUUID: sb.UUID, Text: string(cfg)})
		}
	case n >= swapPageSize:
		if u, l, ok := parseSwap(b); ok {
			p.FSType, p.Label, p.UUID = "swap", l, u
			return
		}
		fallthrough
	default:
		if n >= 32774 && string(b[32769:32774]) == "CD001" {
			p.FSType, p.Label = "iso9660", isoLabel(b[32768:])
			return
		}
		if f, err := openFAT(part, p.Size); err == nil {
			p.FSType, p.Label, p.UUID = "vfat", f.label, f.serial
		}
	}
}

func (ins *Inspection) inspectESP(disk io.ReaderAt, p *Partition) {
	part := io.NewSectionReader(disk, p.Start, p.Size)
	f, err := openFAT(part, p.Size)
	if err != nil {
		ins.Problems = append(ins.Problems, fmt.Sprintf("ESP (partition %d): %v", p.Number, err))
		return
	}
	e, err := f.stat(ESPLoaderPath)
	if err != nil || e.dir || e.size == 0 {
		return
	}
	ins.ESPLoader = true
	if head, err := f.readChain(e.cluster, 4096); err == nil && len(head) >= 0x40 {
		head = head[:min(int64(len(head)), e.size)]
		ins.ESPLoaderPE = IsPE(head)
		ins.ESPLoaderGrub = ins.ESPLoaderPE && IsGrubEFI(head)
	}
	if cfg, err := ReadFATFile(part, p.Size, ESPGrubCfgPath, grubConfigLimit); err == nil {
		ins.ESPGrubConfig = string(cfg)
	}
}

// IsPE reports whether b starts a PE/COFF image (an EFI application):
// "MZ", and at the offset stored at 0x3c the signature "PE\0\0". A Linux
// bzImage built with CONFIG_EFI_STUB passes this.
func IsPE(b []byte) bool {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return false
	}
	off := int64(binary.LittleEndian.Uint32(b[0x3c:]))
	return off >= 0x40 && off+4 <= int64(len(b)) && string(b[off:off+4]) == "PE\x00\x00"
}

// IsGrubEFI reports whether a PE/COFF image's section table (within head)
// names the "mods" section grub-mkimage puts GRUB's modules in.
func IsGrubEFI(head []byte) bool {
	if !IsPE(head) {
		return false
	}
	pe := int(binary.LittleEndian.Uint32(head[0x3c:]))
	if pe+24 > len(head) {
		return false
	}
	n := int(binary.LittleEndian.Uint16(head[pe+6:]))
	opt := int(binary.LittleEndian.Uint16(head[pe+20:]))
	sec := pe + 24 + opt
	for i := 0; i < n && sec+40*(i+1) <= len(head); i++ {
		if string(bytes.TrimRight(head[sec+40*i:sec+40*i+8], "\x00")) == "mods" {
			return true
		}
	}
	return false
}

// GrubEntry is the first boot entry of a grub.cfg.
type GrubEntry struct {
	Kernel  string // path of the linux line
	Initrd  string
	Cmdline string // as written, GRUB variables ($partuuid) unexpanded
	// RootUUID is the root file system's UUID: from root=UUID= on the
	// linux line, else from the entry's "search --fs-uuid" (GrubConfigText
	// boots root=PARTUUID=$partuuid of the partition that search finds).
	RootUUID string
	// PartUUIDVars are the variables the entry sets, before its linux
	// line, with "probe --set=VAR --part-uuid $root": $root's partition
	// UUID.
	PartUUIDVars []string
}

// ParseGrubConfig returns the first menu entry's linux/initrd lines, the
// part of grub.cfg metalbed's firmware follows.
func ParseGrubConfig(text string) (GrubEntry, error) {
	var e GrubEntry
	searched := ""
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "search":
			if e.Kernel == "" && slices.Contains(f, "--fs-uuid") && slices.Contains(f, "--set=root") {
				searched = f[len(f)-1]
			}
		case "probe":
			if e.Kernel != "" || !slices.Contains(f, "--part-uuid") {
				continue
			}
			for i, a := range f {
				if v, ok := strings.CutPrefix(a, "--set="); ok {
					e.PartUUIDVars = append(e.PartUUIDVars, v)
				} else if a == "--set" && i+1 < len(f) {
					e.PartUUIDVars = append(e.PartUUIDVars, f[i+1])
				}
			}
		case "linux", "linuxefi", "linux16":
			if e.Kernel != "" {
				continue
			}
			e.Kernel, e.Cmdline = f[1], strings.Join(f[2:], " ")
			for _, arg := range f[2:] {
				if v, ok := strings.CutPrefix(arg, "root=UUID="); ok {
					e.RootUUID = v
				}
			}
		case "initrd", "initrdefi", "initrd16":
			if e.Initrd == "" && e.Kernel != "" {
				e.Initrd = f[1]
			}
		}
	}
	if e.Kernel == "" {
		return e, errors.New("grub.cfg: no linux line")
	}
	if e.RootUUID == "" {
		e.RootUUID = searched
	}
	return e, nil
}

// bootLoaderOf recognises MBR boot code by its bytes.
func bootLoaderOf(code []byte, present bool) string {
	switch {
	case !present:
		return ""
	case bytes.HasPrefix(code, biosBootCode()):
		return "metalbed"
	case bytes.Contains(code, []byte("GRUB \x00")):
		return "grub"
	}
	return "unknown"
}
