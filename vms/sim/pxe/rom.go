// Package pxe is the simulated machine's network boot ROM. Like the iPXE ROM
// in QEMU's NICs it does a real DHCP exchange (PXE options, user class
// iPXE), fetches the boot file over TFTP or HTTP — real bytes from a real
// server — and runs what it recognises: an iPXE script, PXELINUX (config
// lookup by UUID, MAC, hex IP, default), or an iPXE binary chaining to a
// script. The kernel it is told to boot must be a Linux bzImage; what runs
// then is up to the Executor (the wiring starts metalbed's ramdisk, or the
// instance, in-process). Anything else fails on the console, as it would on
// hardware.
package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"
	"github.com/metalbed/metalbed/vms"
	"github.com/metalbed/metalbed/vms/sim"
)

// ROM is a NIC boot ROM; it implements sim.Firmware for network boots.
type ROM struct {
	// DHCPServer is where DHCP requests are sent. A real NIC broadcasts
	// (255.255.255.255:67); on loopback, with no broadcast and no root,
	// this is the provisioner's DHCP address, e.g. 127.0.0.1:6767.
	DHCPServer string
	// DHCPClient is the address the DHCP socket binds before there is a
	// lease. Default "0.0.0.0:68"; on loopback "127.0.0.1:0".
	DHCPClient string
	// TFTPPort is the boot server's TFTP port; default 69.
	TFTPPort int
	// Timeout is the first DHCP wait (doubled per retry) and the TFTP
	// timeout; default 2 s.
	Timeout time.Duration
	// DHCPTries bounds DISCOVER rounds; default 4.
	DHCPTries int
	// MaxImage bounds one downloaded file; default 1 GiB.
	MaxImage int64
	// Unpack is where the files this ROM loads are unpacked, shared by a
	// fleet's ROMs (Unpacker); nil: each on its own, no turns.
	Unpack *Unpacker
	// Exec runs the kernel the ROM booted. Required.
	Exec Executor
}

// Image is what the ROM hands over: a Linux kernel, its initrds and its
// command line, with the lease the NIC got.
type Image struct {
	KernelName string
	Kernel     File
	Initrds    []File
	Cmdline    string
	Lease      Lease
	NIC        vms.NIC
}

// Executor runs a booted image on the machine until it ends or ctx ends.
type Executor func(ctx context.Context, b *sim.BootContext, img Image) error

// ipxeBlockSize is the TFTP block size iPXE negotiates.
const ipxeBlockSize = 1432

// ErrExec says the ROM fetched something it cannot run.
var ErrExec = errors.New("cannot execute")

func (r *ROM) defaults() ROM {
	c := *r
	if c.DHCPServer == "" {
		c.DHCPServer = "255.255.255.255:67"
	}
	if c.DHCPClient == "" {
		c.DHCPClient = "0.0.0.0:68"
	}
	if c.TFTPPort == 0 {
		c.TFTPPort = 69
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.DHCPTries == 0 {
		c.DHCPTries = 4
	}
	if c.MaxImage == 0 {
		c.MaxImage = 1 << 30
	}
	return c
}

// Boot implements sim.Firmware.
func (r *ROM) Boot(ctx context.Context, b *sim.BootContext) error {
	cfg := r.defaults()
	if cfg.Exec == nil {
		return errors.New("pxe: ROM has no executor")
	}
	say := func(format string, a ...any) { fmt.Fprintf(b.Console, format+"\r\n", a...) }
	if len(b.NICs) == 0 {
		say("PXE-E61: no network interface")
		return errors.New("PXE-E61: no network interface")
	}
	nic := b.NICs[0]
	say("iPXE 1.21.1 (metalbed SimROM) -- Open Source Network Boot Firmware")
	say("net0: %s using sim-net on %s", nic.MAC, b.Machine)
	if b.Pace.LinkUp > 0 {
		say("Waiting for link-up on net0...")
		t := time.NewTimer(b.Pace.LinkUp)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		say("net0: link up after %s", b.Pace.LinkUp.Round(time.Millisecond))
	}
	say("Configuring (net0 %s)...", nic.MAC)

	server, err := net.ResolveUDPAddr("udp4", cfg.DHCPServer)
	if err != nil {
		return fmt.Errorf("pxe: DHCP server %q: %w", cfg.DHCPServer, err)
	}
	local, err := net.ResolveUDPAddr("udp4", cfg.DHCPClient)
	if err != nil {
		return fmt.Errorf("pxe: DHCP client address %q: %w", cfg.DHCPClient, err)
	}
	arch := iana.INTEL_X86PC
	platform := "pcbios"
	if b.Mode == vms.UEFI {
		arch, platform = iana.EFI_X86_64, "efi"
	}
	dc := &dhcpClient{mac: nic.MAC, uuid: b.UUID, arch: arch, ipxe: true, server: server, local: local, timeout: cfg.Timeout, tries: cfg.DHCPTries}
	lease, err := dc.exchange(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		say("%v", err)
		return fmt.Errorf("pxe: %w", err)
	}
	ones, _ := lease.Netmask.Size()
	say("net0: %s/%d gw %s", lease.IP, ones, ipString(lease.Router))
	say("Next server: %s", lease.NextServer)
	say("Filename: %s", lease.BootFile)
	b.Emit(vms.EventConsole, "dhcp "+lease.String())
	if lease.BootFile == "" {
		say("PXE-E53: No boot filename received")
		return errors.New("pxe: PXE-E53: no boot filename received")
	}
	run := &romRun{
		cfg: cfg, b: b, nic: nic, lease: lease, say: say,
		// iPXE asks for 1432-byte TFTP blocks (TFTP_MAX_BLKSIZE in
		// src/net/udp/tftp.c): a 16 MiB kernel is 11 700 round trips, not
		// 32 000.
		f: &fetcher{localIP: lease.IP, tftpPort: cfg.TFTPPort, blksize: ipxeBlockSize, timeout: cfg.Timeout, maxBytes: cfg.MaxImage, unpack: cfg.Unpack},
		vars: map[string]string{
			"mac":          nic.MAC.String(),
			"mac:hexhyp":   strings.ReplaceAll(nic.MAC.String(), ":", "-"),
			"net0/mac":     nic.MAC.String(),
			"ip":           lease.IP.String(),
			"netmask":      net.IP(lease.Netmask).String(),
			"gateway":      ipString(lease.Router),
			"next-server":  ipString(lease.NextServer),
			"filename":     lease.BootFile,
			"uuid":         sim.FormatUUID(b.UUID),
			"hostname":     b.Machine,
			"platform":     platform,
			"buildarch":    "x86_64",
			"manufacturer": "metalbed",
			"product":      "SimMachine",
		},
	}
	err = run.bootFile(ctx, lease.BootFile, 0)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		say("Could not boot: %v", err)
		return fmt.Errorf("pxe: %w", err)
	}
	return nil
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

type romRun struct {
	cfg   ROM
	b     *sim.BootContext
	nic   vms.NIC
	lease Lease
	f     *fetcher
	say   func(string, ...any)
	vars  map[string]string
}

func (r *romRun) fetch(ctx context.Context, ref string) ([]byte, error) {
	return r.f.fetch(ctx, r.lease.NextServer, ref)
}

func (r *romRun) load(ctx context.Context, ref string) (File, error) {
	return r.f.load(ctx, r.lease.NextServer, ref)
}

// bootFile fetches and runs the NBP or script the DHCP server named.
func (r *romRun) bootFile(ctx context.Context, name string, depth int) error {
	if depth > 3 {
		return errors.New("too many chained boot programs")
	}
	r.say("%s...", name)
	data, err := r.fetch(ctx, name)
	if err != nil {
		return err
	}
	r.say("ok (%d bytes)", len(data))
	r.b.Emit(vms.EventConsole, fmt.Sprintf("nbp %s %d bytes", name, len(data)))
	switch {
	case bytes.HasPrefix(data, []byte("#!ipxe")):
		return r.script(ctx, string(data), r.baseURL(name))
	case bytes.Contains(data, []byte("PXELINUX")):
		return r.pxelinux(ctx, name)
	case IsIPXE(name, data):
		// A chained iPXE asks DHCP again as iPXE and runs the script it gets.
		return r.bootFile(ctx, r.lease.BootFile, depth+1)
	}
	return fmt.Errorf("%w %s: not a boot program this ROM can run (not an iPXE script, PXELINUX or iPXE)", ErrExec, name)
}

// IsIPXE reports whether a boot program (its name, or a URL ending in it,
// and its bytes) is iPXE: what a chained iPXE does this ROM does itself.
func IsIPXE(name string, data []byte) bool {
	return bytes.Contains(data, []byte("iPXE")) || ipxeNBPNames[path.Base(name)]
}

// ipxeNBPNames are the names iPXE's boot programs ship under; the BIOS ones
// are compressed, so their bytes do not say "iPXE".
var ipxeNBPNames = map[string]bool{
	"undionly.kpxe": true, "undionly.kkpxe": true, "ipxe.pxe": true,
	"ipxe.efi": true, "snponly.efi": true, "snp.efi": true,
}

func (r *romRun) baseURL(name string) string {
	if strings.Contains(name, "://") {
		return name
	}
	return fmt.Sprintf("tftp://%s:%d/%s", r.lease.NextServer, r.f.tftpPort, strings.TrimPrefix(name, "/"))
}

func (r *romRun) script(ctx context.Context, text, base string) error {
	vm := &ipxeVM{
		vars: r.vars,
		load: r.load,
		say:  r.say,
		sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
				return nil
			}
		},
	}
	err := vm.run(ctx, text, base)
	if !errors.Is(err, errBoot) {
		return err
	}
	img := Image{KernelName: vm.kernel.name, Kernel: vm.kernel.file, Cmdline: vm.kernel.args, Lease: r.lease, NIC: r.nic}
	for _, i := range vm.initrd {
		i.file.Name = i.name
		img.Initrds = append(img.Initrds, i.file)
	}
	return r.exec(ctx, img)
}

func (r *romRun) pxelinux(ctx context.Context, nbp string) error {
	prefix := path.Dir(strings.TrimPrefix(nbp, "/"))
	r.say("PXELINUX (metalbed SimROM)")
	var text []byte
	var lastErr error
	for _, name := range pxelinuxConfigNames(sim.FormatUUID(r.b.UUID), r.nic.MAC, r.lease.IP) {
		p := resolveTFTP(prefix, name)
		b, err := r.fetch(ctx, p)
		if err == nil {
			r.say("Trying to load: %s ok", p)
			text = b
			break
		}
		r.say("Trying to load: %s", p)
		lastErr = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if text == nil {
		return fmt.Errorf("pxelinux: no config file found: %w", lastErr)
	}
	cfg, err := parsePXELinux(string(text))
	if err != nil {
		return fmt.Errorf("pxelinux config: %w", err)
	}
	label, err := cfg.pick()
	if err != nil {
		return fmt.Errorf("pxelinux config: %w", err)
	}
	if label.LocalBoot {
		return fmt.Errorf("pxelinux: label %s asks for local boot", label.Name)
	}
	if label.COM32 != "" {
		// chain.c32 hands over to a local disk; the simulated firmware
		// boots local disks through its own loader (boot device disk).
		return fmt.Errorf("%w: pxelinux: label %s runs the module %s (chain-loading a local disk: set boot device disk)", ErrExec, label.Name, label.COM32)
	}
	if label.Kernel == "" {
		return fmt.Errorf("pxelinux: label %s has no kernel", label.Name)
	}
	r.say("Loading %s...", label.Kernel)
	kernel, err := r.load(ctx, resolveTFTP(prefix, label.Kernel))
	if err != nil {
		return err
	}
	img := Image{KernelName: label.Kernel, Kernel: kernel, Lease: r.lease, NIC: r.nic}
	files := initrds(label.Append)
	if label.Initrd != "" {
		files = append(strings.Split(label.Initrd, ","), files...)
	}
	for _, name := range files {
		r.say("Loading %s...", name)
		rd, err := r.load(ctx, resolveTFTP(prefix, name))
		if err != nil {
			return err
		}
		rd.Name = name
		img.Initrds = append(img.Initrds, rd)
	}
	args := []string{"BOOT_IMAGE=" + label.Kernel}
	if label.Append != "" {
		args = append(args, label.Append)
	}
	if extra := ipappendArgs(label.IPAppend, r.lease, r.nic.MAC); extra != "" {
		args = append(args, extra)
	}
	img.Cmdline = strings.Join(args, " ")
	return r.exec(ctx, img)
}

// exec checks the kernel is a Linux boot image and hands over.
func (r *romRun) exec(ctx context.Context, img Image) error {
	if err := CheckBzImage(img.Kernel.Head); err != nil {
		return fmt.Errorf("%w kernel %s: %v", ErrExec, img.KernelName, err)
	}
	r.say("Booting %s (%d bytes, %d initrd)", img.KernelName, img.Kernel.Size, len(img.Initrds))
	r.b.Emit(vms.EventConsole, "kernel "+img.KernelName+" "+img.Cmdline)
	return r.cfg.Exec(ctx, r.b, img)
}

// CheckBzImage verifies the Linux x86 boot protocol header: boot sector
// signature 0x55AA at 510 and "HdrS" at 0x202 (Documentation/x86/boot.rst).
// k is the kernel's head (File.Head) or all of it.
func CheckBzImage(k []byte) error {
	if len(k) < 0x206 {
		return fmt.Errorf("%d bytes, too short for a Linux kernel", len(k))
	}
	if k[510] != 0x55 || k[511] != 0xAA || string(k[0x202:0x206]) != "HdrS" {
		return errors.New("not a Linux bzImage (no boot protocol header)")
	}
	return nil
}
