package cli

import (
	"context"
	"fmt"

	"github.com/metalbed/metalbed/disk"
)

// runImageBuild is `metalbed image build`: makes a test instance image and
// prints its path, size and checksums, one per line.
func runImageBuild(ctx context.Context, s Streams, args []string) error {
	fs := newFlags("image build", s)
	kind := fs.String("kind", "", "image kind: partition or whole-disk (required)")
	bootMode := fs.String("boot-mode", "bios", "boot mode of a whole-disk image: bios or uefi")
	sizeMB := fs.Int64("size-mb", 0, "image size in MiB (default 64 for partition, 192 for whole-disk)")
	out := fs.String("out", "", "output file (required)")
	kernel := fs.String("kernel", "", "kernel for /boot/vmlinuz (default: the gokrazy kernel.amd64 module's vmlinuz)")
	initBin := fs.String("init", "", "static binary for /sbin/init (default: build the metalbed instance init)")
	hostname := fs.String("hostname", "", "host name written to /etc/hostname (default metalbed-instance)")
	grubDir := fs.String("grub-dir", disk.DefaultGrubLibDir, "GRUB 2 platform modules whole-disk images get their boot loader from (grub-mkimage; Debian packages grub-pc-bin, grub-efi-amd64-bin)")
	placeholder := fs.Bool("placeholder-loader", false, "whole-disk images: write metalbed's placeholder loader instead of GRUB (boots on simulated firmware only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch disk.Kind(*kind) {
	case disk.KindPartition, disk.KindWholeDisk:
	default:
		return usageError("--kind must be partition or whole-disk, not %q", *kind)
	}
	if *out == "" {
		return usageError("--out is required")
	}
	if *bootMode != disk.BootModeBIOS && *bootMode != disk.BootModeUEFI {
		return usageError("--boot-mode must be bios or uefi, not %q", *bootMode)
	}
	if *sizeMB < 0 {
		return usageError("--size-mb must not be negative")
	}
	cfg := disk.BuildConfig{
		Kind: disk.Kind(*kind), BootMode: *bootMode, SizeMB: *sizeMB, Out: *out,
		Kernel: *kernel, Init: *initBin, Hostname: *hostname, PlaceholderLoader: *placeholder,
	}
	if cfg.Kind == disk.KindWholeDisk && !*placeholder {
		g, err := disk.MakeGrubImages(ctx, *grubDir)
		if err != nil {
			return fmt.Errorf("image build: boot loader: %w (or pass --placeholder-loader)", err)
		}
		cfg.Grub = g
	}
	b, err := disk.Build(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "file: %s\n", b.Path)
	fmt.Fprintf(s.Out, "size: %d\n", b.Size)
	fmt.Fprintf(s.Out, "md5: %s\n", b.MD5)
	fmt.Fprintf(s.Out, "sha256: %s\n", b.SHA256)
	fmt.Fprintf(s.Out, "root_uuid: %s\n", b.RootUUID)
	if b.DiskID != "" {
		fmt.Fprintf(s.Out, "disk_id: %s\n", b.DiskID)
	}
	if b.BootLoader != "" {
		fmt.Fprintf(s.Out, "boot_loader: %s\n", b.BootLoader)
	}
	return nil
}
