// Package sim is the in-process simulated machine: power with optional
// transition delays, boot flags consumed as firmware consumes them, NICs, a
// sparse-file disk, a serial console, events, and a firmware seam where the
// network boot client and local-boot loader plug in. Every change is saved
// under the machine's directory, so a restarted process loses nothing.
package sim

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/timing"
	"golang.org/x/sys/unix"
)

// Config describes one simulated machine.
type Config struct {
	// Name is the machine's name and the name of its directory under
	// StateDir: letters, digits, '.', '_' and '-'. Required.
	Name string
	// StateDir holds one directory per machine (state.json, disk.img,
	// console.log). Required.
	StateDir string
	// MACs of the machine's NICs. nil => as saved, else NICs addresses from
	// MAC(Name, i, 0).
	MACs []net.HardwareAddr
	// NICs is the number of NICs when MACs is nil and nothing is saved;
	// default 1.
	NICs int
	// UUID is the SMBIOS system UUID. Zero => as saved, else
	// UUIDFor(Name).
	UUID [16]byte
	// DiskBytes is the disk size. 0 => as saved, else 10 GiB. A disk is
	// grown to a larger size but never shrunk.
	DiskBytes int64
	// BootMode is the firmware's mode when no boot override says otherwise.
	// "" => as saved, else bios.
	BootMode vms.BootMode
	// PowerDelay is how long a power transition takes (power supplies,
	// POST); the machine reports its old state until then. Default 0.
	PowerDelay time.Duration
	// SoftOffDelay is how long the running OS takes to shut down after a
	// soft (ACPI) power-off request. Default 2s.
	SoftOffDelay time.Duration
	// Pace is the machine's hardware pace (vms/timing): its POST and
	// link-up times the firmware waits, its disk's write rate, and its
	// power-on time when PowerDelay is 0. Zero: as fast as the host.
	Pace timing.Figures
	// Firmware runs on every power-on and reset. nil => StockFirmware{}.
	Firmware Firmware
	// Logger gets milestones (power transitions, boots). nil => discard.
	Logger *slog.Logger
	// ConsoleLogMax is the size at which console.log is rotated (keeping
	// ConsoleLogKeep older files). 0 => DefaultConsoleLogMax.
	ConsoleLogMax int64
}

// DefaultDiskBytes is the disk size when neither Config nor saved state
// gives one.
const DefaultDiskBytes = 10 << 30

var _ vms.MediaMachine = (*Machine)(nil)

// Machine is a simulated server. It is safe for concurrent use.
type Machine struct {
	cfg     Config
	dir     string
	uuid    [16]byte
	nics    []vms.NIC
	disk    fileDisk
	console *console
	baseLog *slog.Logger // Config.Logger; see log
	logOnce sync.Once
	nodeLog *slog.Logger

	root    context.Context // canceled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // firmware runs, delayed transitions
	powerMu sync.Mutex     // serializes power transitions

	mu     sync.Mutex // guards the fields below
	st     state
	run    *run
	gen    uint64 // increments on every boot; a stale soft-off timer sees it
	closed bool

	subs vms.Subscribers
}

// run is one firmware execution, from power-on or reset to power-off.
type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// validName reports whether name can name a machine and its directory:
// 1 to 63 letters, digits, '.', '_' or '-', not starting with a symbol.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// Open loads the machine saved under cfg.StateDir/cfg.Name, or creates it.
// A machine that was on when its process stopped resumes its last boot
// (its boot flags are left as they are).
func Open(cfg Config) (*Machine, error) {
	if !validName(cfg.Name) {
		return nil, fmt.Errorf("machine name %q: want letters, digits, '.', '_', '-' (at most 63)", cfg.Name)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("machine %s: no state directory", cfg.Name)
	}
	if cfg.DiskBytes < 0 {
		return nil, fmt.Errorf("machine %s: disk size %d", cfg.Name, cfg.DiskBytes)
	}
	if cfg.BootMode != "" && cfg.BootMode != vms.BIOS && cfg.BootMode != vms.UEFI {
		return nil, fmt.Errorf("machine %s: boot mode %q: want bios or uefi", cfg.Name, cfg.BootMode)
	}
	if cfg.NICs < 0 || cfg.NICs > 32 {
		return nil, fmt.Errorf("machine %s: %d NICs: want 1 to 32", cfg.Name, cfg.NICs)
	}
	if cfg.NICs == 0 {
		cfg.NICs = 1
	}
	if cfg.PowerDelay == 0 {
		cfg.PowerDelay = cfg.Pace.PowerOn
	}
	if cfg.SoftOffDelay == 0 {
		cfg.SoftOffDelay = 2 * time.Second
	}
	if cfg.Firmware == nil {
		cfg.Firmware = StockFirmware{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Join(cfg.StateDir, cfg.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("machine %s: %w", cfg.Name, err)
	}
	saved, err := loadState(dir)
	if err != nil {
		return nil, err
	}
	st, err := reconcile(cfg, saved)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", cfg.Name, err)
	}
	diskPath := filepath.Join(dir, diskFile)
	if err := prepareDisk(diskPath, &st, saved != nil); err != nil {
		return nil, fmt.Errorf("machine %s: %w", cfg.Name, err)
	}
	if saved == nil || !sameState(saved, &st) {
		if err := st.save(dir); err != nil {
			return nil, fmt.Errorf("machine %s: %w", cfg.Name, err)
		}
	}
	uuid, _ := parseUUID(st.UUID)
	nics := make([]vms.NIC, len(st.MACs))
	for i, s := range st.MACs {
		mac, _ := ParseMAC(s)
		nics[i] = vms.NIC{MAC: mac}
	}
	root, cancel := context.WithCancel(context.Background())
	m := &Machine{
		cfg:     cfg,
		dir:     dir,
		uuid:    uuid,
		nics:    nics,
		disk:    fileDisk{path: diskPath, size: st.DiskBytes},
		console: newConsole(filepath.Join(dir, consoleFile), cmp.Or(cfg.ConsoleLogMax, DefaultConsoleLogMax)),
		baseLog: log,
		root:    root,
		cancel:  cancel,
		st:      st,
	}
	if st.Power == vms.PowerOn && st.LastBoot != nil {
		m.console.printf("\r\n[metalbed: process restarted; machine was on, resuming its last boot]\r\n")
		m.mu.Lock()
		m.startRunLocked(*st.LastBoot)
		m.mu.Unlock()
	}
	return m, nil
}

// reconcile merges the configuration with saved state: what the config
// sets wins, what it leaves zero comes from the saved state, then defaults.
func reconcile(cfg Config, saved *state) (state, error) {
	var st state
	if saved != nil {
		st = *saved
		st.MACs = append([]string(nil), saved.MACs...)
		if saved.LastBoot != nil {
			lb := *saved.LastBoot
			st.LastBoot = &lb
		}
		st.Media = maps.Clone(saved.Media)
		if st.Name != cfg.Name {
			return st, fmt.Errorf("saved state belongs to machine %q", st.Name)
		}
	} else {
		st = state{
			Version:  stateVersion,
			Name:     cfg.Name,
			UUID:     FormatUUID(UUIDFor(cfg.Name)),
			BootMode: vms.BIOS,
			Power:    vms.PowerOff,
		}
		st.setFlags(vms.BootFlags{})
		for i := range cfg.NICs {
			st.MACs = append(st.MACs, MAC(cfg.Name, i, 0).String())
		}
		st.DiskBytes = DefaultDiskBytes
	}
	if cfg.MACs != nil {
		if len(cfg.MACs) == 0 || len(cfg.MACs) > 32 {
			return st, fmt.Errorf("%d MACs: want 1 to 32", len(cfg.MACs))
		}
		st.MACs = st.MACs[:0]
		for _, m := range cfg.MACs {
			s := m.String()
			if _, err := ParseMAC(s); err != nil {
				return st, err
			}
			st.MACs = append(st.MACs, s)
		}
	}
	if cfg.UUID != ([16]byte{}) {
		st.UUID = FormatUUID(cfg.UUID)
	}
	if cfg.BootMode != "" {
		st.BootMode = cfg.BootMode
	}
	if cfg.DiskBytes != 0 {
		if saved != nil && cfg.DiskBytes < saved.DiskBytes {
			return st, fmt.Errorf("disk is %d bytes, config asks for %d: refusing to shrink a disk", saved.DiskBytes, cfg.DiskBytes)
		}
		st.DiskBytes = cfg.DiskBytes
	}
	if st.DiskBytes%sectorSize != 0 {
		return st, fmt.Errorf("disk size %d is not a multiple of %d", st.DiskBytes, sectorSize)
	}
	return st, nil
}

// prepareDisk creates the sparse disk file, or grows it to st.DiskBytes.
// An existing disk larger than asked for is kept whole and st follows it,
// unless the saved state disagrees with it (then someone must decide).
func prepareDisk(path string, st *state, hadState bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && hadState:
		return fmt.Errorf("disk %s is missing although the machine's state exists: refusing to create a blank disk in its place (remove %s to start this machine afresh)", path, filepath.Join(filepath.Dir(path), stateFile))
	case errors.Is(err, fs.ErrNotExist):
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("create disk: %w", err)
		}
		err = f.Truncate(st.DiskBytes)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("create disk %s: %w", path, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("disk: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("disk %s is not a regular file", path)
	case fi.Size() > st.DiskBytes:
		if hadState {
			return fmt.Errorf("disk %s is %d bytes but the machine's state says %d: refusing to shrink it", path, fi.Size(), st.DiskBytes)
		}
		st.DiskBytes = fi.Size()
		return nil
	case fi.Size() < st.DiskBytes:
		if err := os.Truncate(path, st.DiskBytes); err != nil {
			return fmt.Errorf("grow disk: %w", err)
		}
	}
	return nil
}

func sameState(a, b *state) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Name implements vms.Machine.
func (m *Machine) Name() string { return m.cfg.Name }

// UUID implements vms.Machine.
func (m *Machine) UUID() [16]byte { return m.uuid }

// Dir is the machine's state directory.
func (m *Machine) Dir() string { return m.dir }

// BootMode is the configured boot mode.
func (m *Machine) BootMode() vms.BootMode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.BootMode
}

// log is the machine's logger, with its name as key "node". Made on
// first use: most machines of a large idle fleet never log.
func (m *Machine) log() *slog.Logger {
	m.logOnce.Do(func() { m.nodeLog = m.baseLog.With("node", m.cfg.Name) })
	return m.nodeLog
}

// ConsoleLog is the path of the append-only console log.
func (m *Machine) ConsoleLog() string { return m.console.path }

// NICs implements vms.Machine.
func (m *Machine) NICs() []vms.NIC {
	out := make([]vms.NIC, len(m.nics))
	for i, n := range m.nics {
		out[i] = vms.NIC{MAC: append(net.HardwareAddr(nil), n.MAC...)}
	}
	return out
}

// Disk implements vms.Machine.
func (m *Machine) Disk() vms.Disk { return vms.Disk{Path: m.disk.path, SizeBytes: m.disk.size} }

// PowerState implements vms.Machine.
func (m *Machine) PowerState(ctx context.Context) (vms.PowerState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", m.errClosed()
	}
	return m.st.Power, nil
}

// BootFlags implements vms.Machine: parameter 5 exactly as stored.
func (m *Machine) BootFlags(ctx context.Context) (vms.BootFlags, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return vms.BootFlags{}, m.errClosed()
	}
	return m.st.flags(), nil
}

// SetBootFlags implements vms.Machine: parameter 5 is stored byte for byte
// (and an HTTP boot URI cleared).
func (m *Machine) SetBootFlags(ctx context.Context, f vms.BootFlags) error {
	return m.SetHTTPBoot(ctx, f, "")
}

// SetHTTPBoot implements vms.HTTPBootMachine: the flags are stored as
// SetBootFlags stores them, and a boot under them fetches uri over HTTP(S)
// when the firmware boots in UEFI mode (legacy BIOS fails the boot: it has
// no HTTP boot). The URI is saved with the flags.
func (m *Machine) SetHTTPBoot(ctx context.Context, f vms.BootFlags, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.errClosed()
	}
	oldFlags, oldURI := m.st.BootFlags, m.st.HTTPBootURI
	m.st.setFlags(f)
	m.st.HTTPBootURI = uri
	if err := m.st.save(m.dir); err != nil {
		m.st.BootFlags, m.st.HTTPBootURI = oldFlags, oldURI
		return fmt.Errorf("machine %s: set boot flags: %w", m.cfg.Name, err)
	}
	m.log().Info("boot flags set", "flags", fmt.Sprintf("% x", f[:]), "device", f.Device().String(),
		"valid", f.Valid(), "persistent", f.Persistent(), "efi", f.EFI(), "http_boot_uri", uri)
	return nil
}

// mediaDrives are the virtual media drives of a simulated machine.
var mediaDrives = map[vms.MediaDevice]bool{vms.MediaCD: true, vms.MediaUSB: true}

// InsertMedia implements vms.MediaMachine: the drive holds imageURL from
// now on (saved; it survives power cycles and restarts). The image is
// read when the machine boots from the drive, not now.
func (m *Machine) InsertMedia(ctx context.Context, dev vms.MediaDevice, imageURL string) error {
	if !mediaDrives[dev] {
		return fmt.Errorf("machine %s: %q: %w", m.cfg.Name, dev, vms.ErrNoMediaDrive)
	}
	if imageURL == "" {
		return fmt.Errorf("machine %s: insert into %s: no image URL", m.cfg.Name, dev)
	}
	return m.setMedia(dev, imageURL)
}

// EjectMedia implements vms.MediaMachine. A boot reading the drive's image
// fails at its next read, as firmware whose CD was pulled does.
func (m *Machine) EjectMedia(ctx context.Context, dev vms.MediaDevice) error {
	if !mediaDrives[dev] {
		return fmt.Errorf("machine %s: %q: %w", m.cfg.Name, dev, vms.ErrNoMediaDrive)
	}
	return m.setMedia(dev, "")
}

// Media implements vms.MediaMachine.
func (m *Machine) Media(ctx context.Context, dev vms.MediaDevice) (string, error) {
	if !mediaDrives[dev] {
		return "", fmt.Errorf("machine %s: %q: %w", m.cfg.Name, dev, vms.ErrNoMediaDrive)
	}
	return m.mediaNow(dev), nil
}

// ejectFromBoot empties dev for firmware that lost its medium mid-boot;
// a failure to save is logged (the boot fails at its next read anyway).
func (m *Machine) ejectFromBoot(dev vms.MediaDevice) {
	if err := m.setMedia(dev, ""); err != nil {
		m.log().Warn("eject during boot", "err", err)
	}
}

func (m *Machine) mediaNow(dev vms.MediaDevice) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Media[dev]
}

func (m *Machine) setMedia(dev vms.MediaDevice, imageURL string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.errClosed()
	}
	old := maps.Clone(m.st.Media)
	if imageURL == "" {
		delete(m.st.Media, dev)
		if len(m.st.Media) == 0 {
			m.st.Media = nil
		}
	} else {
		if m.st.Media == nil {
			m.st.Media = map[vms.MediaDevice]string{}
		}
		m.st.Media[dev] = imageURL
	}
	if err := m.st.save(m.dir); err != nil {
		m.st.Media = old
		return fmt.Errorf("machine %s: virtual media %s: %w", m.cfg.Name, dev, err)
	}
	if imageURL == "" {
		m.log().Info("virtual media ejected", "device", string(dev))
	} else {
		m.log().Info("virtual media inserted", "device", string(dev), "image", imageURL)
	}
	return nil
}

// Power implements vms.Machine. On, off, cycle and reset take PowerDelay
// (the call returns at once when a delay is configured; PowerState shows
// the change once it happened). Soft asks the running OS to shut down,
// which it does after SoftOffDelay. Diag raises an NMI.
func (m *Machine) Power(ctx context.Context, a vms.PowerAction) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.errClosed()
	}
	on := m.st.Power == vms.PowerOn
	gen := m.gen
	m.mu.Unlock()
	switch a {
	case vms.ActionOn, vms.ActionOff:
	case vms.ActionCycle, vms.ActionReset:
		if !on {
			return fmt.Errorf("machine %s: %s: %w", m.cfg.Name, a, vms.ErrPoweredOff)
		}
	case vms.ActionDiag:
		if !on {
			return fmt.Errorf("machine %s: %s: %w", m.cfg.Name, a, vms.ErrPoweredOff)
		}
		m.console.printf("Uhhuh. NMI received for unknown reason 3d on CPU 0.\r\nDazed and confused, but trying to continue\r\n")
		m.emit(vms.EventConsole, "NMI received (diagnostic interrupt)")
		return nil
	case vms.ActionSoft:
		if !on {
			return nil
		}
		m.console.printf("ACPI: power button pressed, the OS is shutting down\r\n")
		m.later(m.cfg.SoftOffDelay, func() {
			m.mu.Lock()
			stale := m.gen != gen
			m.mu.Unlock()
			if !stale {
				m.console.printf("reboot: Power down\r\n")
			}
			m.applyIfBoot(gen, vms.ActionOff)
		})
		return nil
	default:
		return fmt.Errorf("machine %s: unknown power action %q", m.cfg.Name, a)
	}
	if m.cfg.PowerDelay == 0 {
		return m.apply(a)
	}
	m.later(m.cfg.PowerDelay, func() { m.apply(a) })
	return nil
}

// later runs fn after d unless the machine closes first.
func (m *Machine) later(d time.Duration, fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			fn()
		case <-m.root.Done():
		}
	}()
}

// apply carries out a power transition now.
func (m *Machine) apply(a vms.PowerAction) error {
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	return m.applyLocked(a)
}

// applyIfBoot applies a only while boot gen is still the current one: a
// request from a program (or an OS shutdown) dies with its boot.
func (m *Machine) applyIfBoot(gen uint64, a vms.PowerAction) {
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	m.mu.Lock()
	stale := m.gen != gen
	m.mu.Unlock()
	if !stale {
		m.applyLocked(a)
	}
}

// applyLocked is apply with m.powerMu held.
func (m *Machine) applyLocked(a vms.PowerAction) error {
	switch a {
	case vms.ActionOn:
		return m.powerOn(vms.EventPowerOn)
	case vms.ActionOff:
		return m.powerOff()
	case vms.ActionCycle:
		if err := m.powerOff(); err != nil {
			return err
		}
		return m.powerOn(vms.EventPowerOn)
	case vms.ActionReset:
		m.mu.Lock()
		on := m.st.Power == vms.PowerOn
		m.mu.Unlock()
		if !on {
			return fmt.Errorf("machine %s: reset: %w", m.cfg.Name, vms.ErrPoweredOff)
		}
		m.stopRun()
		return m.powerOn(vms.EventReset)
	}
	return nil
}

// powerOn boots the machine: the boot flags decide device and mode, and a
// one-time override is consumed (cleared to no override) by this boot.
// why is vms.EventPowerOn, or vms.EventReset for a reset of a running
// machine.
func (m *Machine) powerOn(why vms.EventKind) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.errClosed()
	}
	if why == vms.EventPowerOn && m.st.Power == vms.PowerOn {
		m.mu.Unlock()
		return nil
	}
	prev := m.st
	flags := m.st.flags()
	lb := lastBoot{Device: vms.BootNone, Mode: m.st.BootMode}
	if flags.Valid() {
		lb.Device, lb.Override = flags.Device(), true
		lb.HTTPBootURI = m.st.HTTPBootURI
		lb.Mode = vms.BIOS
		if flags.EFI() {
			lb.Mode = vms.UEFI
		}
		if !flags.Persistent() {
			m.st.setFlags(vms.BootFlags{})
		}
	}
	m.st.Power = vms.PowerOn
	m.st.LastBoot = &lb
	if err := m.st.save(m.dir); err != nil {
		m.st = prev
		m.mu.Unlock()
		return fmt.Errorf("machine %s: power on: %w", m.cfg.Name, err)
	}
	m.startRunLocked(lb)
	m.mu.Unlock()
	m.log().Info("powered on", "event", string(why), "device", lb.Device.String(), "mode", string(lb.Mode), "override", lb.Override)
	m.emit(why, fmt.Sprintf("boot device %s, %s", lb.Device, lb.Mode))
	return nil
}

func (m *Machine) powerOff() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return m.errClosed()
	}
	if m.st.Power == vms.PowerOff {
		m.mu.Unlock()
		return nil
	}
	m.st.Power = vms.PowerOff
	if err := m.st.save(m.dir); err != nil {
		m.st.Power = vms.PowerOn
		m.mu.Unlock()
		return fmt.Errorf("machine %s: power off: %w", m.cfg.Name, err)
	}
	m.gen++
	m.mu.Unlock()
	m.stopRun()
	m.log().Info("powered off")
	m.emit(vms.EventPowerOff, "")
	return nil
}

// startRunLocked starts the firmware for one boot. m.mu is held.
func (m *Machine) startRunLocked(lb lastBoot) {
	m.gen++
	ctx, cancel := context.WithCancel(m.root)
	r := &run{cancel: cancel, done: make(chan struct{})}
	m.run = r
	flags := m.st.flags()
	disk := &runDisk{path: m.disk.path, size: m.disk.size, rate: m.cfg.Pace.DiskWriteBytesPerSec}
	b := &BootContext{
		Machine:      m.cfg.Name,
		UUID:         m.uuid,
		Device:       lb.Device,
		HTTPBootURI:  lb.HTTPBootURI,
		Override:     lb.Override,
		Persistent:   lb.Override && flags.Valid() && flags.Persistent(),
		Mode:         lb.Mode,
		Disk:         disk,
		NICs:         m.NICs(),
		Console:      m.console,
		ConsoleInput: m.console.in(),
		Emit:         m.emit,
		Media:        m.mediaNow,
		Eject:        m.ejectFromBoot,
		Pace:         m.cfg.Pace,
		Reset:        m.fromBoot(m.gen, vms.ActionReset),
		PowerOff:     m.fromBoot(m.gen, vms.ActionOff),
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(r.done)
		defer cancel()
		defer disk.detach()
		err := m.cfg.Firmware.Boot(ctx, b)
		if err != nil && ctx.Err() == nil {
			m.log().Info("boot failed", "err", err)
			m.emit(vms.EventBootFail, err.Error())
		}
	}()
}

// fromBoot is a power action the program of boot gen may take on its own
// machine; it runs in the background, and not at all once that boot is over.
func (m *Machine) fromBoot(gen uint64, a vms.PowerAction) func() {
	return func() { m.later(0, func() { m.applyIfBoot(gen, a) }) }
}

// stopRun cuts power to the running firmware and waits for it to stop.
func (m *Machine) stopRun() {
	m.mu.Lock()
	r := m.run
	m.run = nil
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// AttachConsole implements vms.Machine: reads yield console output from
// now on, writes are keystrokes (echoed). The attachment ends with ctx,
// Close, or the machine's Close.
func (m *Machine) AttachConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	cc, err := m.console.attach(ctx)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.cfg.Name, err)
	}
	return cc, nil
}

// Subscribe implements vms.Machine.
func (m *Machine) Subscribe(fn func(vms.Event)) (cancel func()) {
	return m.subs.Subscribe(fn)
}

func (m *Machine) emit(kind vms.EventKind, detail string) {
	m.subs.Emit(vms.Event{Time: time.Now(), Machine: m.cfg.Name, Kind: kind, Detail: detail})
}

// Close stops the machine's goroutines; its state is already saved (a
// machine that was on stays on in its state and resumes on Open).
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	m.console.close()
	return nil
}

func (m *Machine) errClosed() error { return fmt.Errorf("machine %s: closed", m.cfg.Name) }

// fileDisk is the sparse disk file, opened per access so that thousands of
// idle machines hold no descriptors.
type fileDisk struct {
	path string
	size int64
}

func (d fileDisk) Size() int64 { return d.size }

func (d fileDisk) ReadAt(p []byte, off int64) (int, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readDisk(f, d.size, p, off)
}

func (d fileDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := checkWrite(d.size, p, off); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(p, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// WriteZeroesAt makes n bytes at off read as zeros, a hole in the file
// (iSCSI WRITE SAME of a zero block, an image's zero runs).
func (d fileDisk) WriteZeroesAt(off, n int64) error {
	if err := checkZeroes(d.size, off, n); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = zeroFile(f, off, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// zeroFile punches a hole over n bytes at off of f, or writes zeros there
// where the file system cannot.
func zeroFile(f *os.File, off, n int64) error {
	if n == 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, min(n, 1<<20))
	for done := int64(0); done < n; {
		k, err := f.WriteAt(zeros[:min(int64(len(zeros)), n-done)], off+done)
		if err != nil {
			return err
		}
		done += int64(k)
	}
	return nil
}

// checkZeroes refuses zeroes of n bytes at off that do not fit a disk of size bytes.
func checkZeroes(size, off, n int64) error {
	if off < 0 || n < 0 || off+n > size {
		return fmt.Errorf("zeroes of %d bytes at %d are beyond the %d-byte disk", n, off, size)
	}
	return nil
}

// readDisk reads p at off from f, a disk of size bytes: a read that
// reaches the end returns what it read and io.EOF.
func readDisk(f io.ReaderAt, size int64, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= size {
		return 0, io.EOF
	}
	if rest := size - off; int64(len(p)) > rest {
		n, err := f.ReadAt(p[:rest], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return f.ReadAt(p, off)
}

// checkWrite refuses a write of p at off that does not fit a disk of size bytes.
func checkWrite(size int64, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > size {
		return fmt.Errorf("write of %d bytes at %d is beyond the %d-byte disk", len(p), off, size)
	}
	return nil
}

// runDisk is the disk as one boot sees it: the file is opened on first
// access and kept open for the rest of the boot (an image write is many
// small writes), and detached when power goes away; later access fails as
// it would on a machine that lost power.
type runDisk struct {
	path string
	size int64
	rate int64 // write bytes per second; 0: as fast as the host

	pace     sync.Mutex
	nextFree time.Time // when the throttled disk has written what it was given

	mu       sync.Mutex
	f        *os.File
	detached bool
}

func (d *runDisk) Size() int64 { return d.size }

func (d *runDisk) file() (*os.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached {
		return nil, errors.New("disk detached: the machine powered off or reset")
	}
	if d.f == nil {
		f, err := os.OpenFile(d.path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		d.f = f
	}
	return d.f, nil
}

func (d *runDisk) ReadAt(p []byte, off int64) (int, error) {
	f, err := d.file()
	if err != nil {
		return 0, err
	}
	return readDisk(f, d.size, p, off)
}

func (d *runDisk) WriteAt(p []byte, off int64) (int, error) {
	if err := checkWrite(d.size, p, off); err != nil {
		return 0, err
	}
	f, err := d.file()
	if err != nil {
		return 0, err
	}
	d.throttle(len(p))
	return f.WriteAt(p, off)
}

// WriteZeroesAt makes n bytes at off read as zeros, a hole in the file:
// not throttled, as a device that unmaps.
func (d *runDisk) WriteZeroesAt(off, n int64) error {
	if err := checkZeroes(d.size, off, n); err != nil {
		return err
	}
	f, err := d.file()
	if err != nil {
		return err
	}
	return zeroFile(f, off, n)
}

// throttle holds a write of n bytes until a disk writing rate bytes a
// second would have taken it: writes queue one behind the other, as on a
// device, so concurrent writers share the rate.
func (d *runDisk) throttle(n int) {
	if d.rate <= 0 {
		return
	}
	d.pace.Lock()
	now := time.Now()
	if d.nextFree.Before(now) {
		d.nextFree = now
	}
	d.nextFree = d.nextFree.Add(time.Duration(float64(n) / float64(d.rate) * float64(time.Second)))
	until := d.nextFree
	d.pace.Unlock()
	time.Sleep(time.Until(until))
}

func (d *runDisk) detach() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.detached = true
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
}
