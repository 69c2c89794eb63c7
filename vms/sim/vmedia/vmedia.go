// Package vmedia is the simulated machine's boot from virtual media: what
// the firmware and the boot loader on a CD or USB stick do between "boot
// from virtual CD" and the kernel. The image the BMC inserted is read over
// HTTP(S) with range requests (HTTPImage), as a BMC streams it; an ISO 9660
// image must carry the El Torito entry of the machine's boot mode — BIOS:
// ISOLINUX (or GRUB) and its config; UEFI: the EFI image (a FAT ESP with
// \EFI\BOOT\BOOTX64.EFI) and the grub.cfg on it or on the ISO — and the
// kernel and initrds the default entry names are read from the image and
// handed over to the simulated kernel exactly as the PXE ROM hands over
// what it downloaded. A USB stick may also be a FAT image. Boots fail
// where real firmware does, with its kind of message on the console: an
// image that cannot be fetched, one not bootable in the machine's mode, a
// medium ejected during the boot.
package vmedia

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/disk/iso9660"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/pxe"
)

// Booter implements sim.Firmware for a boot from a virtual media drive
// (BootContext.Device vms.BootCDROM or vms.BootUSB).
type Booter struct {
	// Exec runs the kernel found on the medium (the wiring passes the
	// simulated kernel, kernel.Executor). Required.
	Exec pxe.Executor
	// Image says how images are fetched (TLS verification, cache).
	Image ImageOptions
	// MaxFile bounds a kernel or initrd read from a medium; default 1 GiB.
	MaxFile int64
	// Faults is asked, as a boot from a drive starts, about op
	// "vmedia-boot" of layer redfish for the machine: an
	// "eject-during-boot" hit ejects the medium after Arg reads of it
	// (default 1). nil => none.
	Faults fault.Injector
}

// The fault asked about as a boot from a drive starts.
const (
	opMediaBoot       = "vmedia-boot"
	actionEjectInBoot = "eject-during-boot"
	defaultEjectReads = 1
)

// ErrEjected says the medium left the drive during the boot.
var ErrEjected = errors.New("medium ejected")

// ErrNotBootable says the medium holds nothing this machine can boot in
// its boot mode.
var ErrNotBootable = errors.New("not bootable")

// configLimit bounds a loader config read from a medium.
const configLimit = 1 << 20

// Boot implements sim.Firmware.
func (bt Booter) Boot(ctx context.Context, b *sim.BootContext) error {
	if bt.Exec == nil {
		return errors.New("vmedia: no executor")
	}
	dev, what := vms.MediaCD, "virtual CD"
	if b.Device == vms.BootUSB {
		dev, what = vms.MediaUSB, "virtual USB stick"
	}
	say := func(format string, a ...any) { fmt.Fprintf(b.Console, format+"\r\n", a...) }
	url := ""
	if b.Media != nil {
		url = b.Media(dev)
	}
	if url == "" {
		say("%s: no medium", what)
		return fmt.Errorf("%s: no medium", what)
	}
	opt := bt.Image
	opt.Check = bt.mediaCheck(b, dev, url, what, opt.Check)
	say("%s: %s", what, url)
	img, err := OpenHTTPImage(ctx, url, opt)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		say("%s: cannot read the medium: %v", what, err)
		return fmt.Errorf("%s: %w", what, err)
	}
	defer img.Close()
	return bt.bootImage(ctx, b, what, img, (*run).boot)
}

// mediaCheck is the check before every read of the medium url in dev:
// the medium must still be in the drive, and next (when set) must pass.
// It asks Faults once, now: an "eject-during-boot" hit ejects the medium
// (b.Eject) after that many reads, so the next one fails.
func (bt Booter) mediaCheck(b *sim.BootContext, dev vms.MediaDevice, url, what string, next func() error) func() error {
	ejectAfter := int64(-1)
	if h, ok := fault.OrNone(bt.Faults).Inject(fault.Redfish, events.Who{Machine: b.Machine}, opMediaBoot); ok && h.Action == actionEjectInBoot {
		n, err := h.ArgInt()
		if err != nil || n < 0 {
			n = defaultEjectReads
		}
		ejectAfter = n
	}
	var reads atomic.Int64
	var eject sync.Once
	return func() error {
		if ejectAfter >= 0 && reads.Add(1) > ejectAfter && b.Eject != nil {
			eject.Do(func() { b.Eject(dev) })
		}
		if b.Media(dev) != url {
			return fmt.Errorf("%w: %s left the %s", ErrEjected, url, what)
		}
		if next != nil {
			return next()
		}
		return nil
	}
}

// bootImage boots img, read on demand, with how (a method of run), and
// says on the console why a boot failed.
func (bt Booter) bootImage(ctx context.Context, b *sim.BootContext, what string, img *HTTPImage, how func(*run, context.Context) error) error {
	say := func(format string, a ...any) { fmt.Fprintf(b.Console, format+"\r\n", a...) }
	if img.Ranged() {
		say("%s: %d bytes, read on demand", what, img.Size())
	} else {
		say("%s: %d bytes (the server ignores Range requests: downloaded whole)", what, img.Size())
	}
	r := &run{bt: bt, b: b, say: say, what: what, img: img}
	err := how(r, ctx)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		var ee execError
		switch {
		case errors.As(err, &ee):
		case errors.Is(err, ErrEjected):
			say("%s: read error: the medium was ejected", what)
		default:
			say("%s: %v", what, err)
		}
		return fmt.Errorf("%s %s: %w", what, img.URL(), err)
	}
	return nil
}

type run struct {
	bt   Booter
	b    *sim.BootContext
	say  func(string, ...any)
	what string
	img  *HTTPImage
}

// files is a file system on a medium.
type files interface {
	read(p string, limit int64) ([]byte, error)
}

// loadFile loads a kernel or an initrd from fs: streamed where fs can (an
// ISO: pxe.File keeps no whole copy of tens of MB), else read whole.
func loadFile(fs files, p string, limit int64) (pxe.File, error) {
	if l, ok := fs.(interface {
		load(p string, limit int64) (pxe.File, error)
	}); ok {
		return l.load(p, limit)
	}
	b, err := fs.read(p, limit)
	if err != nil {
		return pxe.File{}, err
	}
	return pxe.LoadBytes(p, b), nil
}

type isoFiles struct{ im *iso9660.Image }

func (f isoFiles) read(p string, limit int64) ([]byte, error) { return f.im.ReadFile(p, limit) }

func (f isoFiles) load(p string, limit int64) (pxe.File, error) {
	sr, err := f.im.Open(p)
	if err != nil {
		return pxe.File{}, err
	}
	if sr.Size() > limit {
		return pxe.File{}, fmt.Errorf("iso9660: %s has %d bytes, more than %d", p, sr.Size(), limit)
	}
	file, err := pxe.Load(p, sr)
	if err != nil {
		return pxe.File{}, fmt.Errorf("iso9660: read %s: %w", p, err)
	}
	return file, nil
}

type fatFiles struct {
	r    io.ReaderAt
	size int64
}

func (f fatFiles) read(p string, limit int64) ([]byte, error) {
	return disk.ReadFATFile(f.r, f.size, p, limit)
}

// loaderEntry is what a loader config boots.
type loaderEntry struct {
	loader  string // what reads the config, for the console
	config  string // its path
	kernel  string
	initrds []string
	cmdline string // what the kernel sees
	fs      files  // where kernel and initrds are read
	dir     string // the config's directory, for relative paths
}

func (r *run) boot(ctx context.Context) error {
	im, err := iso9660.Open(r.img, r.img.Size())
	var e *loaderEntry
	switch {
	case err == nil:
		e, err = r.fromISO(im)
	case errors.Is(err, iso9660.ErrNotISO9660) && r.b.Device == vms.BootUSB:
		e, err = r.fromFAT()
	case errors.Is(err, iso9660.ErrNotISO9660):
		err = fmt.Errorf("%w: %v", ErrNotBootable, err)
	}
	if err != nil {
		return err
	}
	return r.load(ctx, e)
}

// load reads the kernel and initrds e names and hands over to them.
func (r *run) load(ctx context.Context, e *loaderEntry) error {
	r.say("%s: %s reads %s", r.what, e.loader, e.config)
	r.say("Loading %s...", e.kernel)
	kernel, err := loadFile(e.fs, resolve(e.dir, e.kernel), r.maxFile())
	if err != nil {
		return fmt.Errorf("%w: kernel %s: %v", ErrNotBootable, e.kernel, r.cause(err))
	}
	pimg := pxe.Image{KernelName: e.kernel, Kernel: kernel, Cmdline: e.cmdline}
	if len(r.b.NICs) > 0 {
		pimg.NIC = r.b.NICs[0]
	}
	for _, name := range e.initrds {
		r.say("Loading %s...", name)
		rd, err := loadFile(e.fs, resolve(e.dir, name), r.maxFile())
		if err != nil {
			return fmt.Errorf("%w: initrd %s: %v", ErrNotBootable, name, r.cause(err))
		}
		rd.Name = name
		pimg.Initrds = append(pimg.Initrds, rd)
	}
	if err := pxe.CheckBzImage(kernel.Head); err != nil {
		return fmt.Errorf("%w: kernel %s: %v", ErrNotBootable, e.kernel, err)
	}
	req, fetched := r.img.Stats()
	r.img.Close() // all that boots is in memory now
	r.say("Booting %s (%d bytes, %d initrd; %d requests, %d bytes read from the image)", e.kernel, kernel.Size, len(pimg.Initrds), req, fetched)
	r.say("Command line: %s", e.cmdline)
	r.b.Emit(vms.EventBoot, r.b.Device.String())
	r.b.Emit(vms.EventConsole, "kernel "+e.kernel+" "+e.cmdline)
	if err := r.bt.Exec(ctx, r.b, pimg); err != nil {
		return execError{err}
	}
	return nil
}

// execError is the failure of what the medium booted: the kernel said why
// on the console already.
type execError struct{ error }

func (e execError) Unwrap() error { return e.error }

// cause keeps an eject visible through file-system errors.
func (r *run) cause(err error) error {
	if errors.Is(err, ErrEjected) {
		return err
	}
	if cerr := r.img.opt.Check(); cerr != nil {
		return cerr
	}
	return err
}

func (r *run) maxFile() int64 {
	if r.bt.MaxFile > 0 {
		return r.bt.MaxFile
	}
	return 1 << 30
}

// Where loaders look for their configs on a medium.
var (
	isolinuxConfigs = []string{"isolinux/isolinux.cfg", "boot/isolinux/isolinux.cfg", "isolinux.cfg",
		"syslinux/syslinux.cfg", "boot/syslinux/syslinux.cfg", "syslinux.cfg"}
	syslinuxConfigs = []string{"syslinux.cfg", "syslinux/syslinux.cfg", "boot/syslinux/syslinux.cfg"}
	espGrubConfigs  = []string{"EFI/BOOT/grub.cfg", "boot/grub/grub.cfg"}
	isoGrubConfigs  = []string{"boot/grub/grub.cfg", "EFI/BOOT/grub.cfg"}
)

// fromISO follows the El Torito entry of the machine's boot mode.
func (r *run) fromISO(im *iso9660.Image) (*loaderEntry, error) {
	fs := isoFiles{im}
	if r.b.Mode == vms.UEFI {
		ent, err := im.BootEntryFor(iso9660.PlatformEFI)
		if err != nil {
			// EDK2 reads every bootable entry regardless of its platform
			// ID and boots one whose image is a FAT file system with
			// the loader: a mislabelled EFI image still boots.
			if alt, ok := r.fatEntry(im); ok {
				ent, err = alt, nil
			}
		}
		if err != nil {
			r.say("BdsDxe: No bootable option or device was found.")
			return nil, fmt.Errorf("%w in UEFI mode: no El Torito EFI entry (%v)", ErrNotBootable, r.cause(err))
		}
		esp, err := im.BootImage(ent)
		if err != nil {
			return nil, fmt.Errorf("%w: El Torito EFI image: %v", ErrNotBootable, r.cause(err))
		}
		espFS := fatFiles{esp, esp.Size()}
		if _, err := espFS.read(disk.ESPLoaderPath, r.maxFile()); err != nil {
			r.say("BdsDxe: failed to load Boot0001 \"UEFI %s\": Not Found", r.what)
			return nil, fmt.Errorf("%w in UEFI mode: the El Torito EFI image has no %s (%v)", ErrNotBootable, disk.ESPLoaderPath, r.cause(err))
		}
		r.say("BdsDxe: starting Boot0001 \"UEFI %s\" from %s", r.what, disk.ESPLoaderPath)
		// GRUB on the ESP reads its grub.cfg there; one without a linux
		// entry (or none) leads to the ISO's ("search ... configfile", as
		// Ironic's ESP does with its grub_config_path on the ISO).
		e, err := r.grubFrom(espFS, "the EFI image", espGrubConfigs)
		switch {
		case err == nil:
			e.fs = r.chooseFS(e, espFS, fs)
			return e, nil
		case errors.Is(err, ErrEjected):
			return nil, err
		}
		return r.grubFrom(fs, "", isoGrubConfigs)
	}
	ent, err := im.BootEntryFor(iso9660.PlatformBIOS)
	if err != nil {
		r.say("Boot failed: could not read from CDROM (code 0004)")
		return nil, fmt.Errorf("%w in legacy BIOS mode: no El Torito BIOS entry (%v)", ErrNotBootable, r.cause(err))
	}
	if ent.Emulation != iso9660.NoEmulation {
		return nil, fmt.Errorf("%w: El Torito BIOS entry emulates a %s (only no-emulation loaders are simulated)", ErrNotBootable, emulationName(ent.Emulation))
	}
	head := make([]byte, 2048)
	bi, err := im.BootImage(ent)
	if err == nil {
		_, err = bi.ReadAt(head, 0)
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: El Torito BIOS boot image: %v", ErrNotBootable, r.cause(err))
	}
	if strings.Contains(string(head), "ISOLINUX") || strings.Contains(string(head), "isolinux") {
		r.say("ISOLINUX (metalbed SimBIOS)")
		return r.syslinuxFrom(fs, "ISOLINUX", isolinuxConfigs)
	}
	// GRUB's El Torito image (eltorito.img) reads /boot/grub/grub.cfg.
	e, err := r.grubFrom(fs, "", isoGrubConfigs)
	if err != nil {
		if errors.Is(err, iso9660.ErrNotExist) {
			r.say("Boot failed: the simulated CPU cannot run this CD's boot image")
			return nil, fmt.Errorf("%w: the El Torito BIOS image is neither ISOLINUX nor GRUB with a grub.cfg", ErrNotBootable)
		}
		return nil, err
	}
	return e, nil
}

// fatEntry finds a bootable no-emulation entry of another platform whose
// image is a FAT file system holding the UEFI loader.
func (r *run) fatEntry(im *iso9660.Image) (iso9660.BootEntry, bool) {
	ents, err := im.BootCatalog()
	if err != nil {
		return iso9660.BootEntry{}, false
	}
	for _, e := range ents {
		if !e.Bootable || e.Emulation != iso9660.NoEmulation {
			continue
		}
		img, err := im.BootImage(e)
		if err != nil {
			continue
		}
		if _, err := disk.ReadFATFile(img, img.Size(), disk.ESPLoaderPath, r.maxFile()); err == nil {
			return e, true
		}
	}
	return iso9660.BootEntry{}, false
}

// chooseFS picks where a grub.cfg read from the ESP finds its files: the
// ESP if the kernel is there, else the ISO (GRUB's search finds the CD).
func (r *run) chooseFS(e *loaderEntry, esp, iso files) files {
	if _, err := esp.read(resolve(e.dir, e.kernel), r.maxFile()); err == nil {
		return esp
	}
	return iso
}

// fromFAT boots a USB stick holding a FAT file system (no partition table).
func (r *run) fromFAT() (*loaderEntry, error) {
	fs := fatFiles{r.img, r.img.Size()}
	if r.b.Mode == vms.UEFI {
		if _, err := fs.read(disk.ESPLoaderPath, r.maxFile()); err != nil {
			r.say("BdsDxe: No bootable option or device was found.")
			return nil, fmt.Errorf("%w in UEFI mode: no %s on the stick (%v)", ErrNotBootable, disk.ESPLoaderPath, r.cause(err))
		}
		r.say("BdsDxe: starting Boot0001 \"UEFI %s\" from %s", r.what, disk.ESPLoaderPath)
		return r.grubFrom(fs, "", espGrubConfigs)
	}
	boot := make([]byte, 512)
	if _, err := r.img.ReadAt(boot, 0); err != nil {
		return nil, fmt.Errorf("%w: read sector 0: %v", ErrNotBootable, r.cause(err))
	}
	if boot[510] != 0x55 || boot[511] != 0xAA {
		r.say("Boot failed: not a bootable disk")
		return nil, fmt.Errorf("%w in legacy BIOS mode: no boot signature on the stick", ErrNotBootable)
	}
	r.say("SYSLINUX (metalbed SimBIOS)")
	return r.syslinuxFrom(fs, "SYSLINUX", syslinuxConfigs)
}

// syslinuxFrom reads the first config found of names and its default label.
func (r *run) syslinuxFrom(fs files, loader string, names []string) (*loaderEntry, error) {
	text, name, err := r.firstConfig(fs, names)
	if err != nil {
		r.say("Could not find kernel image: linux")
		r.say("boot: ")
		return nil, fmt.Errorf("%w: %s found no config (%s): %v", ErrNotBootable, loader, strings.Join(names, ", "), err)
	}
	l, err := pxe.ParseSyslinuxDefault(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotBootable, name, err)
	}
	switch {
	case l.LocalBoot:
		return nil, fmt.Errorf("%w: %s: label %s boots the local disk", ErrNotBootable, name, l.Name)
	case l.COM32 != "":
		return nil, fmt.Errorf("%w: %s: label %s runs the module %s (not simulated)", ErrNotBootable, name, l.Name, l.COM32)
	case l.Kernel == "":
		return nil, fmt.Errorf("%w: %s: label %s has no kernel", ErrNotBootable, name, l.Name)
	}
	args := []string{"BOOT_IMAGE=" + l.Kernel}
	if l.Append != "" {
		args = append(args, l.Append)
	}
	return &loaderEntry{loader: loader, config: name, kernel: l.Kernel, initrds: l.Initrds,
		cmdline: strings.Join(args, " "), fs: fs, dir: path.Dir(name)}, nil
}

// grubFrom reads the first grub.cfg found of names and its first entry,
// following one "configfile" to another config on the same medium.
func (r *run) grubFrom(fs files, where string, names []string) (*loaderEntry, error) {
	text, name, err := r.firstConfig(fs, names)
	if err != nil {
		return nil, err
	}
	if where != "" {
		name += " on " + where
	}
	ge, err := disk.ParseGrubConfig(text)
	if err != nil {
		if next := configfile(text); next != "" {
			if t2, err2 := fs.read(strings.TrimPrefix(next, "/"), configLimit); err2 == nil {
				text, name = string(t2), next
				ge, err = disk.ParseGrubConfig(text)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotBootable, name, err)
	}
	e := &loaderEntry{loader: "GRUB", config: name, kernel: ge.Kernel, cmdline: strings.TrimSpace("BOOT_IMAGE=" + ge.Kernel + " " + ge.Cmdline), fs: fs, dir: "/"}
	if ge.Initrd != "" {
		e.initrds = []string{ge.Initrd}
	}
	return e, nil
}

// configfile finds "configfile PATH" in a grub.cfg.
func configfile(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "configfile" && !strings.Contains(f[1], "$") {
			return f[1]
		}
	}
	return ""
}

// firstConfig reads the first of names that exists.
func (r *run) firstConfig(fs files, names []string) (string, string, error) {
	var last error
	for _, n := range names {
		b, err := fs.read(n, configLimit)
		if err == nil {
			return string(b), "/" + n, nil
		}
		if errors.Is(err, ErrEjected) {
			return "", "", err
		}
		if cerr := r.img.opt.Check(); cerr != nil {
			return "", "", cerr
		}
		last = err
	}
	return "", "", fmt.Errorf("%w: %v", iso9660.ErrNotExist, last)
}

// resolve makes a config-relative path absolute.
func resolve(dir, p string) string {
	if strings.HasPrefix(p, "/") {
		return strings.TrimPrefix(p, "/")
	}
	return strings.TrimPrefix(path.Join(dir, p), "/")
}

func emulationName(e iso9660.Emulation) string {
	switch e {
	case iso9660.Floppy12, iso9660.Floppy144, iso9660.Floppy288:
		return "floppy"
	case iso9660.HardDisk:
		return "hard disk"
	}
	return "device"
}
