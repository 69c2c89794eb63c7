package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/metalbed/metalbed/disk/iso9660"
)

// A deploy ISO is what Ironic builds for a virtual media boot
// (ironic/common/images.py create_isolinux_image_for_bios and
// create_esp_image_for_uefi), built here in Go without mkisofs, and with
// Ironic's layout so whatever boots Ironic's ISOs boots these:
//
//	/vmlinuz, /initrd                  the deploy kernel and ramdisk
//	/isolinux/isolinux.bin             BIOS El Torito entry (no emulation, 4 sectors, boot info table)
//	/isolinux/ldlinux.c32              ISOLINUX's second stage (syslinux 5+)
//	/isolinux/isolinux.cfg             Ironic's isolinux_config.template
//	/boot/grub/efiboot.img             EFI El Torito entry: a FAT ESP with EFI/BOOT/BOOTX64.EFI (GRUB)
//	/EFI/BOOT/grub.cfg                 Ironic's grub_conf.template (its grub_config_path)
//
// GRUB started from the El Torito image sees the CD, not the FAT image, as
// its boot device ($cmdpath is (cd0)/EFI/BOOT), so its early config reads
// the ISO's /EFI/BOOT/grub.cfg (see grubEarlyConfigEFI). The ESP holds a
// grub.cfg too, for firmware that makes GRUB start on the FAT image: it
// finds the ISO by its label and reads the same grub.cfg.

// DefaultBootISOLabel is the volume ID Ironic gives a deploy ISO.
const DefaultBootISOLabel = "VMEDIA_BOOT_ISO"

// Where Debian's isolinux and syslinux-common install ISOLINUX.
const (
	DefaultIsolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	DefaultLdlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// Paths on a deploy ISO (Ironic's).
const (
	bootISOKernel   = "vmlinuz"
	bootISOInitrd   = "initrd"
	bootISOIsolinux = "isolinux/isolinux.bin"
	bootISOLdlinux  = "isolinux/ldlinux.c32"
	bootISOIsoCfg   = "isolinux/isolinux.cfg"
	bootISOESP      = "boot/grub/efiboot.img"
	bootISOGrubCfg  = "EFI/BOOT/grub.cfg"
	bootISOESPLabel = "EFIBOOT"
)

// BootISOConfig is what BuildBootISO puts on a deploy ISO.
type BootISOConfig struct {
	Kernel, Initrd string // paths of the kernel and initramfs (streamed into the ISO)
	Cmdline        string // kernel command line (ipa-* parameters etc.)
	BIOS, UEFI     bool   // which El Torito entries (at least one)
	Loaders        ISOLoaders
	Label          string // volume ID; "" => DefaultBootISOLabel as Ironic
}

// ISOLoaders are the boot programs an ISO carries.
type ISOLoaders struct {
	// IsolinuxBin and LdlinuxC32 are files; "" => DefaultIsolinuxBin,
	// DefaultLdlinuxC32 (Debian's).
	IsolinuxBin, LdlinuxC32 string
	// GrubEFI is an x86_64-efi GRUB image that finds and reads the ISO's
	// grub.cfg (DefaultISOLoaders builds one).
	GrubEFI []byte
}

// DefaultISOLoaders finds ISOLINUX (bios) and builds GRUB EFI with
// grub-mkimage, as MakeGrubImages does (uefi). A missing package is an
// error naming the Debian package.
func DefaultISOLoaders(ctx context.Context, bios, uefi bool) (ISOLoaders, error) {
	var l ISOLoaders
	if bios {
		if err := checkLoaderFile(DefaultIsolinuxBin, "isolinux"); err != nil {
			return l, err
		}
		if err := checkLoaderFile(DefaultLdlinuxC32, "syslinux-common"); err != nil {
			return l, err
		}
		l.IsolinuxBin, l.LdlinuxC32 = DefaultIsolinuxBin, DefaultLdlinuxC32
	}
	if uefi {
		mk, err := exec.LookPath("grub-mkimage")
		if err != nil {
			return l, fmt.Errorf("%w: grub-mkimage (Debian package grub-common): %v", ErrNoGrub, err)
		}
		work, err := os.MkdirTemp("", "metalbed-grub-*")
		if err != nil {
			return l, err
		}
		defer os.RemoveAll(work)
		if l.GrubEFI, err = grubEFI(ctx, mk, work, DefaultGrubLibDir); err != nil {
			return l, err
		}
		if l.GrubEFI == nil {
			return l, fmt.Errorf("%w: no x86_64-efi modules under %s (Debian package grub-efi-amd64-bin)", ErrNoGrub, DefaultGrubLibDir)
		}
	}
	return l, nil
}

func checkLoaderFile(p, pkg string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("%s not found (Debian package %s): %w", p, pkg, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", p)
	}
	return nil
}

// IsolinuxConfigText renders Ironic's isolinux_config.template for a
// deploy ISO's kernel, ramdisk and command line.
func IsolinuxConfigText(cmdline string) string {
	return "default boot\n\nlabel boot\nkernel /" + bootISOKernel + "\nappend initrd=/" + bootISOInitrd + " text " + cmdline + " --\n"
}

// BootISOGrubConfigText renders Ironic's grub_conf.template for a deploy
// ISO's kernel, ramdisk and command line.
func BootISOGrubConfigText(cmdline string) string {
	return "set default=0\nset timeout=5\nset hidden_timeout_quiet=false\n\n" +
		"menuentry \"boot_partition\" {\nlinuxefi /" + bootISOKernel + " " + cmdline + " --\ninitrdefi /" + bootISOInitrd + "\n}\n"
}

// espChainConfig is the grub.cfg on the ESP: it finds the ISO by its
// volume label and reads its grub.cfg.
func espChainConfig(label string) string {
	return "search --no-floppy --label --set=root \"" + label + "\"\nconfigfile /" + bootISOGrubCfg + "\n"
}

// BuildBootISO writes a deploy ISO to out (a temporary file beside it,
// renamed when complete). The kernel and initrd are streamed, never held
// in memory.
func BuildBootISO(ctx context.Context, cfg BootISOConfig, out string) error {
	if err := cfg.check(); err != nil {
		return fmt.Errorf("boot ISO: %w", err)
	}
	if cfg.Label == "" {
		cfg.Label = DefaultBootISOLabel
	}
	w := &iso9660.Writer{VolumeID: cfg.Label, Publisher: "metalbed"}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	addFile := func(isoPath, src, what string) error {
		f, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("boot ISO: %s: %w", what, err)
		}
		closers = append(closers, f)
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("boot ISO: %s: %w", what, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("boot ISO: %s %s is not a file", what, src)
		}
		if err := w.AddFile(isoPath, f, fi.Size()); err != nil {
			return fmt.Errorf("boot ISO: %s: %w", what, err)
		}
		return nil
	}
	addBytes := func(isoPath string, b []byte) error {
		return w.AddFile(isoPath, bytes.NewReader(b), int64(len(b)))
	}
	if err := addFile(bootISOKernel, cfg.Kernel, "kernel"); err != nil {
		return err
	}
	if err := addFile(bootISOInitrd, cfg.Initrd, "initrd"); err != nil {
		return err
	}
	if cfg.BIOS {
		l := cfg.Loaders.withDefaults()
		if err := addFile(bootISOIsolinux, l.IsolinuxBin, "isolinux.bin (Debian package isolinux)"); err != nil {
			return err
		}
		if err := addFile(bootISOLdlinux, l.LdlinuxC32, "ldlinux.c32 (Debian package syslinux-common)"); err != nil {
			return err
		}
		if err := addBytes(bootISOIsoCfg, []byte(IsolinuxConfigText(cfg.Cmdline))); err != nil {
			return err
		}
		if err := w.AddBoot(iso9660.BootSpec{Platform: iso9660.PlatformBIOS, Path: bootISOIsolinux, Sectors: 4, InfoTable: true}); err != nil {
			return err
		}
	}
	if cfg.UEFI {
		esp, err := makeFATImage(bootISOESPLabel, []fatImageFile{
			{strings.TrimPrefix(ESPLoaderPath, "/"), cfg.Loaders.GrubEFI},
			{strings.TrimPrefix(ESPGrubCfgPath, "/"), []byte(espChainConfig(cfg.Label))},
		})
		if err != nil {
			return fmt.Errorf("boot ISO: EFI image: %w", err)
		}
		if err := addBytes(bootISOESP, esp); err != nil {
			return err
		}
		if err := addBytes(bootISOGrubCfg, []byte(BootISOGrubConfigText(cfg.Cmdline))); err != nil {
			return err
		}
		if err := w.AddBoot(iso9660.BootSpec{Platform: iso9660.PlatformEFI, Path: bootISOESP}); err != nil {
			return err
		}
	}
	return writeFileAtomic(ctx, out, w.Write)
}

// check reports the first thing missing from a config.
func (cfg BootISOConfig) check() error {
	switch {
	case !cfg.BIOS && !cfg.UEFI:
		return errors.New("no boot mode (BIOS, UEFI or both)")
	case cfg.Kernel == "":
		return errors.New("no kernel")
	case cfg.Initrd == "":
		return errors.New("no initrd")
	case cfg.UEFI && len(cfg.Loaders.GrubEFI) == 0:
		return errors.New("UEFI needs a GRUB EFI image (ISOLoaders.GrubEFI; DefaultISOLoaders builds one)")
	case cfg.UEFI && !isPE(cfg.Loaders.GrubEFI):
		return errors.New("ISOLoaders.GrubEFI is not a PE/COFF image")
	case len(cfg.Label) > 32:
		return fmt.Errorf("label %q is longer than 32 characters", cfg.Label)
	case strings.ContainsAny(cfg.Label, "\"\\\n"):
		return fmt.Errorf("label %q: no quotes, backslashes or newlines", cfg.Label)
	case strings.Contains(cfg.Cmdline, "\n"):
		return errors.New("the kernel command line has a newline")
	}
	return nil
}

func (l ISOLoaders) withDefaults() ISOLoaders {
	if l.IsolinuxBin == "" {
		l.IsolinuxBin = DefaultIsolinuxBin
	}
	if l.LdlinuxC32 == "" {
		l.LdlinuxC32 = DefaultLdlinuxC32
	}
	return l
}

// writeFileAtomic writes out through write into a temporary file in its
// directory, syncs it and renames it over out; on error or when ctx ends
// nothing is left behind.
func writeFileAtomic(ctx context.Context, out string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("boot ISO: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(ctxWriter{ctx, tmp}); err != nil {
		return fmt.Errorf("boot ISO %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("boot ISO %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("boot ISO %s: %w", out, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("boot ISO %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("boot ISO: %w", err)
	}
	return nil
}

// ctxWriter stops a long write when ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
