package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms"
)

// watcher records a machine's events for a test.
type watcher struct {
	mu  sync.Mutex
	evs []vms.Event
	ch  chan struct{}
}

func watch(t *testing.T, m *Machine) *watcher {
	t.Helper()
	e := &watcher{ch: make(chan struct{}, 1)}
	cancel := m.Subscribe(func(ev vms.Event) {
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
		select {
		case e.ch <- struct{}{}:
		default:
		}
	})
	t.Cleanup(cancel)
	return e
}

// waitFor waits until an event of kind has been seen n times.
func (e *watcher) waitFor(t *testing.T, kind vms.EventKind, n int) vms.Event {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		var seen []vms.Event
		for _, ev := range e.evs {
			if ev.Kind == kind {
				seen = append(seen, ev)
			}
		}
		all := append([]vms.Event(nil), e.evs...)
		e.mu.Unlock()
		if len(seen) >= n {
			return seen[n-1]
		}
		select {
		case <-e.ch:
		case <-deadline.C:
			t.Fatalf("no %d× %s event within 5s; saw %v", n, kind, all)
		}
	}
}

func open(t *testing.T, cfg Config) *Machine {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "node-0"
	}
	if cfg.DiskBytes == 0 {
		cfg.DiskBytes = 1 << 20
	}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mustPower(t *testing.T, m *Machine, a vms.PowerAction) {
	t.Helper()
	if err := m.Power(t.Context(), a); err != nil {
		t.Fatalf("power %s: %v", a, err)
	}
}

func flagsOf(t *testing.T, m *Machine) vms.BootFlags {
	t.Helper()
	f, err := m.BootFlags(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBootFlagConsumption(t *testing.T) {
	tests := []struct {
		name     string
		set      vms.BootFlags
		mode     vms.BootMode
		after    vms.BootFlags // flags once one boot happened
		device   vms.BootDevice
		override bool
		bootMode vms.BootMode
	}{
		{"one-time pxe legacy", vms.BootFlags{0x80, 0x04, 0, 0, 0}, vms.UEFI, vms.BootFlags{}, vms.BootPXE, true, vms.BIOS},
		{"one-time pxe efi (Ironic raw 0xa0)", vms.BootFlags{0xa0, 0x04, 0, 0, 0}, vms.BIOS, vms.BootFlags{}, vms.BootPXE, true, vms.UEFI},
		{"persistent disk efi (Ironic raw 0xe0)", vms.BootFlags{0xe0, 0x08, 0, 0, 0}, vms.BIOS, vms.BootFlags{0xe0, 0x08, 0, 0, 0}, vms.BootDisk, true, vms.UEFI},
		{"persistent pxe legacy", vms.BootFlags{0xc0, 0x04, 0, 0, 0}, vms.UEFI, vms.BootFlags{0xc0, 0x04, 0, 0, 0}, vms.BootPXE, true, vms.BIOS},
		{"invalid flags are no override", vms.BootFlags{0x40, 0x04, 0x01, 0x02, 0x03}, vms.UEFI, vms.BootFlags{0x40, 0x04, 0x01, 0x02, 0x03}, vms.BootNone, false, vms.UEFI},
		{"no override", vms.BootFlags{}, vms.BIOS, vms.BootFlags{}, vms.BootNone, false, vms.BIOS},
		{"other bytes kept byte for byte while persistent", vms.BootFlags{0xc0, 0x14, 0x81, 0x02, 0x1f}, vms.BIOS, vms.BootFlags{0xc0, 0x14, 0x81, 0x02, 0x1f}, vms.BootCDROM, true, vms.BIOS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := &recordingFirmware{}
			m := open(t, Config{StateDir: t.TempDir(), BootMode: tt.mode, Firmware: fw})
			if err := m.SetBootFlags(t.Context(), tt.set); err != nil {
				t.Fatal(err)
			}
			if got := flagsOf(t, m); got != tt.set {
				t.Fatalf("stored % x, set % x", got, tt.set)
			}
			mustPower(t, m, vms.ActionOn)
			if got := flagsOf(t, m); got != tt.after {
				t.Errorf("after one power-on: % x, want % x", got, tt.after)
			}
			b := fw.wait(t, 1)
			if b.Device != tt.device || b.Override != tt.override || b.Mode != tt.bootMode {
				t.Errorf("boot: device %s override %v mode %s; want %s %v %s", b.Device, b.Override, b.Mode, tt.device, tt.override, tt.bootMode)
			}
			// A second boot: a persistent override applies again, a consumed
			// one-time override does not.
			mustPower(t, m, vms.ActionReset)
			b2 := fw.wait(t, 2)
			wantDev := tt.device
			if !tt.set.Persistent() || !tt.set.Valid() {
				wantDev = vms.BootNone
			}
			if b2.Device != wantDev {
				t.Errorf("second boot device %s, want %s", b2.Device, wantDev)
			}
			if got := flagsOf(t, m); got != tt.after {
				t.Errorf("after reset: % x, want % x", got, tt.after)
			}
		})
	}
}

// recordingFirmware records each boot and runs until power goes away.
type recordingFirmware struct {
	mu    sync.Mutex
	boots []BootContext
	ch    chan struct{}
	once  sync.Once
}

func (f *recordingFirmware) init() { f.once.Do(func() { f.ch = make(chan struct{}, 16) }) }

func (f *recordingFirmware) Boot(ctx context.Context, b *BootContext) error {
	f.init()
	f.mu.Lock()
	f.boots = append(f.boots, *b)
	f.mu.Unlock()
	f.ch <- struct{}{}
	<-ctx.Done()
	return nil
}

func (f *recordingFirmware) wait(t *testing.T, n int) BootContext {
	t.Helper()
	f.init()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		if len(f.boots) >= n {
			b := f.boots[n-1]
			f.mu.Unlock()
			return b
		}
		f.mu.Unlock()
		select {
		case <-f.ch:
		case <-deadline:
			t.Fatalf("boot %d did not happen within 5s", n)
		}
	}
}

func TestPowerActions(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir(), SoftOffDelay: time.Millisecond})
	ev := watch(t, m)
	ctx := t.Context()
	if err := m.Power(ctx, vms.ActionReset); !errors.Is(err, vms.ErrPoweredOff) {
		t.Errorf("reset while off: %v, want ErrPoweredOff", err)
	}
	if err := m.Power(ctx, vms.ActionCycle); !errors.Is(err, vms.ErrPoweredOff) {
		t.Errorf("cycle while off: %v, want ErrPoweredOff", err)
	}
	if err := m.Power(ctx, "explode"); err == nil {
		t.Error("unknown action accepted")
	}
	mustPower(t, m, vms.ActionOn)
	ev.waitFor(t, vms.EventPowerOn, 1)
	ev.waitFor(t, vms.EventBootFail, 1)
	mustPower(t, m, vms.ActionDiag)
	ev.waitFor(t, vms.EventConsole, 1)
	mustPower(t, m, vms.ActionCycle)
	ev.waitFor(t, vms.EventPowerOff, 1)
	ev.waitFor(t, vms.EventPowerOn, 2)
	mustPower(t, m, vms.ActionReset)
	ev.waitFor(t, vms.EventReset, 1)
	mustPower(t, m, vms.ActionSoft)
	ev.waitFor(t, vms.EventPowerOff, 2)
	if ps, _ := m.PowerState(ctx); ps != vms.PowerOff {
		t.Errorf("after soft off: %s", ps)
	}
	log, err := os.ReadFile(m.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"metalbed SimBIOS", "NMI received", "ACPI: power button pressed", "No bootable device."} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("console log lacks %q:\n%s", want, log)
		}
	}
}

func TestPowerDelay(t *testing.T) {
	// A transition that takes an hour has not happened when Power returns,
	// and Close does not wait for it.
	slow := open(t, Config{StateDir: t.TempDir(), PowerDelay: time.Hour})
	mustPower(t, slow, vms.ActionOn)
	if ps, _ := slow.PowerState(t.Context()); ps != vms.PowerOff {
		t.Errorf("an hour-long power-on already done: %s", ps)
	}
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}

	m := open(t, Config{StateDir: t.TempDir(), PowerDelay: 50 * time.Millisecond})
	ev := watch(t, m)
	mustPower(t, m, vms.ActionOn)
	ev.waitFor(t, vms.EventPowerOn, 1)
	if ps, _ := m.PowerState(t.Context()); ps != vms.PowerOn {
		t.Errorf("after the power-on event: %s", ps)
	}
}

func TestSoftOffIsCanceledByHardCycle(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir(), SoftOffDelay: 30 * time.Millisecond})
	ev := watch(t, m)
	mustPower(t, m, vms.ActionOn)
	mustPower(t, m, vms.ActionSoft)
	mustPower(t, m, vms.ActionOff) // hard off before the OS finished
	mustPower(t, m, vms.ActionOn)
	// Wait past the soft-off delay by waiting for a later event: a second
	// soft request on the new boot.
	mustPower(t, m, vms.ActionSoft)
	ev.waitFor(t, vms.EventPowerOff, 2)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var kinds []string
	for _, e := range ev.evs {
		if e.Kind == vms.EventPowerOn || e.Kind == vms.EventPowerOff {
			kinds = append(kinds, string(e.Kind))
		}
	}
	if got := strings.Join(kinds, ","); got != "power-on,power-off,power-on,power-off" {
		t.Errorf("power events %s", got)
	}
}

func TestStockFirmwareDisk(t *testing.T) {
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xaa
	tests := []struct {
		name    string
		mode    vms.BootMode
		content map[int64][]byte
		wantErr string
	}{
		{"blank disk bios", vms.BIOS, nil, "no boot signature"},
		{"blank disk uefi", vms.UEFI, nil, "no GPT"},
		{"mbr bios", vms.BIOS, map[int64][]byte{0: mbr}, "no local-boot loader"},
		{"mbr only, uefi", vms.UEFI, map[int64][]byte{0: mbr}, "no GPT"},
		{"gpt with esp", vms.UEFI, gptDisk(true), "no local-boot loader"},
		{"gpt without esp", vms.UEFI, gptDisk(false), "no EFI System Partition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := open(t, Config{StateDir: t.TempDir(), BootMode: tt.mode})
			ev := watch(t, m)
			d := m.disk
			for off, b := range tt.content {
				if _, err := d.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.SetBootFlags(t.Context(), vms.NewBootFlags(vms.BootDisk, false, tt.mode == vms.UEFI)); err != nil {
				t.Fatal(err)
			}
			mustPower(t, m, vms.ActionOn)
			e := ev.waitFor(t, vms.EventBootFail, 1)
			if !strings.Contains(e.Detail, tt.wantErr) {
				t.Errorf("boot-failed %q, want it to say %q", e.Detail, tt.wantErr)
			}
		})
	}
}

func TestStockFirmwarePXEAndBootOrder(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir()})
	ev := watch(t, m)
	mustPower(t, m, vms.ActionOn) // no override: disk, then network
	e := ev.waitFor(t, vms.EventBootFail, 1)
	for _, want := range []string{"no boot signature", "no network boot program"} {
		if !strings.Contains(e.Detail, want) {
			t.Errorf("boot-failed %q lacks %q", e.Detail, want)
		}
	}
	mustPower(t, m, vms.ActionOff)
	if err := m.SetBootFlags(t.Context(), vms.NewBootFlags(vms.BootPXE, false, false)); err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	e = ev.waitFor(t, vms.EventBootFail, 2)
	if !strings.Contains(e.Detail, "no network boot program") || strings.Contains(e.Detail, "signature") {
		t.Errorf("pxe boot-failed %q", e.Detail)
	}
}

// gptDisk is a minimal GPT: header at LBA 1, one entry at LBA 2.
func gptDisk(esp bool) map[int64][]byte {
	hdr := make([]byte, 512)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint64(hdr[72:], 2)
	binary.LittleEndian.PutUint32(hdr[80:], 4)
	binary.LittleEndian.PutUint32(hdr[84:], 128)
	entries := make([]byte, 512)
	if esp {
		copy(entries[128:], espType)
	} else {
		copy(entries[128:], "0FC63DAF84834772") // some other type
	}
	return map[int64][]byte{512: hdr, 1024: entries}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Name: "node-7", StateDir: dir, DiskBytes: 4 << 20, NICs: 2, BootMode: vms.UEFI}
	m, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	macs := m.NICs()
	uuid := m.UUID()
	if err := m.Power(ctx, vms.ActionOn); err != nil {
		t.Fatal(err)
	}
	flags := vms.BootFlags{0xe0, 0x08, 0x00, 0x00, 0x00}
	if err := m.SetBootFlags(ctx, flags); err != nil {
		t.Fatal(err)
	}
	payload := []byte("bytes an image writer put on the disk")
	if _, err := m.disk.WriteAt(payload, 3<<20); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Zero config: everything comes from the saved state.
	m2, err := Open(Config{Name: "node-7", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if ps, _ := m2.PowerState(ctx); ps != vms.PowerOn {
		t.Errorf("power after restart %s", ps)
	}
	if got := flagsOf(t, m2); got != flags {
		t.Errorf("flags after restart % x, want % x", got, flags)
	}
	if got := m2.NICs(); fmt.Sprint(got) != fmt.Sprint(macs) {
		t.Errorf("NICs after restart %v, want %v", got, macs)
	}
	if m2.UUID() != uuid || m2.BootMode() != vms.UEFI || m2.Disk().SizeBytes != 4<<20 {
		t.Errorf("after restart: uuid %x mode %s disk %d", m2.UUID(), m2.BootMode(), m2.Disk().SizeBytes)
	}
	got := make([]byte, len(payload))
	if _, err := m2.disk.ReadAt(got, 3<<20); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("disk after restart: %q, %v", got, err)
	}
	// The same machine name in another state dir gets the same MACs.
	m3 := open(t, Config{Name: "node-7", StateDir: t.TempDir(), NICs: 2})
	if fmt.Sprint(m3.NICs()) != fmt.Sprint(macs) {
		t.Errorf("MACs not derived from the name: %v vs %v", m3.NICs(), macs)
	}
	if !strings.HasPrefix(macs[0].MAC.String(), "52:54:00:") || macs[0].MAC.String() == macs[1].MAC.String() {
		t.Errorf("MACs %v", macs)
	}
}

func TestRestartOneTimeFlagSetWhileOnIsKept(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(Config{Name: "n", StateDir: dir, DiskBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	once := vms.NewBootFlags(vms.BootPXE, false, false)
	if err := m.SetBootFlags(t.Context(), once); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m2 := open(t, Config{Name: "n", StateDir: dir, DiskBytes: 1 << 20})
	if got := flagsOf(t, m2); got != once {
		t.Errorf("a restart consumed the one-time flag: % x", got)
	}
	mustPower(t, m2, vms.ActionReset)
	if got := flagsOf(t, m2); got != (vms.BootFlags{}) {
		t.Errorf("after the reset the flag should be consumed: % x", got)
	}
}

func TestCorruptStateIsRefused(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(Config{Name: "n", StateDir: dir, DiskBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.disk.WriteAt([]byte("precious"), 0); err != nil {
		t.Fatal(err)
	}
	m.Close()
	statePath := filepath.Join(dir, "n", "state.json")
	diskPath := filepath.Join(dir, "n", "disk.img")
	for _, bad := range []string{`{"version":1,`, `garbage`, `{"version":1,"surprise":true}`,
		`{"version":1,"name":"n","uuid":"x","macs":[],"disk_size_bytes":1048576,"boot_mode":"bios","power":"off","boot_flags":"0000000000"}`,
		`{"version":1,"name":"n","uuid":"4f1e5c2a-0000-5000-8000-000000000000","macs":[],"disk_size_bytes":1048576,"boot_mode":"bios","power":"off","boot_flags":"00"}`} {
		if err := os.WriteFile(statePath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Name: "n", StateDir: dir})
		if err == nil || !strings.Contains(err.Error(), statePath) {
			t.Errorf("state %q: error %v does not name %s", bad, err, statePath)
		}
	}
	b, err := os.ReadFile(diskPath)
	if err != nil || !bytes.HasPrefix(b, []byte("precious")) || len(b) != 1<<20 {
		t.Errorf("disk touched by a corrupt state: %d bytes, %v", len(b), err)
	}
}

func TestMissingDiskIsRefused(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(Config{Name: "n", StateDir: dir, DiskBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := os.Remove(m.Disk().Path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Name: "n", StateDir: dir}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("open without its disk: %v", err)
	}
	if _, err := os.Stat(m.Disk().Path); err == nil {
		t.Error("a blank disk was created")
	}
}

func TestDiskNeverShrinks(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(Config{Name: "n", StateDir: dir, DiskBytes: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := Open(Config{Name: "n", StateDir: dir, DiskBytes: 1 << 20}); err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Errorf("shrinking open: %v", err)
	}
	m2 := open(t, Config{Name: "n", StateDir: dir, DiskBytes: 3 << 20})
	fi, err := os.Stat(m2.Disk().Path)
	if err != nil || fi.Size() != 3<<20 {
		t.Errorf("grown disk: %v %v", fi, err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{Name: "", StateDir: dir},
		{Name: "../x", StateDir: dir},
		{Name: "n", StateDir: ""},
		{Name: "n", StateDir: dir, BootMode: "coreboot"},
		{Name: "n", StateDir: dir, DiskBytes: 1000},
		{Name: "n", StateDir: dir, NICs: 99},
	} {
		if m, err := Open(cfg); err == nil {
			m.Close()
			t.Errorf("Open(%+v) accepted", cfg)
		}
	}
}

func TestConsoleFanOut(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir()})
	ctx := t.Context()
	a, err := m.AttachConsole(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bctx, bcancel := context.WithCancel(ctx)
	b, err := m.AttachConsole(bctx)
	if err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	for _, c := range []io.Reader{a, b} {
		readUntil(t, c, "No bootable device.")
	}
	// Keystrokes from one client are echoed to both and reach the machine.
	if _, err := a.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, b, "hello\r\n")
	readUntil(t, a, "hello\r\n")
	select {
	case in := <-m.console.input:
		if string(in) != "hello\r" {
			t.Errorf("machine got %q", in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keystrokes did not reach the machine")
	}
	// Detaching via the context ends reads with EOF.
	bcancel()
	if _, err := io.ReadAll(b); err != nil {
		t.Errorf("read after detach: %v", err)
	}
	log, _ := os.ReadFile(m.ConsoleLog())
	if !bytes.Contains(log, []byte("hello\r\n")) || !bytes.Contains(log, []byte("metalbed SimBIOS")) {
		t.Errorf("console log:\n%s", log)
	}
}

func readUntil(t *testing.T, r io.Reader, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var buf []byte
		p := make([]byte, 256)
		for !bytes.Contains(buf, []byte(want)) {
			n, err := r.Read(p)
			buf = append(buf, p[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(buf)
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("console ended without %q: %q", want, s)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("console did not show %q within 5s", want)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir(), SoftOffDelay: time.Millisecond})
	ctx := t.Context()
	var wg sync.WaitGroup
	actions := []vms.PowerAction{vms.ActionOn, vms.ActionOff, vms.ActionCycle, vms.ActionReset, vms.ActionSoft, vms.ActionDiag}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.AttachConsole(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			go io.Copy(io.Discard, c)
			cancel := m.Subscribe(func(vms.Event) {})
			defer cancel()
			for i := range 40 {
				err := m.Power(ctx, actions[(w+i)%len(actions)])
				if err != nil && !errors.Is(err, vms.ErrPoweredOff) {
					t.Error(err)
				}
				if err := m.SetBootFlags(ctx, vms.NewBootFlags(vms.BootPXE, i%2 == 0, w%2 == 0)); err != nil {
					t.Error(err)
				}
				m.BootFlags(ctx)
				m.PowerState(ctx)
				c.Write([]byte{'x'})
			}
		}()
	}
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PowerState(ctx); err == nil {
		t.Error("closed machine still answers")
	}
}

// diskFirmware writes to the disk during a boot and keeps the Disk around
// after the boot ended.
type diskFirmware struct {
	mu   sync.Mutex
	disk Disk
	ch   chan error
}

func (f *diskFirmware) Boot(ctx context.Context, b *BootContext) error {
	f.mu.Lock()
	f.disk = b.Disk
	f.mu.Unlock()
	_, err := b.Disk.WriteAt([]byte("written during the boot"), 4096)
	if err == nil {
		buf := make([]byte, 8)
		_, err = b.Disk.ReadAt(buf, b.Disk.Size()-4) // short read at the end
		if err != io.EOF {
			err = fmt.Errorf("read past the end: %v, want io.EOF", err)
		} else {
			err = nil
		}
	}
	f.ch <- err
	<-ctx.Done()
	return nil
}

func TestBootDiskDetachesAtPowerOff(t *testing.T) {
	fw := &diskFirmware{ch: make(chan error, 1)}
	m := open(t, Config{StateDir: t.TempDir(), Firmware: fw})
	mustPower(t, m, vms.ActionOn)
	select {
	case err := <-fw.ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("firmware did not run")
	}
	mustPower(t, m, vms.ActionOff)
	fw.mu.Lock()
	d := fw.disk
	fw.mu.Unlock()
	if _, err := d.WriteAt([]byte("x"), 0); err == nil {
		t.Error("a powered-off machine's boot disk still takes writes")
	}
	got := make([]byte, 23)
	if _, err := m.disk.ReadAt(got, 4096); err != nil || string(got) != "written during the boot" {
		t.Errorf("disk after power off: %q %v", got, err)
	}
}

// rebootingFirmware reboots the machine once from the running program (as
// the deploy ramdisk does), then powers it off on the next boot.
type rebootingFirmware struct {
	mu    sync.Mutex
	boots int
}

func (f *rebootingFirmware) Boot(ctx context.Context, b *BootContext) error {
	f.mu.Lock()
	f.boots++
	n := f.boots
	f.mu.Unlock()
	switch n {
	case 1:
		b.Reset()
		b.Reset() // a second call of the same boot is a no-op once reset
	case 2:
		b.PowerOff()
	}
	<-ctx.Done()
	return nil
}

func TestFirmwareResetsAndPowersOff(t *testing.T) {
	fw := &rebootingFirmware{}
	m := open(t, Config{StateDir: t.TempDir(), Firmware: fw})
	ev := watch(t, m)
	once := vms.NewBootFlags(vms.BootPXE, false, false)
	if err := m.SetBootFlags(t.Context(), once); err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionOn)
	ev.waitFor(t, vms.EventReset, 1)
	ev.waitFor(t, vms.EventPowerOff, 1)
	if ps, _ := m.PowerState(t.Context()); ps != vms.PowerOff {
		t.Errorf("power %s", ps)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.boots != 2 {
		t.Errorf("%d boots, want 2 (power-on, one reset)", fw.boots)
	}
}

// TestHTTPBootURI: an HTTP boot URI holds while the flags it was set with
// do, survives a restart, is consumed with a one-time override, and goes
// when SetBootFlags writes the flags again.
func TestHTTPBootURI(t *testing.T) {
	const uri = "http://127.0.0.1:8080/ipxe.efi"
	dir := t.TempDir()
	fw := &recordingFirmware{}
	m := open(t, Config{StateDir: dir, BootMode: vms.UEFI, Firmware: fw})
	once := vms.NewBootFlags(vms.BootPXE, false, true)
	if err := m.SetHTTPBoot(t.Context(), once, uri); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = open(t, Config{StateDir: dir, BootMode: vms.UEFI, Firmware: fw})
	mustPower(t, m, vms.ActionOn)
	if b := fw.wait(t, 1); b.HTTPBootURI != uri || b.Device != vms.BootPXE || b.Mode != vms.UEFI {
		t.Errorf("boot after a restart: device %s mode %s HTTP %q", b.Device, b.Mode, b.HTTPBootURI)
	}
	mustPower(t, m, vms.ActionReset)
	if b := fw.wait(t, 2); b.HTTPBootURI != "" || b.Override {
		t.Errorf("second boot: HTTP %q override %v: the one-time override applied twice", b.HTTPBootURI, b.Override)
	}
	persistent := vms.NewBootFlags(vms.BootPXE, true, true)
	if err := m.SetHTTPBoot(t.Context(), persistent, uri); err != nil {
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionReset)
	if b := fw.wait(t, 3); b.HTTPBootURI != uri {
		t.Errorf("persistent: HTTP %q", b.HTTPBootURI)
	}
	if err := m.SetBootFlags(t.Context(), persistent); err != nil { // as IPMI writes them
		t.Fatal(err)
	}
	mustPower(t, m, vms.ActionReset)
	if b := fw.wait(t, 4); b.HTTPBootURI != "" || b.Device != vms.BootPXE {
		t.Errorf("after SetBootFlags: device %s HTTP %q, want a PXE boot", b.Device, b.HTTPBootURI)
	}
}

// TestStockFirmwareHTTPBoot: HTTP boot is UEFI's; under legacy BIOS flags,
// or without an HTTP boot in the build, the boot fails saying so.
func TestStockFirmwareHTTPBoot(t *testing.T) {
	m := open(t, Config{StateDir: t.TempDir(), Firmware: StockFirmware{}})
	ev := watch(t, m)
	for i, c := range []struct {
		efi  bool
		want string
	}{{false, "not available in legacy BIOS mode"}, {true, "no HTTP boot is available in this build"}} {
		mustPower(t, m, vms.ActionOff)
		if err := m.SetHTTPBoot(t.Context(), vms.NewBootFlags(vms.BootPXE, false, c.efi), "http://127.0.0.1/x.iso"); err != nil {
			t.Fatal(err)
		}
		mustPower(t, m, vms.ActionOn)
		if e := ev.waitFor(t, vms.EventBootFail, i+1); !strings.Contains(e.Detail, c.want) {
			t.Errorf("efi %v: boot-failed %q, want %q", c.efi, e.Detail, c.want)
		}
	}
}

// TestConsoleLogRotates: console.log is rotated by size as timeline.jsonl
// is, also across the idle close that reopens it, keeping ConsoleLogKeep
// older files, none past the limit, the newest output in console.log.
func TestConsoleLogRotates(t *testing.T) {
	const max = 4 << 10
	m := open(t, Config{StateDir: t.TempDir(), ConsoleLogMax: max})
	line := strings.Repeat("x", 99) + "\n"
	for i := range 200 { // 20 000 bytes: five files' worth
		m.console.printf("%s", line)
		if i%37 == 0 {
			m.console.closeIdle() // the next line reopens the file
		}
	}
	m.console.printf("last line\n")
	for i, suffix := range []string{"", ".1", ".2"} {
		fi, err := os.Stat(m.ConsoleLog() + suffix)
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if fi.Size() > max {
			t.Errorf("%s is %d bytes, more than %d", fi.Name(), fi.Size(), max)
		}
	}
	if _, err := os.Stat(m.ConsoleLog() + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("console.log.3 kept (err %v); only %d old files should be", err, ConsoleLogKeep)
	}
	if cur, _ := os.ReadFile(m.ConsoleLog()); !bytes.HasSuffix(cur, []byte("last line\n")) {
		t.Errorf("console.log does not end with the newest output: %q", cur)
	}
}
