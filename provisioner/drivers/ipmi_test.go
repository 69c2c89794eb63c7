package drivers

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
)

func TestValidateDriverInfo(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"ipmi_address": "127.0.0.1", "ipmi_username": "admin", "ipmi_password": "pw"}
	}
	with := func(k string, v any) map[string]any {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		info    map[string]any
		wantErr string // "" => valid; else the exact message
		check   func(t *testing.T, i ipmiInfo)
	}{
		{name: "minimal", info: map[string]any{"ipmi_address": "bmc.example"}, check: func(t *testing.T, i ipmiInfo) {
			if i.Port != 0 || i.PrivLevel != "ADMINISTRATOR" || i.CipherSuite != -1 || i.Username != "" {
				t.Errorf("defaults: %+v", i)
			}
			if i.target() != "bmc.example:623" {
				t.Errorf("target %s", i.target())
			}
		}},
		{name: "nil driver_info", info: nil,
			wantErr: "Missing the following IPMI credentials in node's driver_info: ['ipmi_address']."},
		{name: "no address", info: with("ipmi_address", nil),
			wantErr: "Missing the following IPMI credentials in node's driver_info: ['ipmi_address']."},
		{name: "empty address", info: with("ipmi_address", ""),
			wantErr: "Missing the following IPMI credentials in node's driver_info: ['ipmi_address']."},
		{name: "address not a string", info: with("ipmi_address", float64(12)),
			wantErr: "Invalid ipmi_address 12, expected a string"},
		{name: "port number", info: with("ipmi_port", float64(6230)), check: func(t *testing.T, i ipmiInfo) {
			if i.Port != 6230 {
				t.Errorf("port %d", i.Port)
			}
		}},
		{name: "port string", info: with("ipmi_port", "623"), check: func(t *testing.T, i ipmiInfo) {
			if i.Port != 623 {
				t.Errorf("port %d", i.Port)
			}
		}},
		{name: "port word", info: with("ipmi_port", "abc"), wantErr: `ipmi_port "abc" is not a valid port.`},
		{name: "port too big", info: with("ipmi_port", float64(70000)), wantErr: `ipmi_port "70000" is not a valid port.`},
		{name: "port zero", info: with("ipmi_port", float64(0)), wantErr: `ipmi_port "0" is not a valid port.`},
		{name: "port fraction", info: with("ipmi_port", 623.5), wantErr: `ipmi_port "623.5" is not a valid port.`},
		{name: "priv operator", info: with("ipmi_priv_level", "OPERATOR"), check: func(t *testing.T, i ipmiInfo) {
			if i.PrivLevel != "OPERATOR" {
				t.Errorf("priv %s", i.PrivLevel)
			}
		}},
		{name: "priv bad", info: with("ipmi_priv_level", "root"),
			wantErr: "Invalid privilege level value:root, the valid value can be one of ADMINISTRATOR, CALLBACK, OPERATOR, USER"},
		{name: "suite 17", info: with("ipmi_cipher_suite", float64(17)), check: func(t *testing.T, i ipmiInfo) {
			if i.CipherSuite != 17 {
				t.Errorf("suite %d", i.CipherSuite)
			}
		}},
		{name: "suite string", info: with("ipmi_cipher_suite", "3"), check: func(t *testing.T, i ipmiInfo) {
			if i.CipherSuite != 3 {
				t.Errorf("suite %d", i.CipherSuite)
			}
		}},
		{name: "suite word", info: with("ipmi_cipher_suite", "strong"), wantErr: "Invalid cipher suite strong, expected a number"},
		{name: "suite negative", info: with("ipmi_cipher_suite", float64(-1)),
			wantErr: "Invalid cipher suite -1, expected a number between 0 and 255"},
		{name: "protocol 2.0", info: with("ipmi_protocol_version", "2.0")},
		{name: "protocol 3", info: with("ipmi_protocol_version", "3"),
			wantErr: "Invalid IPMI protocol version value 3, the valid value can be one of 2.0, 1.5"},
		{name: "protocol 1.5", info: with("ipmi_protocol_version", "1.5"),
			wantErr: "IPMI protocol version 1.5 is not supported by metalbed, use 2.0"},
		{name: "kg key", info: with("ipmi_hex_kg_key", "a1b2"), check: func(t *testing.T, i ipmiInfo) {
			if i.KgKey != "a1b2" {
				t.Errorf("kg %q", i.KgKey)
			}
		}},
		{name: "kg key odd", info: with("ipmi_hex_kg_key", "abc"), wantErr: "Number of ipmi_hex_kg_key characters is not even"},
		{name: "bridging no", info: with("ipmi_bridging", "no")},
		{name: "bridging single", info: with("ipmi_bridging", "single"), wantErr: "ipmi_bridging single is not supported by metalbed"},
		{name: "bridging bad", info: with("ipmi_bridging", "triple"),
			wantErr: "Invalid value for ipmi_bridging: triple, the valid value can be one of: ['single', 'dual', 'no']"},
		{name: "force boot device false", info: with("ipmi_force_boot_device", "False")},
		{name: "force boot device", info: with("ipmi_force_boot_device", true), wantErr: "ipmi_force_boot_device is not supported by metalbed"},
		{name: "numeric username", info: with("ipmi_username", float64(42)), check: func(t *testing.T, i ipmiInfo) {
			if i.Username != "42" {
				t.Errorf("username %q", i.Username)
			}
		}},
	}
	hw, err := NewIPMI(IPMIConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := &provisioner.Node{UUID: "u", DriverInfo: tc.info}
			info, err := parseIPMIInfo(node)
			p, _ := hw.PowerFor(node)
			m, _ := hw.ManagementFor(node)
			v, _ := hw.VendorFor(node)
			for _, verr := range []error{p.Validate(t.Context(), node), m.Validate(t.Context(), node), v.Validate(t.Context(), node, "", nil)} {
				if (verr == nil) != (err == nil) {
					t.Errorf("interface Validate %v, parse %v", verr, err)
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, info)
				}
				return
			}
			if err == nil {
				t.Fatalf("valid, want %q", tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error %q\nwant  %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalidParameter) {
				t.Errorf("error %v is not ErrInvalidParameter", err)
			}
		})
	}
}

func TestNativeRefusesKgKey(t *testing.T) {
	hw, err := NewIPMI(IPMIConfig{Client: ClientNative})
	if err != nil {
		t.Fatal(err)
	}
	node := &provisioner.Node{DriverInfo: map[string]any{"ipmi_address": "127.0.0.1", "ipmi_hex_kg_key": "a1b2"}}
	p, _ := hw.PowerFor(node)
	if err := p.Validate(t.Context(), node); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("validate: %v", err)
	}
	if _, err := p.GetPowerState(t.Context(), node); !errors.Is(err, ErrInvalidParameter) {
		t.Errorf("power state: %v", err)
	}
}

func TestIPMIConfigValidation(t *testing.T) {
	for _, cfg := range []IPMIConfig{
		{Client: "ipmiutil"},
		{DefaultBootMode: "legacy"},
		{CipherSuiteVersions: []int{3, 300}},
	} {
		if _, err := NewIPMI(cfg); err == nil {
			t.Errorf("NewIPMI(%+v) accepted", cfg)
		}
	}
}

func TestBootMode(t *testing.T) {
	tests := []struct {
		name string
		node provisioner.Node
		def  string
		want string
	}{
		{"default uefi", provisioner.Node{}, BootModeUEFI, BootModeUEFI},
		{"default bios", provisioner.Node{}, BootModeBIOS, BootModeBIOS},
		{"node boot_mode", provisioner.Node{BootMode: "bios"}, BootModeUEFI, BootModeBIOS},
		{"capabilities string", provisioner.Node{Properties: map[string]any{"capabilities": "cpu_vt:true,boot_mode:bios"}}, BootModeUEFI, BootModeBIOS},
		{"capabilities spaces", provisioner.Node{Properties: map[string]any{"capabilities": "boot_mode: uefi"}}, BootModeBIOS, BootModeUEFI},
		{"capabilities object", provisioner.Node{Properties: map[string]any{"capabilities": map[string]any{"boot_mode": "uefi"}}}, BootModeBIOS, BootModeUEFI},
		{"capabilities bogus", provisioner.Node{Properties: map[string]any{"capabilities": "boot_mode:legacy"}}, BootModeUEFI, BootModeUEFI},
		{"capabilities over node", provisioner.Node{BootMode: "uefi", Properties: map[string]any{"capabilities": "boot_mode:bios"}}, BootModeUEFI, BootModeBIOS},
		{"instance capabilities first", provisioner.Node{
			InstanceInfo: map[string]any{"capabilities": map[string]any{"boot_mode": "uefi"}},
			Properties:   map[string]any{"capabilities": "boot_mode:bios"}}, BootModeBIOS, BootModeUEFI},
		{"deploy_boot_mode first", provisioner.Node{
			InstanceInfo: map[string]any{"deploy_boot_mode": "bios", "capabilities": map[string]any{"boot_mode": "uefi"}}}, BootModeUEFI, BootModeBIOS},
	}
	for _, tc := range tests {
		if got := tc.node.DeployBootMode(tc.def); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestParsePowerStatus(t *testing.T) {
	for out, want := range map[string]provisioner.PowerState{
		"Chassis Power is on\n":      provisioner.PowerOn,
		"Chassis Power is off\n":     provisioner.PowerOff,
		"Chassis Power is on":        provisioner.PowerError, // Ironic compares the whole line
		"":                           provisioner.PowerError,
		"Chassis Power is unknown\n": provisioner.PowerError,
		"Chassis Power is on\nChassis Power is off\n": provisioner.PowerError,
	} {
		if got := parsePowerStatus(out); got != want {
			t.Errorf("%q: %q, want %q", out, got, want)
		}
	}
}

func TestParseBootParam5(t *testing.T) {
	for out, want := range map[string]BootDevice{
		"   - Boot Device Selector : Force PXE\n":                                             {Device: "pxe"},
		"   - Boot Device Selector : Force Boot from default Hard-Drive\n":                    {Device: "disk"},
		"   - Boot Device Selector : Force Boot from default Hard-Drive, request Safe-Mode\n": {Device: "safe"},
		"   - Boot Device Selector : Force Boot into BIOS Setup\n":                            {Device: "bios"},
		"   - Boot Device Selector : Force Boot from CD/DVD\n":                                {Device: "cdrom"},
		"   - Boot Device Selector : No override\n":                                           {},
		"   - Options apply to all future boots\n   - Boot Device Selector : Force PXE\n":     {Device: "pxe", Persistent: true},
		"   - Boot Device Selector : Force PXE":                                               {}, // no newline: Ironic's regex needs one
		"":                                                                                    {},
	} {
		if got := parseBootParam5(out); got != want {
			t.Errorf("%q: %+v, want %+v", out, got, want)
		}
	}
}

func TestDecodeBootParam5(t *testing.T) {
	tests := []struct {
		resp    []byte
		want    BootDevice
		wantErr bool
	}{
		{[]byte{0x01, 0x05, 0xe0, 0x04, 0, 0, 0}, BootDevice{Device: "pxe", Persistent: true}, false},
		{[]byte{0x01, 0x05, 0xa0, 0x08, 0, 0, 0}, BootDevice{Device: "disk"}, false},
		{[]byte{0x01, 0x05, 0x00, 0x14, 0, 0, 0}, BootDevice{Device: "cdrom"}, false}, // ipmi_sim: no valid bit
		{[]byte{0x01, 0x05, 0xc0, 0x18, 0, 0, 0}, BootDevice{Device: "bios", Persistent: true}, false},
		{[]byte{0x01, 0x05, 0x80, 0x0c, 0, 0, 0}, BootDevice{Device: "safe"}, false},
		{[]byte{0x01, 0x05, 0x80, 0x00, 0, 0, 0}, BootDevice{}, false},
		{[]byte{0x01, 0x85, 0x80, 0x04}, BootDevice{Device: "pxe"}, false}, // locked bit ignored
		{[]byte{0x01, 0x04, 0x80, 0x04}, BootDevice{}, true},
		{[]byte{0x01, 0x05, 0x80}, BootDevice{}, true},
		{nil, BootDevice{}, true},
	}
	for _, tc := range tests {
		got, err := decodeBootParam5(tc.resp)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("% x: %+v, %v; want %+v, error %v", tc.resp, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParsePowerStatus(f *testing.F) {
	f.Add("Chassis Power is on\n")
	f.Add("Chassis Power is off\n")
	f.Add("Error: Unable to establish IPMI v2 / RMCP+ session\n")
	f.Fuzz(func(t *testing.T, out string) {
		got := parsePowerStatus(out)
		switch got {
		case provisioner.PowerOn:
			if out != "Chassis Power is on\n" {
				t.Fatalf("%q read as on", out)
			}
		case provisioner.PowerOff:
			if out != "Chassis Power is off\n" {
				t.Fatalf("%q read as off", out)
			}
		case provisioner.PowerError:
		default:
			t.Fatalf("%q read as %q", out, got)
		}
	})
}

func FuzzParseBootParam5(f *testing.F) {
	for _, file := range []string{"testdata/bootparam-ipmisim-disk.txt", "testdata/bootparam-efi-pxe-persistent.txt"} {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("Boot Device Selector : \n")
	f.Fuzz(func(t *testing.T, out string) {
		got := parseBootParam5(out)
		if got.Device != "" {
			if _, ok := bootDeviceCode(got.Device); !ok {
				t.Fatalf("%q gave unknown device %q", out, got.Device)
			}
			if !strings.Contains(out, "Boot Device Selector : ") {
				t.Fatalf("%q gave a device without a selector line", out)
			}
		}
		if got.Persistent != strings.Contains(out, "Options apply to all future boots") {
			t.Fatalf("%q: persistent %v", out, got.Persistent)
		}
	})
}

func FuzzDecodeBootParam5(f *testing.F) {
	f.Add([]byte{0x01, 0x05, 0xe0, 0x04, 0, 0, 0})
	f.Add([]byte{0x01, 0x05})
	f.Fuzz(func(t *testing.T, resp []byte) {
		got, err := decodeBootParam5(resp)
		if err != nil {
			if got != (BootDevice{}) {
				t.Fatalf("error %v with a result %+v", err, got)
			}
			return
		}
		if len(resp) < 4 {
			t.Fatalf("% x decoded without enough bytes", resp)
		}
		if got.Device != "" {
			if code, _ := bootDeviceCode(got.Device); code != resp[3]&0x3c {
				t.Fatalf("% x gave %q", resp, got.Device)
			}
		}
		if got.Persistent != (resp[2]&0x40 != 0) {
			t.Fatalf("% x: persistent %v", resp, got.Persistent)
		}
	})
}

func FuzzParseRawBytes(f *testing.F) {
	f.Add("0x00 0x08 0x03 0x08")
	f.Add("6 1")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseRawBytes(s)
		if err == nil && len(b) < 2 {
			t.Fatalf("%q parsed to %d bytes", s, len(b))
		}
	})
}
