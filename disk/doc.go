// Package disk is metalbed's disk work, on the conductor's side of an
// iSCSI deploy and for the firmware's local boot.
//
//   - DeployPartitionImage lays out a disk exactly as Ironic's iSCSI deploy
//     does (destroy_disk_metadata, then msdos or gpt with, in order, ESP,
//     BIOS boot, ephemeral, swap, config drive, root last, 1 MiB aligned),
//     formats the small partitions, writes the image into root and reads
//     the root file system UUID back. DeployWholeDiskImage writes an image
//     as it is and returns the disk identifier. Both work on any
//     io.ReaderAt+io.WriterAt of a known size: an iSCSI LUN through the
//     initiator, or a file.
//   - Build makes test instance images (partition or whole-disk) holding a
//     real kernel, a static init that announces the boot, and grub.cfg;
//     whole-disk images come with GRUB installed.
//   - InstallBootloader is the deploy ramdisk's local-boot step on such a
//     disk: GRUB 2's boot.img and core.img (bios), or GRUB and grub.cfg on
//     the ESP (uefi), from GrubImages that MakeGrubImages makes with
//     Debian's grub-mkimage at run time (grub.go); metalbed's placeholder
//     loader, which only simulated firmware boots, when asked for.
//   - BuildBootISO makes the deploy ISO of a virtual media boot as Ironic
//     lays it out (kernel, ramdisk, ISOLINUX for BIOS, an El Torito EFI
//     image with GRUB for UEFI) with iso9660.Writer, no mkisofs (bootiso.go).
//   - Inspect reads a disk the way firmware and a boot loader do: label,
//     MBR boot code, ESP and its loader, file systems, grub.cfg. Disks are
//     untrusted input there; every structure is bounded.
//
// Partition tables (MBR, GPT with CRC32), swap headers, the ext4 reader and
// the FAT reader/writer are this package's own; go-diskfs formats FAT32.
// mkfs.ext4 (e2fsprogs) makes ext4 file systems.
package disk
