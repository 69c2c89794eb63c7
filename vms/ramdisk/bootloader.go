package ramdisk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/metalbed/metalbed/disk"
)

// Bootloaders are the boot loaders a deploy ramdisk carries for its
// bootloader step: the GRUB images `metalbed ramdisk build` put into its
// initramfs at disk.GrubImagesDir, and whether it was built to install
// metalbed's placeholder loader instead (`ramdisk build --no-grub`).
type Bootloaders struct {
	Grub *disk.GrubImages // nil, or lacking a boot mode's images: no GRUB for it
	// Placeholder says the placeholder was asked for where Grub has no
	// images (Marker.Loader): installing it is then no fallback.
	Placeholder bool
	// From names where the images were looked for, for messages.
	From string
	// Err says the images found are unusable; Install fails with it.
	Err error
}

// Installed says what the bootloader step put on the disk.
type Installed struct {
	// Loader names it for the console: "GRUB 2", or metalbed's placeholder
	// and why.
	Loader string
	// Grub is true when GRUB 2 was installed.
	Grub bool
	// Fallback, when set, says why the placeholder went in although
	// nobody asked for it: the ramdisk carries no GRUB for the boot mode.
	// The step reports it as an error on the console and the timeline.
	Fallback string
}

// Short names the installed loader in a timeline entry.
func (i Installed) Short() string {
	if i.Grub {
		return "GRUB 2"
	}
	return "metalbed placeholder loader"
}

// LocalBootloaders reads the boot loaders of the ramdisk running on this
// machine (a real one: the initramfs is the root file system): the GRUB
// images in disk.GrubImagesDir and the marker at /MarkerPath.
func LocalBootloaders() (Bootloaders, error) {
	return BootloadersFrom("/")
}

// BootloadersFrom reads the boot loaders of a ramdisk unpacked at root.
func BootloadersFrom(root string) (Bootloaders, error) {
	dir := filepath.Join(root, disk.GrubImagesDir)
	bl := Bootloaders{From: dir}
	if b, err := os.ReadFile(filepath.Join(root, MarkerPath)); err == nil {
		var m Marker
		if err := json.Unmarshal(b, &m); err != nil {
			return Bootloaders{}, fmt.Errorf("%s: %w", MarkerPath, err)
		}
		bl.Placeholder = m.Loader == LoaderPlaceholder
	}
	g, err := disk.ReadGrubImages(dir)
	switch {
	case err == nil:
		bl.Grub = g
	case !errors.Is(err, disk.ErrNoGrub):
		return Bootloaders{}, fmt.Errorf("GRUB images: %w", err)
	}
	return bl, nil
}

// Install is the bootloader step on a deployed disk (see
// disk.InstallBootloader): GRUB 2 when the ramdisk carries it for the boot
// mode, else metalbed's placeholder, which only simulated firmware boots —
// a fallback, reported in Installed.Fallback, unless b.Placeholder.
func (b Bootloaders) Install(ctx context.Context, dev disk.Disk, size int64, bootMode string) (Installed, error) {
	if b.Err != nil {
		return Installed{}, b.Err
	}
	grub := b.Grub.Has(bootMode)
	var g *disk.GrubImages
	if grub {
		g = b.Grub
	}
	if _, err := disk.InstallBootloader(ctx, dev, size, bootMode, g); err != nil {
		return Installed{}, err
	}
	switch {
	case grub:
		return Installed{Loader: "GRUB 2", Grub: true}, nil
	case b.Placeholder:
		return Installed{Loader: "metalbed's placeholder (the ramdisk was built without GRUB, as asked; boots on simulated firmware only)"}, nil
	}
	why := fmt.Sprintf("no GRUB 2 images for %s in %s: installed metalbed's placeholder loader instead, which boots on simulated firmware only (build the ramdisk with GRUB: %v)",
		bootMode, b.From, disk.ErrNoGrub)
	return Installed{Loader: "metalbed's placeholder (fallback: no GRUB 2 in the ramdisk)", Fallback: why}, nil
}

// Installer returns the iSCSI deploy ramdisk's bootloader step with b.
func (b Bootloaders) Installer() BootloaderInstaller {
	return func(ctx context.Context, d Disk, bootMode string) (Installed, error) {
		return b.Install(ctx, d.Dev, d.SizeBytes, bootMode)
	}
}

// InstallBootloader is the ramdisk's bootloader step on a real machine:
// with the boot loaders of the running ramdisk (LocalBootloaders).
func InstallBootloader(ctx context.Context, d Disk, bootMode string) (Installed, error) {
	b, err := LocalBootloaders()
	if err != nil {
		return Installed{}, err
	}
	return b.Installer()(ctx, d, bootMode)
}
