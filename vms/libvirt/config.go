package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/metalbed/metalbed/vms"
)

// ErrNotBuilt is returned by Open in a build without the libvirt_dlopen tag.
var ErrNotBuilt = errors.New("metalbed was built without libvirt support (rebuild with -tags libvirt_dlopen; needs a C compiler)")

// Config describes one libvirt machine.
type Config struct {
	// Name is the machine's name and its domain's name. Required.
	Name string
	// UUID is the SMBIOS system UUID. Zero => as the existing domain has
	// it, else a random one.
	UUID [16]byte
	// URI is the libvirt connection; default "qemu:///system".
	URI string
	// MAC is the NIC's address. Required.
	MAC net.HardwareAddr
	// Bridge is the bridge the NIC joins (Network.Bridge). Required.
	Bridge string
	// Disk is the disk file: qcow2 when it ends in ".qcow2", else raw.
	// Required. A missing raw file is created sparse with DiskBytes.
	Disk string
	// DiskBytes is the size of a disk Open creates; default 4 GiB.
	DiskBytes int64
	// SerialLog is the file the serial console is logged to (replaced on
	// every start). Required.
	SerialLog string
	// BootMode is bios (SeaBIOS) or uefi (OVMF); default bios.
	BootMode vms.BootMode
	// MemoryMiB is the guest's memory; default 256.
	MemoryMiB int
	// DomainType is "kvm" or "qemu"; "" => DomainType().
	DomainType string
	// Logger gets milestones (power transitions, boots). nil => discard.
	Logger *slog.Logger
	// Dial connects InsertMedia to the image's web server (a server in the
	// boot network's namespace is not reachable from the host's); nil =>
	// a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *Config) defaults() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("libvirt machine name %q: want letters, digits, '.', '_', '-'", c.Name)
	}
	if len(c.MAC) != 6 {
		return fmt.Errorf("libvirt machine %s: MAC required", c.Name)
	}
	if c.Bridge == "" || c.Disk == "" || c.SerialLog == "" {
		return fmt.Errorf("libvirt machine %s: Bridge, Disk and SerialLog are required", c.Name)
	}
	if c.URI == "" {
		c.URI = "qemu:///system"
	}
	if c.DiskBytes == 0 {
		c.DiskBytes = 4 << 30
	}
	if c.BootMode == "" {
		c.BootMode = vms.BIOS
	}
	if c.BootMode != vms.BIOS && c.BootMode != vms.UEFI {
		return fmt.Errorf("libvirt machine %s: boot mode %q: want bios or uefi", c.Name, c.BootMode)
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 256
	}
	if c.DomainType == "" {
		c.DomainType = DomainType()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) diskType() string {
	if strings.HasSuffix(c.Disk, ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// ensureDisk creates a missing raw disk file, sparse.
func (c *Config) ensureDisk() error {
	if _, err := os.Stat(c.Disk); err == nil {
		return nil
	}
	if c.diskType() != "raw" {
		return fmt.Errorf("libvirt machine %s: disk %s missing (create it with qemu-img create -f qcow2)", c.Name, c.Disk)
	}
	f, err := os.OpenFile(c.Disk, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("libvirt machine %s: create disk: %w", c.Name, err)
	}
	if err := f.Truncate(c.DiskBytes); err != nil {
		f.Close()
		return fmt.Errorf("libvirt machine %s: size disk: %w", c.Name, err)
	}
	return f.Close()
}
