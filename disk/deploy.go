package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Disk is a whole block device as the conductor reaches it: through the
// iSCSI initiator as a LUN, or, in tests and benchmarks, an *os.File.
type Disk interface {
	io.ReaderAt
	io.WriterAt
}

// Boot modes and boot options, with Ironic's spellings.
const (
	BootModeBIOS      = "bios"
	BootModeUEFI      = "uefi"
	BootOptionNetboot = "netboot"
	BootOptionLocal   = "local"
	LabelMSDOS        = "msdos"
	LabelGPT          = "gpt"
)

// Roles of partitions: the keys of Ironic's part_dict.
const (
	RoleESP         = "efi system partition"
	RoleBIOSBoot    = "BIOS Boot partition"
	RoleEphemeral   = "ephemeral"
	RoleSwap        = "swap"
	RoleConfigDrive = "configdrive"
	RoleRoot        = "root"
)

const (
	mib             = int64(1 << 20)
	espMB           = 200 // Ironic's efi_system_partition_size
	biosBootMB      = 1   // Ironic's bios_boot_partition_size
	ephemeralLabel  = "ephemeral0"
	copyChunk       = 4 << 20
	metadataSectors = 36 // Ironic's destroy_disk_metadata: 18 KiB at each end
)

// PartitionParams are the instance_info/driver_internal_info values
// Ironic's iSCSI deploy uses to lay out a disk for a partition image.
type PartitionParams struct {
	BootMode   string // "bios" (default) or "uefi"
	BootOption string // "netboot" (default) or "local"
	// DiskLabel is "msdos" or "gpt"; empty means gpt for uefi, msdos for bios.
	DiskLabel   string
	RootMB      int64 // required
	SwapMB      int64
	EphemeralMB int64
	// EphemeralFormat is ext2, ext3 or ext4 (default ext4, Ironic's
	// default_ephemeral_format); formatted with mkfs from e2fsprogs.
	EphemeralFormat string
	// ConfigDrive is instance_info.configdrive: base64 of a gzipped ISO 9660
	// or FAT image (as Ironic accepts), or the raw image bytes.
	ConfigDrive []byte
}

// Partition is one partition of a Layout.
type Partition struct {
	Number   int
	Start    int64  // bytes from the start of the disk
	Size     int64  // bytes
	Role     string // one of the Role* constants; empty when unknown
	Type     string // GPT type GUID, or the MBR type as "0x83"
	Bootable bool   // MBR active flag
	PartUUID string // GPT unique GUID, or blkid's "<disk id>-<nn>" for MBR
	Name     string // GPT partition name
	FSType   string // ext4, vfat, swap, iso9660 ... as found or made
	Label    string // file system label
	UUID     string // file system UUID
}

// Layout describes a partitioned disk.
type Layout struct {
	Label      string // "msdos", "gpt", or "" when the disk has none
	DiskID     string // MBR identifier as 0x%08x, or the GPT disk GUID
	Partitions []Partition
}

// Find returns the first partition with a role, or nil.
func (l *Layout) Find(role string) *Partition {
	for i := range l.Partitions {
		if l.Partitions[i].Role == role {
			return &l.Partitions[i]
		}
	}
	return nil
}

// Result is what a deploy returns to the conductor.
type Result struct {
	Layout Layout
	// RootUUID is the root file system UUID (partition images).
	RootUUID string
	// ESPUUID is the EFI system partition's file system UUID (its FAT
	// volume serial, as blkid prints it): Ironic's "efi system partition
	// uuid", set for uefi local boot.
	ESPUUID string
	// DiskIdentifier is the MBR disk identifier at offset 440 as 0x%08x
	// (whole-disk images; what Ironic reads with hexdump).
	DiskIdentifier string
	// DiskGUID is the GPT disk GUID when a whole-disk image has a GPT.
	DiskGUID string
}

// RootUUIDOrDiskID is driver_internal_info.root_uuid_or_disk_id: the root
// UUID for partition images; for whole-disk images the GPT disk GUID when
// the image has a GPT, else the MBR disk identifier.
func (r *Result) RootUUIDOrDiskID() string {
	switch {
	case r.RootUUID != "":
		return r.RootUUID
	case r.DiskGUID != "":
		return r.DiskGUID
	default:
		return r.DiskIdentifier
	}
}

// plannedPart is a partition before it is written.
type plannedPart struct {
	role     string
	mb       int64
	mbrType  byte
	typeGUID string
	bootable bool
}

func (p *PartitionParams) normalize() error {
	if p.BootMode == "" {
		p.BootMode = BootModeBIOS
	}
	if p.BootOption == "" {
		p.BootOption = BootOptionNetboot
	}
	if p.EphemeralFormat == "" {
		p.EphemeralFormat = "ext4"
	}
	switch p.BootMode {
	case BootModeBIOS, BootModeUEFI:
	default:
		return fmt.Errorf("boot_mode %q: want bios or uefi", p.BootMode)
	}
	switch p.BootOption {
	case BootOptionNetboot, BootOptionLocal:
	default:
		return fmt.Errorf("boot_option %q: want netboot or local", p.BootOption)
	}
	if p.DiskLabel == "" {
		p.DiskLabel = LabelMSDOS
		if p.BootMode == BootModeUEFI {
			p.DiskLabel = LabelGPT
		}
	}
	switch p.DiskLabel {
	case LabelMSDOS, LabelGPT:
	default:
		return fmt.Errorf("disk_label %q: want msdos or gpt", p.DiskLabel)
	}
	switch p.EphemeralFormat {
	case "ext2", "ext3", "ext4":
	default:
		return fmt.Errorf("ephemeral_format %q: want ext2, ext3 or ext4", p.EphemeralFormat)
	}
	if p.RootMB <= 0 {
		return fmt.Errorf("root_mb %d: must be positive", p.RootMB)
	}
	if p.SwapMB < 0 || p.EphemeralMB < 0 {
		return errors.New("swap_mb and ephemeral_mb must not be negative")
	}
	if p.SwapMB > 0 && p.SwapMB*mib/swapPageSize < 10 {
		return fmt.Errorf("swap_mb %d: too small for a swap area", p.SwapMB)
	}
	return nil
}

// plan lists the partitions in Ironic's order (make_partitions): ESP,
// BIOS boot, ephemeral, swap, config drive, then root last.
func (p *PartitionParams) plan(configDrive bool) []plannedPart {
	gpt := p.DiskLabel == LabelGPT
	var parts []plannedPart
	if p.BootMode == BootModeUEFI && p.BootOption == BootOptionLocal {
		parts = append(parts, plannedPart{role: RoleESP, mb: espMB, mbrType: mbrTypeFAT32LBA, typeGUID: TypeGUIDESP, bootable: true})
	}
	if p.BootMode == BootModeBIOS && p.BootOption == BootOptionLocal && gpt {
		parts = append(parts, plannedPart{role: RoleBIOSBoot, mb: biosBootMB, typeGUID: TypeGUIDBIOSBoot, mbrType: mbrTypeLinux})
	}
	if p.EphemeralMB > 0 {
		parts = append(parts, plannedPart{role: RoleEphemeral, mb: p.EphemeralMB, mbrType: mbrTypeLinux, typeGUID: TypeGUIDLinuxFS})
	}
	if p.SwapMB > 0 {
		parts = append(parts, plannedPart{role: RoleSwap, mb: p.SwapMB, mbrType: mbrTypeSwap, typeGUID: TypeGUIDLinuxSwap})
	}
	if configDrive {
		parts = append(parts, plannedPart{role: RoleConfigDrive, mb: ConfigDriveMaxBytes / mib, mbrType: mbrTypeLinux, typeGUID: TypeGUIDLinuxFS})
	}
	rootBoot := p.BootMode == BootModeBIOS && p.BootOption == BootOptionLocal && !gpt
	parts = append(parts, plannedPart{role: RoleRoot, mb: p.RootMB, mbrType: mbrTypeLinux, typeGUID: TypeGUIDLinuxFS, bootable: rootBoot})
	return parts
}

// DeployPartitionImage lays out disk as Ironic's iSCSI deploy does for a
// partition image and writes the image into the root partition. Every
// check that can fail (image size, config drive, disk size, ephemeral
// formatting) runs before the disk is touched; a failure after that is a
// write error of the disk itself.
func DeployPartitionImage(ctx context.Context, disk Disk, diskSize int64, image io.ReaderAt, imageSize int64, p PartitionParams) (*Result, error) {
	if err := p.normalize(); err != nil {
		return nil, fmt.Errorf("partition image deploy: %w", err)
	}
	diskSize = diskSize / SectorSize * SectorSize
	orig := disk
	disk = &sectorDisk{r: disk, w: disk, size: diskSize}
	if imageMB := (imageSize + mib - 1) / mib; imageMB > p.RootMB {
		return nil, fmt.Errorf("root partition is too small for requested image: image virtual size %d MB, root size %d MB", imageMB, p.RootMB)
	}
	if _, err := ReadExt4Super(io.NewSectionReader(image, 0, imageSize)); err != nil {
		return nil, fmt.Errorf("partition image: %w", err)
	}
	cd, err := decodeConfigDrive(p.ConfigDrive)
	if err != nil {
		return nil, fmt.Errorf("config drive: %w", err)
	}
	planned := p.plan(cd != nil)
	if p.DiskLabel == LabelMSDOS && len(planned) > 4 {
		return nil, fmt.Errorf("msdos label holds 4 primary partitions, this layout needs %d; use disk_label gpt", len(planned))
	}
	diskSectors := diskSize / SectorSize
	end := mib // partitions start at 1 MiB, each 1 MiB aligned
	for _, pp := range planned {
		end += pp.mb * mib
	}
	limit := diskSectors * SectorSize
	if p.DiskLabel == LabelGPT {
		limit -= (1 + gptEntriesSectors) * SectorSize
	}
	if end > limit {
		return nil, fmt.Errorf("disk of %d MiB too small: the layout needs %d MiB", diskSize/mib, (end+mib-1)/mib+1)
	}

	var ephemeral *os.File
	if p.EphemeralMB > 0 {
		ephemeral, err = mkfsTemp(ctx, p.EphemeralFormat, p.EphemeralMB*mib, ephemeralLabel)
		if err != nil {
			return nil, fmt.Errorf("format ephemeral partition: %w", err)
		}
		defer func() {
			ephemeral.Close()
			os.Remove(ephemeral.Name())
		}()
	}

	// From here on the disk changes.
	if err := DestroyDiskMetadata(disk, diskSize); err != nil {
		return nil, err
	}
	res := &Result{Layout: Layout{Label: p.DiskLabel}}
	entries := make([]tableEntry, len(planned))
	start := mib
	var diskID uint32
	var diskGUID guid
	if p.DiskLabel == LabelGPT {
		if diskGUID, err = randomGUID(); err != nil {
			return nil, err
		}
		res.Layout.DiskID = diskGUID.String()
	} else {
		var b [4]byte
		for diskID == 0 {
			u, err := randomUUID()
			if err != nil {
				return nil, err
			}
			copy(b[:], u[:4])
			diskID = binary.LittleEndian.Uint32(b[:])
		}
		res.Layout.DiskID = fmt.Sprintf("0x%08x", diskID)
	}
	for i, pp := range planned {
		e := tableEntry{startLBA: start / SectorSize, sectors: pp.mb * mib / SectorSize, mbrType: pp.mbrType, bootable: pp.bootable}
		part := Partition{Number: i + 1, Start: start, Size: pp.mb * mib, Role: pp.role, Bootable: pp.bootable}
		if p.DiskLabel == LabelGPT {
			e.typeGUID = mustGUID(pp.typeGUID)
			if e.partGUID, err = randomGUID(); err != nil {
				return nil, err
			}
			e.name = "primary" // parted's mkpart name, as Ironic calls it
			part.Type, part.PartUUID, part.Name = pp.typeGUID, strings.ToLower(e.partGUID.String()), e.name
			part.Bootable = false
		} else {
			part.Type = fmt.Sprintf("0x%02x", pp.mbrType)
			part.PartUUID = fmt.Sprintf("%08x-%02x", diskID, i+1)
		}
		entries[i] = e
		res.Layout.Partitions = append(res.Layout.Partitions, part)
		start += pp.mb * mib
	}
	if p.DiskLabel == LabelGPT {
		err = writeGPT(disk, diskSectors, diskGUID, entries)
	} else {
		err = writeMBR(disk, nil, diskID, entries)
	}
	if err != nil {
		return nil, err
	}

	for i := range res.Layout.Partitions {
		part := &res.Layout.Partitions[i]
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("partition image deploy: %w", err)
		}
		switch part.Role {
		case RoleESP:
			if err := makeFAT32(disk, diskSize, part.Start, part.Size, ESPLabel, nil); err != nil {
				return nil, fmt.Errorf("efi system partition: %w", err)
			}
			f, err := openFAT(io.NewSectionReader(disk, part.Start, part.Size), part.Size)
			if err != nil {
				return nil, fmt.Errorf("efi system partition: %w", err)
			}
			part.FSType, part.Label, part.UUID = "vfat", ESPLabel, f.serial
			res.ESPUUID = f.serial
		case RoleEphemeral:
			if err := copyRange(ctx, disk, part.Start, ephemeral, part.Size); err != nil {
				return nil, fmt.Errorf("ephemeral partition: %w", err)
			}
			sb, err := ReadExt4Super(ephemeral)
			if err != nil {
				return nil, fmt.Errorf("ephemeral partition: %w", err)
			}
			part.FSType, part.Label, part.UUID = p.EphemeralFormat, sb.Label, sb.UUID
		case RoleSwap:
			u, err := randomUUID()
			if err != nil {
				return nil, err
			}
			hdr, err := swapHeader(part.Size, u, swapLabel)
			if err != nil {
				return nil, err
			}
			if _, err := disk.WriteAt(hdr, part.Start); err != nil {
				return nil, fmt.Errorf("write swap header: %w", err)
			}
			part.FSType, part.Label, part.UUID = "swap", swapLabel, formatUUID(u)
		case RoleConfigDrive:
			if _, err := disk.WriteAt(cd, part.Start); err != nil {
				return nil, fmt.Errorf("write config drive: %w", err)
			}
			part.FSType, part.Label, part.UUID = probeFS(cd)
		case RoleRoot:
			if err := copyRange(ctx, disk, part.Start, image, imageSize); err != nil {
				return nil, fmt.Errorf("write image to root partition: %w", err)
			}
		}
	}
	if err := syncDisk(orig); err != nil {
		return nil, err
	}
	root := res.Layout.Find(RoleRoot)
	sb, err := ReadExt4Super(io.NewSectionReader(disk, root.Start, root.Size))
	if err != nil {
		return nil, fmt.Errorf("read root UUID back from the disk: %w", err)
	}
	root.FSType, root.Label, root.UUID = "ext4", sb.Label, sb.UUID
	res.RootUUID = sb.UUID
	return res, nil
}

// probeFS names the file system type, label and UUID of a config drive
// image (the UUID of an ISO 9660 image is left to blkid's date rules).
func probeFS(b []byte) (fstype, label, uuid string) {
	if len(b) >= 32774 && string(b[32769:32774]) == "CD001" {
		return "iso9660", isoLabel(b[32768:]), ""
	}
	if f, err := openFAT(bytes.NewReader(b), int64(len(b))); err == nil {
		return "vfat", f.label, f.serial
	}
	return "", "", ""
}

// DeployWholeDiskImage writes a whole-disk image as it is (Ironic's
// populate_image) and returns the disk identifier and the image's layout.
func DeployWholeDiskImage(ctx context.Context, disk Disk, diskSize int64, image io.ReaderAt, imageSize int64) (*Result, error) {
	diskSize = diskSize / SectorSize * SectorSize
	orig := disk
	disk = &sectorDisk{r: disk, w: disk, size: diskSize}
	if imageSize > diskSize {
		return nil, fmt.Errorf("whole-disk image of %d bytes does not fit a %d-byte disk", imageSize, diskSize)
	}
	if imageSize < SectorSize {
		return nil, fmt.Errorf("whole-disk image of %d bytes holds no partition table", imageSize)
	}
	if err := copyRange(ctx, disk, 0, image, imageSize); err != nil {
		return nil, fmt.Errorf("write whole-disk image: %w", err)
	}
	if err := syncDisk(orig); err != nil {
		return nil, err
	}
	ins, err := Inspect(disk, diskSize)
	if err != nil {
		return nil, fmt.Errorf("read back the disk: %w", err)
	}
	res := &Result{Layout: ins.Layout}
	var s [4]byte
	if _, err := disk.ReadAt(s[:], mbrDiskIDOffset); err != nil {
		return nil, fmt.Errorf("read disk identifier: %w", err)
	}
	res.DiskIdentifier = fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(s[:]))
	if ins.Layout.Label == LabelGPT {
		res.DiskGUID = ins.Layout.DiskID
	}
	return res, nil
}

// DestroyDiskMetadata zeroes the first and last 18 KiB of the disk, which
// removes MBR, primary and backup GPT (Ironic's destroy_disk_metadata; also
// what cleaning does on undeploy).
func DestroyDiskMetadata(disk Disk, diskSize int64) error {
	n := int64(metadataSectors * SectorSize)
	if diskSize < 2*n {
		return fmt.Errorf("disk of %d bytes is too small to hold a partition table", diskSize)
	}
	z := make([]byte, n)
	if _, err := disk.WriteAt(z, 0); err != nil {
		return fmt.Errorf("wipe start of disk: %w", err)
	}
	if _, err := disk.WriteAt(z, diskSize/SectorSize*SectorSize-n); err != nil {
		return fmt.Errorf("wipe end of disk: %w", err)
	}
	return nil
}

// copyRange copies n bytes of src to dst at off in 4 MiB reads. A dst that
// can write zeroes without sending them (an iSCSI LUN: WRITE SAME; a sparse
// file: a hole) gets the image's zero runs that way, as qemu-img convert
// does, and only the rest as written bytes.
func copyRange(ctx context.Context, dst io.WriterAt, off int64, src io.ReaderAt, n int64) error {
	buf := make([]byte, copyChunk)
	for done := int64(0); done < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := src.ReadAt(chunk, done); err != nil && !(errors.Is(err, io.EOF) && done+int64(len(chunk)) == n) {
			return fmt.Errorf("read at %d: %w", done, err)
		}
		if err := WriteSparse(dst, chunk, off+done); err != nil {
			return err
		}
		done += int64(len(chunk))
	}
	return nil
}

// zeroWriter is a disk that can make a range read as zeros without the
// zeros crossing to it.
type zeroWriter interface {
	WriteZeroesAt(off, n int64) error
}

// zeroUnit is the grain of zero detection: a run of whole, aligned 64 KiB
// units of zeros is written as zeroes, anything else as bytes.
const zeroUnit = 64 << 10

// WriteSparse writes p at off to dst. A dst with WriteZeroesAt(off, n
// int64) error gets p's runs of zeros (whole 64 KiB units on the disk's
// grid) that way and the rest as bytes; any other dst gets p whole.
func WriteSparse(dst io.WriterAt, p []byte, off int64) error {
	zw, ok := dst.(zeroWriter)
	if !ok {
		if _, err := dst.WriteAt(p, off); err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		return nil
	}
	flush := func(zero bool, from, to int) error {
		if from == to {
			return nil
		}
		if zero {
			if err := zw.WriteZeroesAt(off+int64(from), int64(to-from)); err != nil {
				return fmt.Errorf("zeroes at %d: %w", off+int64(from), err)
			}
			return nil
		}
		if _, err := dst.WriteAt(p[from:to], off+int64(from)); err != nil {
			return fmt.Errorf("write at %d: %w", off+int64(from), err)
		}
		return nil
	}
	runStart, runZero := 0, false
	for i := 0; i < len(p); {
		// Units end on the disk's 64 KiB grid, so zero runs are whole blocks.
		j := min(len(p), i+int(zeroUnit-(off+int64(i))%zeroUnit))
		zero := j-i == zeroUnit && bytes.Equal(p[i:j], zeroMiB[:zeroUnit])
		if zero != runZero {
			if err := flush(runZero, runStart, i); err != nil {
				return err
			}
			runStart, runZero = i, zero
		}
		i = j
	}
	return flush(runZero, runStart, len(p))
}

func syncDisk(disk Disk) error {
	if s, ok := disk.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("sync disk: %w", err)
		}
	}
	return nil
}

// mkfsTemp formats a temporary file of size bytes with mkfs.<fstype> from
// e2fsprogs and returns it open. The caller copies it whole onto the disk,
// so the partition's old contents cannot leak into the new file system.
func mkfsTemp(ctx context.Context, fstype string, size int64, label string) (*os.File, error) {
	f, err := os.CreateTemp("", "metalbed-"+fstype+"-*")
	if err != nil {
		return nil, fmt.Errorf("temp file: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		return fail(fmt.Errorf("size temp file: %w", err))
	}
	tool, err := exec.LookPath("mkfs." + fstype)
	if err != nil {
		return fail(fmt.Errorf("mkfs.%s (Debian package e2fsprogs): %w", fstype, err))
	}
	out, err := exec.CommandContext(ctx, tool, "-F", "-q", "-L", label, f.Name()).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("mkfs.%s: %w: %s", fstype, err, bytes.TrimSpace(out)))
	}
	return f, nil
}
