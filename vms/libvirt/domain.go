package libvirt

import (
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/metalbed/metalbed/vms"
)

// metadataNS is the XML namespace of metalbed's domain metadata.
const metadataNS = "https://metalbed.dev/xmlns/libvirt/1"

// DomainSpec is everything a domain definition holds.
type DomainSpec struct {
	Name      string
	UUID      [16]byte
	Type      string // "kvm" or "qemu"
	MemoryMiB int
	Mode      vms.BootMode
	// Boot is the boot order: "network", "hd".
	Boot      []string
	Disk      string // path of the disk file
	DiskType  string // "qcow2" or "raw"
	MAC       net.HardwareAddr
	Bridge    string
	SerialLog string
	// Flags are the BMC's boot flags, kept in the domain's metadata.
	Flags vms.BootFlags
	// CDROM is the ISO file in the virtual CD drive ("" = an empty tray);
	// CDROMURL the image URL it was fetched from, kept in the metadata.
	CDROM, CDROMURL string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validate reports a spec libvirt would reject or misread.
func (s DomainSpec) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("domain name %q: want letters, digits, '.', '_', '-' (at most 64)", s.Name)
	}
	if s.Type != "kvm" && s.Type != "qemu" {
		return fmt.Errorf("domain %s: type %q: want kvm or qemu", s.Name, s.Type)
	}
	if s.Mode != vms.BIOS && s.Mode != vms.UEFI {
		return fmt.Errorf("domain %s: boot mode %q: want bios or uefi", s.Name, s.Mode)
	}
	if s.DiskType != "qcow2" && s.DiskType != "raw" {
		return fmt.Errorf("domain %s: disk type %q: want qcow2 or raw", s.Name, s.DiskType)
	}
	if len(s.MAC) != 6 {
		return fmt.Errorf("domain %s: MAC %q: want 6 bytes", s.Name, s.MAC)
	}
	for _, b := range s.Boot {
		if b != "network" && b != "hd" && b != "cdrom" {
			return fmt.Errorf("domain %s: boot device %q", s.Name, b)
		}
	}
	return nil
}

// XML renders the domain definition libvirt's DomainDefineXML takes.
func (s DomainSpec) XML() (string, error) {
	if err := s.validate(); err != nil {
		return "", err
	}
	d := xDomain{
		Type:     s.Type,
		Name:     s.Name,
		UUID:     formatUUID(s.UUID),
		Memory:   xUnit{Unit: "MiB", Value: s.MemoryMiB},
		VCPU:     1,
		Metadata: xMetadata{Machine: xMachine{BootFlags: hex.EncodeToString(s.Flags[:]), CDROM: s.CDROMURL}},
		OS: xOS{
			Type: xOSType{Arch: "x86_64", Machine: "q35", Value: "hvm"},
		},
		Features:   &xFeatures{},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		SecLabel:   xSecLabel{Type: "static", Model: "dac", Relabel: "no", Label: "+0:+0"},
		Devices: xDevices{
			Disks: []xDisk{{
				Type: "file", Device: "disk",
				Driver: xDriver{Name: "qemu", Type: s.DiskType},
				Source: &xFileSource{File: s.Disk},
				Target: xTarget{Dev: "vda", Bus: "virtio"},
			}, {
				// The virtual CD drive a BMC's InsertMedia fills: SATA, as
				// SeaBIOS and OVMF boot from it on q35.
				Type: "file", Device: "cdrom",
				Driver:   xDriver{Name: "qemu", Type: "raw"},
				Target:   xTarget{Dev: "sda", Bus: "sata"},
				ReadOnly: &struct{}{},
			}},
			Interface: xInterface{
				Type:   "bridge",
				MAC:    xMAC{Address: s.MAC.String()},
				Source: xBridgeSource{Bridge: s.Bridge},
				Model:  xModel{Type: "virtio"},
			},
			Serial:  xSerial{Type: "pty", Log: xLog{File: s.SerialLog, Append: "off"}, Target: xSerialTarget{Port: 0}},
			Console: xConsole{Type: "pty", Target: xConsoleTarget{Type: "serial", Port: 0}},
			// A hardware RNG, as servers have: without one a kernel under
			// TCG can wait minutes for getrandom(2), and so the ramdisk's
			// DHCP client (random transaction IDs) never starts.
			RNG: xRNG{Model: "virtio", Backend: xRNGBackend{Model: "random", Device: "/dev/urandom"}},
		},
	}
	if s.Mode == vms.UEFI {
		d.OS.Firmware = "efi"
		d.OS.FirmwareFeatures = &xFirmware{Features: []xFeature{
			{Enabled: "no", Name: "secure-boot"},
			{Enabled: "no", Name: "enrolled-keys"},
		}}
	}
	if s.CDROM != "" {
		d.Devices.Disks[1].Source = &xFileSource{File: s.CDROM}
	}
	for _, b := range s.Boot {
		d.OS.Boot = append(d.OS.Boot, xBoot{Dev: b})
	}
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return "", fmt.Errorf("domain %s: render XML: %w", s.Name, err)
	}
	return string(out), nil
}

// bootFlagsFromXML reads the boot flags from a domain's XML metadata; ok is
// false when the domain holds none (not defined by metalbed).
func bootFlagsFromXML(doc string) (f vms.BootFlags, ok bool) {
	d, err := metadataOf(doc)
	if err != nil {
		return f, false
	}
	b, err := hex.DecodeString(strings.TrimSpace(d.BootFlags))
	if err != nil || len(b) != len(f) {
		return f, false
	}
	copy(f[:], b)
	return f, true
}

// cdromFromXML is the image URL and file of the virtual CD drive a domain
// defined by metalbed holds ("" for an empty tray).
func cdromFromXML(doc string) (url, file string) {
	md, err := metadataOf(doc)
	if err != nil || md.CDROM == "" {
		return "", ""
	}
	var d struct {
		Disks []struct {
			Device string `xml:"device,attr"`
			Source struct {
				File string `xml:"file,attr"`
			} `xml:"source"`
		} `xml:"devices>disk"`
	}
	if xml.Unmarshal([]byte(doc), &d) != nil {
		return "", ""
	}
	for _, x := range d.Disks {
		if x.Device == "cdrom" && x.Source.File != "" {
			return md.CDROM, x.Source.File
		}
	}
	return "", ""
}

// domainMetadata is metalbed's part of a domain's metadata.
type domainMetadata struct {
	BootFlags string `xml:"bootflags"`
	CDROM     string `xml:"cdrom"`
}

func metadataOf(doc string) (domainMetadata, error) {
	var d struct {
		Metadata struct {
			Machine domainMetadata `xml:"https://metalbed.dev/xmlns/libvirt/1 machine"`
		} `xml:"metadata"`
	}
	err := xml.Unmarshal([]byte(doc), &d)
	return d.Metadata.Machine, err
}

// BootOrder is the boot order firmware gets for the given flags: the
// override's device first, then the other; without an override the disk
// first, as a server that was installed boots.
func BootOrder(f vms.BootFlags) []string {
	if f.Valid() {
		switch f.Device() {
		case vms.BootPXE:
			return []string{"network", "hd"}
		case vms.BootDisk, vms.BootSafe:
			return []string{"hd", "network"}
		case vms.BootCDROM:
			return []string{"cdrom", "hd", "network"}
		}
	}
	return []string{"hd", "network"}
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

type xDomain struct {
	XMLName    xml.Name   `xml:"domain"`
	Type       string     `xml:"type,attr"`
	Name       string     `xml:"name"`
	UUID       string     `xml:"uuid"`
	Metadata   xMetadata  `xml:"metadata"`
	Memory     xUnit      `xml:"memory"`
	VCPU       int        `xml:"vcpu"`
	OS         xOS        `xml:"os"`
	Features   *xFeatures `xml:"features"`
	OnPoweroff string     `xml:"on_poweroff"`
	OnReboot   string     `xml:"on_reboot"`
	OnCrash    string     `xml:"on_crash"`
	Devices    xDevices   `xml:"devices"`
	SecLabel   xSecLabel  `xml:"seclabel"`
}

type xMetadata struct {
	Machine xMachine `xml:"mb:machine"`
}

type xMachine struct {
	NS        string `xml:"xmlns:mb,attr"`
	BootFlags string `xml:"mb:bootflags"`
	CDROM     string `xml:"mb:cdrom,omitempty"` // the inserted image's URL
}

func (m xMachine) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	m.NS = metadataNS
	type plain xMachine
	return e.EncodeElement(plain(m), start)
}

type xUnit struct {
	Unit  string `xml:"unit,attr"`
	Value int    `xml:",chardata"`
}

type xOS struct {
	Firmware         string     `xml:"firmware,attr,omitempty"`
	Type             xOSType    `xml:"type"`
	FirmwareFeatures *xFirmware `xml:"firmware"`
	Boot             []xBoot    `xml:"boot"`
}

type xOSType struct {
	Arch    string `xml:"arch,attr"`
	Machine string `xml:"machine,attr"`
	Value   string `xml:",chardata"`
}

type xFirmware struct {
	Features []xFeature `xml:"feature"`
}

type xFeature struct {
	Enabled string `xml:"enabled,attr"`
	Name    string `xml:"name,attr"`
}

type xBoot struct {
	Dev string `xml:"dev,attr"`
}

type xFeatures struct {
	ACPI struct{} `xml:"acpi"`
	APIC struct{} `xml:"apic"`
}

type xSecLabel struct {
	Type    string `xml:"type,attr"`
	Model   string `xml:"model,attr"`
	Relabel string `xml:"relabel,attr"`
	Label   string `xml:"label"`
}

type xDevices struct {
	Disks     []xDisk    `xml:"disk"`
	Interface xInterface `xml:"interface"`
	Serial    xSerial    `xml:"serial"`
	Console   xConsole   `xml:"console"`
	RNG       xRNG       `xml:"rng"`
}

type xRNG struct {
	Model   string      `xml:"model,attr"`
	Backend xRNGBackend `xml:"backend"`
}

type xRNGBackend struct {
	Model  string `xml:"model,attr"`
	Device string `xml:",chardata"`
}

type xDisk struct {
	Type     string       `xml:"type,attr"`
	Device   string       `xml:"device,attr"`
	Driver   xDriver      `xml:"driver"`
	Source   *xFileSource `xml:"source"`
	Target   xTarget      `xml:"target"`
	ReadOnly *struct{}    `xml:"readonly"`
}

type xDriver struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type xFileSource struct {
	File string `xml:"file,attr"`
}

type xTarget struct {
	Dev string `xml:"dev,attr"`
	Bus string `xml:"bus,attr"`
}

type xInterface struct {
	Type   string        `xml:"type,attr"`
	MAC    xMAC          `xml:"mac"`
	Source xBridgeSource `xml:"source"`
	Model  xModel        `xml:"model"`
}

type xMAC struct {
	Address string `xml:"address,attr"`
}

type xBridgeSource struct {
	Bridge string `xml:"bridge,attr"`
}

type xModel struct {
	Type string `xml:"type,attr"`
}

type xSerial struct {
	Type   string        `xml:"type,attr"`
	Log    xLog          `xml:"log"`
	Target xSerialTarget `xml:"target"`
}

type xLog struct {
	File   string `xml:"file,attr"`
	Append string `xml:"append,attr"`
}

type xSerialTarget struct {
	Port int `xml:"port,attr"`
}

type xConsole struct {
	Type   string         `xml:"type,attr"`
	Target xConsoleTarget `xml:"target"`
}

type xConsoleTarget struct {
	Type string `xml:"type,attr"`
	Port int    `xml:"port,attr"`
}
