package redfish

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/events"
)

// system is one machine as a ComputerSystem, with its Manager and Chassis.
type system struct {
	srv        *Server
	id         string // the SMBIOS UUID
	hw         bmcemu.Hardware
	m          bmcemu.Machine
	user, pass string
	logOnce    sync.Once
	nodeLog    *slog.Logger // see log
	media      []*media
	mediaMu    sync.Mutex       // serializes inserts and ejects (service and machine)
	bios       *biosState       // bios.go
	secure     *secureBootState // secureboot.go
	clock      clock            // the Manager's DateTime (manager.go)
	sel        *bmcemu.SEL      // the machine's System Event Log
	latency    time.Duration    // System.Latency

	mu sync.Mutex
	// overlay is what Redfish said about the boot override that parameter
	// 5 cannot hold (UefiHttp and its URI, Usb): it applies while the
	// machine's flags are still those Redfish wrote.
	overlay *bootOverlay
	// mode is the last BootSourceOverrideMode set or seen with a valid
	// override: it reads back when no override is valid ("" => the
	// firmware's own mode).
	mode      string
	lastState string // BootProgress.LastState

	fw       firmware      // versions and BMC reboot (update.go)
	conflict powerConflict // layer redfish's power-on-conflict (faults.go)
}

// log is the system's logger, with its name as key "node". Made on first
// use: most systems of a large idle fleet never log.
func (sys *system) log() *slog.Logger {
	sys.logOnce.Do(func() { sys.nodeLog = sys.srv.log.With("node", sys.hw.Name) })
	return sys.nodeLog
}

type bootOverlay struct {
	flags       [5]byte
	target, uri string
}

// The MediaTypes of the two drives, shared by every system (read-only).
var (
	cdTypes       = []string{"CD", "DVD"}
	usbStickTypes = []string{"USBStick"}
)

// media is one virtual media device of a Manager. Its state is the
// service's; a machine that implements bmcemu.MediaMachine is told of
// every insert and eject, so its firmware boots the image.
type media struct {
	id, name string
	types    []string
	dev      bmcemu.MediaDevice

	image          string
	inserted       bool
	writeProtected bool
}

func (sys *system) path() string        { return "/redfish/v1/Systems/" + sys.id }
func (sys *system) managerPath() string { return "/redfish/v1/Managers/" + sys.id }
func (sys *system) chassisPath() string { return "/redfish/v1/Chassis/" + sys.id }

// visibleTo reports whether p's account manages sys.
func (sys *system) visibleTo(p principal) bool { return p.user == sys.user && p.pass == sys.pass }

// Boot override targets and their device selectors in parameter 5 (IPMI
// v2.0 table 28-14, data 2 bits 5:2).
var targetSelector = map[string]byte{
	"None":      0x0,
	"Pxe":       0x1,
	"Hdd":       0x2,
	"Diags":     0x4,
	"Cd":        0x5,
	"BiosSetup": 0x6,
	"Usb":       0xf, // primary removable media
	"UefiHttp":  0x1, // a network boot; the overlay tells it from Pxe
}

var allowedTargets = []string{"None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup", "Diags", "UefiHttp"}

func selectorTarget(sel byte) string {
	switch sel {
	case 0x0:
		return "None"
	case 0x1:
		return "Pxe"
	case 0x2, 0x3, 0xb:
		return "Hdd"
	case 0x4:
		return "Diags"
	case 0x5, 0x8:
		return "Cd"
	case 0x6:
		return "BiosSetup"
	case 0x7, 0xf:
		return "Usb"
	case 0x9:
		return "RemoteDrive"
	}
	return "None"
}

const (
	flagValid      = 0x80
	flagPersistent = 0x40
	flagEFI        = 0x20
)

// bootState is the Boot object read from the machine's flags.
func (sys *system) bootState(ctx context.Context) (boot, error) {
	f, err := sys.m.BootFlags(ctx)
	if err != nil {
		return boot{}, fmt.Errorf("boot flags: %w", err)
	}
	sys.mu.Lock()
	defer sys.mu.Unlock()
	return sys.bootLocked(f), nil
}

func (sys *system) bootLocked(f [5]byte) boot {
	b := boot{AllowedTargets: allowedTargets}
	switch {
	case f[0]&flagValid == 0:
		b.Enabled = "Disabled"
	case f[0]&flagPersistent != 0:
		b.Enabled = "Continuous"
	default:
		b.Enabled = "Once"
	}
	b.Target = selectorTarget(f[1] >> 2 & 0x0f)
	if o := sys.overlay; o != nil && o.flags == f {
		b.Target, b.HTTPBootURI = o.target, o.uri
	}
	switch {
	case f[0]&flagValid != 0 && f[0]&flagEFI != 0:
		sys.mode = "UEFI"
	case f[0]&flagValid != 0:
		sys.mode = "Legacy"
	}
	b.Mode = sys.mode
	if b.Mode == "" {
		b.Mode = "Legacy"
		if sys.hw.UEFI {
			b.Mode = "UEFI"
		}
	}
	return b
}

// patchBoot applies a Boot PATCH: the new override is written to the
// machine as parameter 5, exactly as an IPMI client would write it.
func (sys *system) patchBoot(ctx context.Context, p *bootPatch) error {
	if p.Enabled != nil {
		switch *p.Enabled {
		case "Once", "Continuous", "Disabled":
		default:
			return errBadValue("Boot/BootSourceOverrideEnabled", *p.Enabled)
		}
	}
	if p.Mode != nil && *p.Mode != "UEFI" && *p.Mode != "Legacy" {
		return errBadValue("Boot/BootSourceOverrideMode", *p.Mode)
	}
	if p.Target != nil {
		if _, ok := targetSelector[*p.Target]; !ok {
			return errBadValue("Boot/BootSourceOverrideTarget", *p.Target)
		}
	}
	if p.HTTPBootURI != nil && *p.HTTPBootURI != "" {
		if err := checkHTTPBootURI(*p.HTTPBootURI); err != nil {
			return err
		}
	}
	if p.Target != nil && sys.srv.dropBootOverride(sys, *p.Target) {
		return nil
	}
	f, err := sys.m.BootFlags(ctx)
	if err != nil {
		return fmt.Errorf("boot flags: %w", err)
	}
	sys.mu.Lock()
	cur := sys.bootLocked(f)
	next := cur
	if p.Enabled != nil {
		next.Enabled = *p.Enabled
	}
	if p.Mode != nil {
		next.Mode = *p.Mode
	}
	if p.Target != nil {
		next.Target = *p.Target
		if next.Target != "UefiHttp" {
			next.HTTPBootURI = ""
		}
		// A target set while no override is enabled is an override for
		// the next boot, as BMCs commonly do.
		if p.Enabled == nil && next.Enabled == "Disabled" {
			next.Enabled = "Once"
		}
	}
	if p.HTTPBootURI != nil {
		next.HTTPBootURI = *p.HTTPBootURI
	}
	if next.Target == "UefiHttp" && next.Enabled != "Disabled" && next.Mode != "UEFI" && (p.Target != nil || p.Mode != nil) {
		// Legacy BIOS has no HTTP boot: real BMCs refuse the pair for
		// an override that applies.
		sys.mu.Unlock()
		return errValueConflict("Boot/BootSourceOverrideTarget", "Boot/BootSourceOverrideMode",
			"UefiHttp needs BootSourceOverrideMode UEFI, not "+next.Mode+".")
	}
	var nf [5]byte
	switch next.Enabled {
	case "Once":
		nf[0] = flagValid
	case "Continuous":
		nf[0] = flagValid | flagPersistent
	}
	if next.Mode == "UEFI" {
		nf[0] |= flagEFI
	}
	if next.Target == "RemoteDrive" {
		nf[1] = f[1] // a selector only IPMI sets: kept as it is
	} else {
		nf[1] = targetSelector[next.Target] << 2
	}
	if next.Enabled == "Disabled" && p.Target == nil {
		nf[1] = f[1] // disabling keeps the device for a later Once
	}
	prevOverlay, prevMode := sys.overlay, sys.mode
	sys.overlay = &bootOverlay{flags: nf, target: next.Target, uri: next.HTTPBootURI}
	sys.mode = next.Mode
	sys.mu.Unlock()
	if err := sys.setBootFlags(ctx, nf, next); err != nil {
		sys.mu.Lock()
		sys.overlay, sys.mode = prevOverlay, prevMode
		sys.mu.Unlock()
		return fmt.Errorf("set boot flags: %w", err)
	}
	detail := fmt.Sprintf("target %s, %s, %s (flags % x)", next.Target, next.Enabled, next.Mode, nf[:])
	if next.HTTPBootURI != "" {
		detail += ", uri " + next.HTTPBootURI
	}
	sys.log().Info("boot override set", "event", "boot", "state", detail)
	sys.srv.record(sys, events.BMCRedfishBoot, detail)
	return nil
}

// setBootFlags writes parameter 5 to the machine; a UefiHttp override with
// its URI goes to a machine whose firmware does HTTP boot
// (bmcemu.HTTPBootMachine) together with the flags. Other machines keep
// the URI as Redfish state only and see a network boot.
func (sys *system) setBootFlags(ctx context.Context, nf [5]byte, next boot) error {
	hm, ok := sys.m.(bmcemu.HTTPBootMachine)
	if !ok {
		return sys.m.SetBootFlags(ctx, nf)
	}
	uri := ""
	if next.Target == "UefiHttp" && next.Enabled != "Disabled" {
		uri = next.HTTPBootURI
	}
	return hm.SetHTTPBoot(ctx, nf, uri)
}

// checkHTTPBootURI accepts what UEFI HTTP boot fetches: an absolute http
// or https URL with a host.
func checkHTTPBootURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errBadFormat("Boot/HttpBootUri", s)
	}
	return nil
}

// resetTypes are the ResetType values of #ComputerSystem.Reset.
var resetTypes = []string{"On", "ForceOn", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PushPowerButton", "PowerCycle"}

// reset carries out a ResetType on the machine.
func (sys *system) reset(ctx context.Context, rt string) error {
	on, err := sys.m.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("power state: %w", err)
	}
	var a bmcemu.PowerAction
	switch rt {
	case "On", "ForceOn":
		a = bmcemu.PowerUp
	case "ForceOff":
		a = bmcemu.PowerDown
	case "GracefulShutdown":
		a = bmcemu.SoftShutdown
	case "ForceRestart":
		a = bmcemu.HardReset
		if !on {
			a = bmcemu.PowerUp
		}
	case "PowerCycle":
		a = bmcemu.PowerCycle
		if !on {
			a = bmcemu.PowerUp
		}
	case "Nmi":
		if !on {
			return errConflict("Nmi needs the system powered on.")
		}
		a = bmcemu.DiagnosticInterrupt
	case "PushPowerButton":
		a = bmcemu.PowerUp
		if on {
			a = bmcemu.SoftShutdown
		}
	case "GracefulRestart":
		if !on {
			a = bmcemu.PowerUp
			break
		}
		if err := sys.control(ctx, bmcemu.SoftShutdown); err != nil {
			return fmt.Errorf("graceful restart: %w", err)
		}
		go sys.finishRestart()
		sys.recordReset(rt)
		return nil
	default:
		return errBadValue("ResetType", rt)
	}
	if err := sys.powerOnAllowed(a, rt); err != nil {
		return err
	}
	if err := sys.control(ctx, a); err != nil {
		return fmt.Errorf("reset %s: %w", rt, err)
	}
	sys.afterPowerAction(a)
	sys.recordReset(rt)
	return nil
}

func (sys *system) recordReset(rt string) {
	sys.log().Info("reset", "event", rt)
	sys.srv.record(sys, events.BMCRedfishReset, rt)
}

// finishRestart powers the machine back on once the OS has shut it down
// after a GracefulRestart, or resets it when it has not within
// RestartTimeout.
func (sys *system) finishRestart() {
	ctx, cancel := context.WithTimeout(sys.srv.lifetime(), sys.srv.cfg.RestartTimeout+machineTimeout)
	defer cancel()
	deadline := time.Now().Add(sys.srv.cfg.RestartTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return // the service stopped
		}
		on, err := sys.m.PowerState(ctx)
		if err != nil {
			sys.log().Warn("graceful restart", "err", err)
			return
		}
		if !on {
			if err := sys.control(ctx, bmcemu.PowerUp); err != nil {
				sys.log().Warn("graceful restart: power on", "err", err)
			}
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
	sys.log().Warn("graceful restart: the OS did not power off; resetting", "event", "GracefulRestart")
	if err := sys.control(ctx, bmcemu.HardReset); err != nil {
		sys.log().Warn("graceful restart: reset", "err", err)
	}
}

// machineEvent follows the machine's boots for BootProgress and the
// firmware's settings.
func (sys *system) machineEvent(ev bmcemu.MachineEvent) {
	sys.firmwareEvent(ev)
	sys.mu.Lock()
	defer sys.mu.Unlock()
	switch ev.Kind {
	case bmcemu.EventPowerOff:
		sys.lastState = "None"
	case bmcemu.EventPowerOn, bmcemu.EventReset:
		sys.lastState = "SystemHardwareInitializationComplete"
	case bmcemu.EventBoot:
		sys.lastState = "OSBootStarted"
	}
}

// view renders the ComputerSystem.
func (sys *system) view(ctx context.Context) (computerSystem, error) {
	on, err := sys.m.PowerState(ctx)
	if err != nil {
		return computerSystem{}, fmt.Errorf("power state: %w", err)
	}
	b, err := sys.bootState(ctx)
	if err != nil {
		return computerSystem{}, err
	}
	sys.mu.Lock()
	last := sys.lastState
	sys.mu.Unlock()
	_, bios := sys.fw.versions()
	p := sys.path()
	cs := computerSystem{
		resource:      resource{ODataID: p, ODataType: "#ComputerSystem.v1_13_0.ComputerSystem", ID: sys.id, Name: sys.hw.Name},
		UUID:          sys.id,
		HostName:      sys.hw.Name,
		SystemType:    "Physical",
		Manufacturer:  "metalbed",
		Model:         "metalbed simulated machine",
		SerialNumber:  sys.id,
		BiosVersion:   bios,
		PowerState:    powerState(on),
		Status:        enabledOK,
		Boot:          b,
		BootProgress:  bootProgress{LastState: last},
		ProcSummary:   procSummary{Count: sys.hw.CPUs, Status: enabledOK},
		MemSummary:    memSummary{TotalSystemMemoryGiB: float64(sys.hw.MemoryBytes) / (1 << 30), Status: enabledOK},
		Processors:    odataID{p + "/Processors"},
		EthernetIfs:   odataID{p + "/EthernetInterfaces"},
		SimpleStorage: odataID{p + "/SimpleStorage"},
		Storage:       odataID{p + "/Storage"},
		Bios:          odataID{sys.biosPath()},
		SecureBoot:    odataID{sys.secureBootPath()},
		LogServices:   odataID{p + "/LogServices"},
		Links: systemLinks{
			ManagedBy: []odataID{{sys.managerPath()}},
			Chassis:   []odataID{{sys.chassisPath()}},
		},
		Actions: systemActions{Reset: action{Target: p + "/Actions/ComputerSystem.Reset", Allowed: resetTypes}},
	}
	return cs, nil
}

func powerState(on bool) string {
	if on {
		return "On"
	}
	return "Off"
}

// mediaByID finds a virtual media device.
func (sys *system) mediaByID(id string) *media {
	for _, m := range sys.media {
		if m.id == id {
			return m
		}
	}
	return nil
}

func (sys *system) mediaView(m *media) virtualMedia {
	sys.mu.Lock()
	defer sys.mu.Unlock()
	p := sys.managerPath() + "/VirtualMedia/" + m.id
	v := virtualMedia{
		resource:       resource{ODataID: p, ODataType: "#VirtualMedia.v1_3_0.VirtualMedia", ID: m.id, Name: m.name},
		MediaTypes:     m.types,
		Inserted:       m.inserted,
		WriteProtected: m.writeProtected,
		ConnectedVia:   "NotConnected",
		Actions: mediaActions{
			Insert: action{Target: p + "/Actions/VirtualMedia.InsertMedia"},
			Eject:  action{Target: p + "/Actions/VirtualMedia.EjectMedia"},
		},
	}
	if m.inserted {
		img := m.image
		v.Image = &img
		v.ImageName = imageName(img)
		v.ConnectedVia = "URI"
	}
	return v
}

func imageName(uri string) string {
	for i := len(uri) - 1; i >= 0; i-- {
		if uri[i] == '/' {
			return uri[i+1:]
		}
	}
	return uri
}

// insert inserts image into m, and into the machine's drive when the
// machine has virtual media drives.
func (sys *system) insert(ctx context.Context, m *media, req insertMediaRequest) error {
	if req.Image == nil || *req.Image == "" {
		return errMissing("Image")
	}
	if req.Inserted != nil && !*req.Inserted {
		return errBadValue("Inserted", "false")
	}
	sys.mediaMu.Lock()
	defer sys.mediaMu.Unlock()
	sys.mu.Lock()
	if m.inserted {
		sys.mu.Unlock()
		return errConflict(fmt.Sprintf("%s holds %s already: eject it first.", m.id, m.image))
	}
	sys.mu.Unlock()
	if mm, ok := sys.m.(bmcemu.MediaMachine); ok {
		if err := mm.InsertMedia(ctx, m.dev, *req.Image); err != nil {
			return fmt.Errorf("insert %s into %s: %w", *req.Image, m.id, err)
		}
	}
	sys.mu.Lock()
	m.image, m.inserted, m.writeProtected = *req.Image, true, true
	if req.WriteProtected != nil {
		m.writeProtected = *req.WriteProtected
	}
	sys.mu.Unlock()
	detail := fmt.Sprintf("insert %s %s", m.id, *req.Image)
	sys.log().Info("virtual media inserted", "event", "insert", "image", *req.Image)
	sys.srv.record(sys, events.BMCRedfishMedia, detail)
	return nil
}

// eject empties m (and the machine's drive); ejecting an empty device is
// not an error.
func (sys *system) eject(ctx context.Context, m *media) error {
	sys.mediaMu.Lock()
	defer sys.mediaMu.Unlock()
	if mm, ok := sys.m.(bmcemu.MediaMachine); ok {
		if err := mm.EjectMedia(ctx, m.dev); err != nil {
			return fmt.Errorf("eject %s: %w", m.id, err)
		}
	}
	sys.mu.Lock()
	was := m.image
	m.image, m.inserted, m.writeProtected = "", false, false
	sys.mu.Unlock()
	sys.log().Info("virtual media ejected", "event", "eject", "image", was)
	sys.srv.record(sys, events.BMCRedfishMedia, "eject "+m.id)
	return nil
}
