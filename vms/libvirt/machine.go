//go:build libvirt_dlopen

package libvirt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"github.com/metalbed/metalbed/vms"
)

var _ vms.Machine = (*Machine)(nil)

// Machine is a libvirt domain driven as a server. It is safe for
// concurrent use.
type Machine struct {
	cfg  Config
	conn *golibvirt.Connect
	uuid [16]byte

	powerMu sync.Mutex // serializes power transitions and re-definitions

	mu     sync.Mutex // guards the fields below
	flags  vms.BootFlags
	closed bool
	// cdURL and cdFile are the image in the CD drive (media.go); "" empty.
	cdURL, cdFile string

	subs vms.Subscribers

	stopConsole context.CancelFunc // ends watchConsole
}

// Built reports whether this binary can drive libvirt: nil in a build
// with the libvirt_dlopen tag (libvirt itself may still be missing).
func Built() error { return nil }

// Open connects to libvirt and defines (or adopts) the machine's domain,
// restoring the boot flags an earlier run stored in its metadata.
func Open(cfg Config) (vms.Machine, error) { return New(cfg) }

// New is Open returning the concrete type.
func New(cfg Config) (*Machine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := cfg.ensureDisk(); err != nil {
		return nil, err
	}
	conn, err := golibvirt.NewConnect(cfg.URI)
	if err != nil {
		return nil, fmt.Errorf("libvirt machine %s: connect %s: %w", cfg.Name, cfg.URI, err)
	}
	m := &Machine{cfg: cfg, conn: conn, uuid: cfg.UUID}
	if dom, err := conn.LookupDomainByName(cfg.Name); err == nil {
		if doc, err := dom.GetXMLDesc(golibvirt.DOMAIN_XML_INACTIVE); err == nil {
			if f, ok := bootFlagsFromXML(doc); ok {
				m.flags = f
			}
			m.cdURL, m.cdFile = cdromFromXML(doc)
		}
		if m.uuid == ([16]byte{}) {
			if u, err := dom.GetUUID(); err == nil {
				copy(m.uuid[:], u)
			}
		}
		dom.Free()
	}
	if m.uuid == ([16]byte{}) {
		rand.Read(m.uuid[:])
		m.uuid[6] = m.uuid[6]&0x0f | 0x40
		m.uuid[8] = m.uuid[8]&0x3f | 0x80
	}
	if err := m.define(m.flags); err != nil {
		conn.Close()
		return nil, err
	}
	var cctx context.Context
	cctx, m.stopConsole = context.WithCancel(context.Background())
	go m.watchConsole(cctx)
	return m, nil
}

// BootMode is the firmware's boot mode: bios (SeaBIOS) or uefi (OVMF).
func (m *Machine) BootMode() vms.BootMode { return m.cfg.BootMode }

// ConsoleLog is the serial console's log file.
func (m *Machine) ConsoleLog() string { return m.cfg.SerialLog }

// spec is the domain definition for the given boot flags.
func (m *Machine) spec(f vms.BootFlags) DomainSpec {
	return DomainSpec{
		Name: m.cfg.Name, UUID: m.uuid, Type: m.cfg.DomainType, MemoryMiB: m.cfg.MemoryMiB,
		Mode: m.cfg.BootMode, Boot: BootOrder(f), Disk: m.cfg.Disk, DiskType: m.cfg.diskType(),
		MAC: m.cfg.MAC, Bridge: m.cfg.Bridge, SerialLog: m.cfg.SerialLog, Flags: f,
		CDROM: m.cdFile, CDROMURL: m.cdURL,
	}
}

// define (re-)defines the domain's persistent configuration; a running
// domain takes it at its next start.
func (m *Machine) define(f vms.BootFlags) error {
	doc, err := m.spec(f).XML()
	if err != nil {
		return err
	}
	dom, err := m.conn.DomainDefineXML(doc)
	if err != nil {
		return fmt.Errorf("libvirt machine %s: define: %w", m.cfg.Name, err)
	}
	dom.Free()
	return nil
}

func (m *Machine) domain() (*golibvirt.Domain, error) {
	dom, err := m.conn.LookupDomainByName(m.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("libvirt machine %s: look up domain: %w", m.cfg.Name, err)
	}
	return dom, nil
}

// Name implements vms.Machine.
func (m *Machine) Name() string { return m.cfg.Name }

// UUID implements vms.Machine.
func (m *Machine) UUID() [16]byte { return m.uuid }

// NICs implements vms.Machine.
func (m *Machine) NICs() []vms.NIC { return []vms.NIC{{MAC: m.cfg.MAC}} }

// Disk implements vms.Machine.
func (m *Machine) Disk() vms.Disk { return vms.Disk{Path: m.cfg.Disk, SizeBytes: m.cfg.DiskBytes} }

// PowerState implements vms.Machine: on while QEMU runs (also paused or
// shutting down).
func (m *Machine) PowerState(ctx context.Context) (vms.PowerState, error) {
	if err := m.checkOpen(); err != nil {
		return "", err
	}
	on, err := m.running()
	if err != nil {
		return "", err
	}
	if on {
		return vms.PowerOn, nil
	}
	return vms.PowerOff, nil
}

func (m *Machine) running() (bool, error) {
	dom, err := m.domain()
	if err != nil {
		return false, err
	}
	defer dom.Free()
	st, _, err := dom.GetState()
	if err != nil {
		return false, fmt.Errorf("libvirt machine %s: state: %w", m.cfg.Name, err)
	}
	switch st {
	case golibvirt.DOMAIN_RUNNING, golibvirt.DOMAIN_BLOCKED, golibvirt.DOMAIN_PAUSED,
		golibvirt.DOMAIN_SHUTDOWN, golibvirt.DOMAIN_PMSUSPENDED:
		return true, nil
	}
	return false, nil
}

// BootFlags implements vms.Machine: parameter 5 exactly as stored.
func (m *Machine) BootFlags(ctx context.Context) (vms.BootFlags, error) {
	if err := m.checkOpen(); err != nil {
		return vms.BootFlags{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flags, nil
}

// SetBootFlags implements vms.Machine: the flags are stored in the
// domain's metadata and take effect at the next start.
func (m *Machine) SetBootFlags(ctx context.Context, f vms.BootFlags) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	if err := m.define(f); err != nil {
		return fmt.Errorf("libvirt machine %s: set boot flags: %w", m.cfg.Name, err)
	}
	m.mu.Lock()
	m.flags = f
	m.mu.Unlock()
	m.cfg.Logger.Info("boot flags set", "node", m.cfg.Name, "flags", fmt.Sprintf("% x", f[:]),
		"device", f.Device().String(), "persistent", f.Persistent(), "efi", f.EFI())
	return nil
}

// Power implements vms.Machine. Reset and cycle are a destroy and a start,
// so the firmware reads the boot order the flags ask for, as it would on
// hardware; soft is an ACPI power-button press; diag an NMI.
func (m *Machine) Power(ctx context.Context, a vms.PowerAction) error {
	if err := m.checkOpen(); err != nil {
		return err
	}
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	on, err := m.running()
	if err != nil {
		return err
	}
	switch a {
	case vms.ActionOn:
		if on {
			return nil
		}
		return m.start()
	case vms.ActionOff:
		if !on {
			return nil
		}
		return m.destroy()
	case vms.ActionCycle, vms.ActionReset:
		if !on {
			return fmt.Errorf("machine %s: %s: %w", m.cfg.Name, a, vms.ErrPoweredOff)
		}
		if err := m.destroy(); err != nil {
			return err
		}
		if a == vms.ActionReset {
			m.emit(vms.EventReset, "")
		}
		return m.start()
	case vms.ActionSoft:
		if !on {
			return nil
		}
		dom, err := m.domain()
		if err != nil {
			return err
		}
		defer dom.Free()
		if err := dom.Shutdown(); err != nil {
			return fmt.Errorf("machine %s: ACPI shutdown: %w", m.cfg.Name, err)
		}
		return nil
	case vms.ActionDiag:
		if !on {
			return fmt.Errorf("machine %s: %s: %w", m.cfg.Name, a, vms.ErrPoweredOff)
		}
		dom, err := m.domain()
		if err != nil {
			return err
		}
		defer dom.Free()
		if err := dom.InjectNMI(0); err != nil {
			return fmt.Errorf("machine %s: NMI: %w", m.cfg.Name, err)
		}
		return nil
	}
	return fmt.Errorf("machine %s: unknown power action %q", m.cfg.Name, a)
}

// start defines the domain with the boot order the flags ask for and
// starts it; a one-time override is consumed. powerMu is held.
func (m *Machine) start() error {
	m.mu.Lock()
	f := m.flags
	m.mu.Unlock()
	if err := m.define(f); err != nil {
		return err
	}
	dom, err := m.domain()
	if err != nil {
		return err
	}
	defer dom.Free()
	if err := dom.Create(); err != nil {
		return fmt.Errorf("machine %s: start: %w", m.cfg.Name, err)
	}
	first := bootDevice(BootOrder(f)[0])
	m.cfg.Logger.Info("power on", "node", m.cfg.Name, "boot", first)
	m.emit(vms.EventPowerOn, "")
	// The device the firmware tries first; what it finally boots only the
	// console tells.
	m.emit(vms.EventBoot, first)
	if f.Valid() && !f.Persistent() {
		// Consumed by this boot: firmware would clear it now.
		if err := m.define(vms.BootFlags{}); err != nil {
			return err
		}
		m.mu.Lock()
		m.flags = vms.BootFlags{}
		m.mu.Unlock()
	}
	return nil
}

// bootDevice names a libvirt boot device as vms (and the sim machine's
// boot events) name it.
func bootDevice(dev string) string {
	switch dev {
	case "network":
		return vms.BootPXE.String()
	case "hd":
		return vms.BootDisk.String()
	case "cdrom":
		return vms.BootCDROM.String()
	}
	return dev
}

// destroy is a hard power-off. powerMu is held.
func (m *Machine) destroy() error {
	dom, err := m.domain()
	if err != nil {
		return err
	}
	defer dom.Free()
	if err := dom.Destroy(); err != nil {
		var le golibvirt.Error
		if !errors.As(err, &le) || le.Code != golibvirt.ERR_OPERATION_INVALID { // already off
			return fmt.Errorf("machine %s: power off: %w", m.cfg.Name, err)
		}
	}
	m.cfg.Logger.Info("power off", "node", m.cfg.Name)
	m.emit(vms.EventPowerOff, "")
	return nil
}

// AttachConsole implements vms.Machine with libvirt's console stream (the
// serial port): reads are console output from now on, writes keystrokes.
// The stream ends when the domain stops.
func (m *Machine) AttachConsole(ctx context.Context) (io.ReadWriteCloser, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	dom, err := m.domain()
	if err != nil {
		return nil, err
	}
	defer dom.Free()
	st, err := m.conn.NewStream(0)
	if err != nil {
		return nil, fmt.Errorf("machine %s: console stream: %w", m.cfg.Name, err)
	}
	if err := dom.OpenConsole("", st, golibvirt.DOMAIN_CONSOLE_FORCE); err != nil {
		st.Free()
		return nil, fmt.Errorf("machine %s: open console: %w", m.cfg.Name, err)
	}
	c := &console{st: st, done: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-c.done:
		}
	}()
	return c, nil
}

type console struct {
	st   *golibvirt.Stream
	once sync.Once
	done chan struct{}
}

func (c *console) Read(p []byte) (int, error) {
	n, err := c.st.Recv(p)
	if err != nil {
		return 0, err
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *console) Write(p []byte) (int, error) { return c.st.Send(p) }

func (c *console) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.st.Abort()
		c.st.Free()
	})
	return nil
}

// Subscribe implements vms.Machine: power transitions and boots this
// Machine carried out.
func (m *Machine) Subscribe(fn func(vms.Event)) (cancel func()) {
	return m.subs.Subscribe(fn)
}

func (m *Machine) emit(k vms.EventKind, detail string) {
	m.subs.Emit(vms.Event{Time: time.Now(), Machine: m.cfg.Name, Kind: k, Detail: detail})
}

func (m *Machine) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("libvirt machine %s: closed", m.cfg.Name)
	}
	return nil
}

// Close powers the domain off (a bed that ends leaves no VM running) and
// closes the connection; the domain stays defined with its boot flags.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.stopConsole()
	m.powerMu.Lock()
	defer m.powerMu.Unlock()
	var errs []error
	if on, err := m.running(); err == nil && on {
		errs = append(errs, m.destroy())
	}
	if _, err := m.conn.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove closes the machine and undefines its domain with its NVRAM; the
// disk file stays.
func (m *Machine) Remove() error {
	cerr := m.Close()
	conn, err := golibvirt.NewConnect(m.cfg.URI)
	if err != nil {
		return errors.Join(cerr, err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(m.cfg.Name)
	if err != nil {
		return cerr
	}
	defer dom.Free()
	if err := dom.UndefineFlags(golibvirt.DOMAIN_UNDEFINE_NVRAM); err != nil {
		return errors.Join(cerr, fmt.Errorf("libvirt machine %s: undefine: %w", m.cfg.Name, err))
	}
	return cerr
}
