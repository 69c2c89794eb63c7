package libvirt

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/vms"
)

func testSpec() DomainSpec {
	return DomainSpec{
		Name: "node-0", UUID: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Type: "qemu", MemoryMiB: 256, Mode: vms.BIOS, Boot: []string{"network", "hd"},
		Disk: "/tmp/d.qcow2", DiskType: "qcow2", MAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3},
		Bridge: "mbbr-x", SerialLog: "/tmp/console.log",
		Flags: vms.NewBootFlags(vms.BootPXE, false, false),
	}
}

func TestDomainXML(t *testing.T) {
	s := testSpec()
	doc, err := s.XML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<domain type="qemu">`, `<uuid>01020304-0506-0708-090a-0b0c0d0e0f10</uuid>`,
		`<memory unit="MiB">256</memory>`, `<boot dev="network"></boot>`,
		`<mac address="52:54:00:01:02:03">`, `<source bridge="mbbr-x">`,
		`<log file="/tmp/console.log" append="off">`, `<label>+0:+0</label>`,
		`<rng model="virtio">`, `<backend model="random">/dev/urandom</backend>`,
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("XML lacks %s:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "efi") {
		t.Errorf("BIOS domain mentions efi:\n%s", doc)
	}
	f, ok := bootFlagsFromXML(doc)
	if !ok || f != s.Flags {
		t.Errorf("boot flags round trip: got % x ok=%v, want % x", f, ok, s.Flags)
	}

	s.Mode = vms.UEFI
	doc, err = s.XML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<os firmware="efi">`, `<feature enabled="no" name="secure-boot">`, `<feature enabled="no" name="enrolled-keys">`} {
		if !strings.Contains(doc, want) {
			t.Errorf("UEFI XML lacks %s:\n%s", want, doc)
		}
	}
}

func TestDomainXMLRejects(t *testing.T) {
	for name, mut := range map[string]func(*DomainSpec){
		"name":     func(s *DomainSpec) { s.Name = "a/b" },
		"type":     func(s *DomainSpec) { s.Type = "xen" },
		"mode":     func(s *DomainSpec) { s.Mode = "" },
		"disktype": func(s *DomainSpec) { s.DiskType = "vmdk" },
		"mac":      func(s *DomainSpec) { s.MAC = nil },
		"boot":     func(s *DomainSpec) { s.Boot = []string{"floppy"} },
	} {
		s := testSpec()
		mut(&s)
		if _, err := s.XML(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBootOrder(t *testing.T) {
	for _, c := range []struct {
		f    vms.BootFlags
		want []string
	}{
		{vms.BootFlags{}, []string{"hd", "network"}},
		{vms.NewBootFlags(vms.BootPXE, false, false), []string{"network", "hd"}},
		{vms.NewBootFlags(vms.BootDisk, true, true), []string{"hd", "network"}},
		{vms.NewBootFlags(vms.BootCDROM, false, false), []string{"cdrom", "hd", "network"}},
	} {
		if got := BootOrder(c.f); !reflect.DeepEqual(got, c.want) {
			t.Errorf("BootOrder(% x) = %v, want %v", c.f, got, c.want)
		}
	}
}

func TestBootFlagsFromXMLForeign(t *testing.T) {
	for _, doc := range []string{"", "<domain/>", "<domain><metadata/></domain>", "not xml <<"} {
		if _, ok := bootFlagsFromXML(doc); ok {
			t.Errorf("%q: flags found", doc)
		}
	}
}
