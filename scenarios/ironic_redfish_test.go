package scenarios

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// TestRealIronicDrivesMetalbedRedfish points a REAL standalone Ironic 21.4
// with the redfish hardware type (sushy underneath) at `metalbed up`'s
// Redfish service, over HTTPS verified with the CA inventory.json names,
// and drives one machine with the real `baremetal` CLI: manage (power and
// management validated), power on/off (checked independently with
// ipmitool against the machine's IPMI BMC), persistent and one-time PXE in
// legacy and UEFI mode (read back by Ironic and, as parameter 5, by
// ipmitool), inspection
// (CPUs, memory, disk, MACs from the ComputerSystem) and provide.
func TestRealIronicDrivesMetalbedRedfish(t *testing.T) {
	requireIronic(t)
	requireSushy(t)
	bin := buildMetalbed(t)
	fleet := startFleet(t, bin, 1)
	m := fleet.Inventory.Nodes[0]
	ir := startIronic(t, IronicOptions{Redfish: true})
	t.Logf("real Ironic ready in %s s", ir.StartSeconds)

	var created struct {
		UUID string `json:"uuid"`
	}
	args := []string{"node", "create", "--driver", "redfish", "--name", m.Name,
		"--boot-interface", "pxe", "--deploy-interface", "direct", "--inspect-interface", "redfish", "--bios-interface", "redfish", "-f", "json"}
	for _, kv := range redfishDriverInfo(t, m) {
		args = append(args, "--driver-info", kv)
	}
	out := ir.Baremetal(t, "node create", args...)
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("node create output: %v", err)
	}
	uuid := created.UUID
	t.Cleanup(func() {
		_, _ = ir.TryBaremetal(t.Context(), "node maintenance set", "node", "maintenance", "set", uuid)
		_, _ = ir.TryBaremetal(t.Context(), "node delete", "node", "delete", uuid)
	})

	ir.Baremetal(t, "node manage", "node", "manage", uuid)
	n := ir.WaitProvision(t, uuid, "manageable", 120*time.Second)
	if got := str(n.PowerState); got != "power off" && got != "power on" {
		t.Fatalf("after manage, power_state %s: Ironic could not read the Redfish service", got)
	}
	var validate []struct {
		Interface string `json:"Interface"`
		Result    *bool  `json:"Result"`
		Reason    string `json:"Reason"`
	}
	if err := json.Unmarshal([]byte(ir.Baremetal(t, "node validate", "node", "validate", uuid, "-f", "json")), &validate); err != nil {
		t.Fatalf("node validate output: %v", err)
	}
	for _, v := range validate {
		if (v.Interface == "power" || v.Interface == "management" || v.Interface == "inspect") && (v.Result == nil || !*v.Result) {
			t.Errorf("node validate: %s is not True: %s", v.Interface, v.Reason)
		}
	}

	// manage cached the BIOS settings through the redfish bios interface:
	// metalbed's Bios attributes as Ironic stores them.
	var settings []map[string]any // the CLI's columns: "BIOS setting name", "BIOS setting value"
	out = ir.Baremetal(t, "node bios setting list", "node", "bios", "setting", "list", uuid, "-f", "json")
	if err := json.Unmarshal([]byte(out), &settings); err != nil {
		t.Fatalf("bios setting list output: %v", err)
	}
	bios := map[string]any{}
	for _, s := range settings {
		bios[fmt.Sprint(s["BIOS setting name"])] = s["BIOS setting value"]
	}
	if bios["ProcTurboMode"] != "Enabled" || bios["BootMode"] != "Bios" {
		t.Errorf("Ironic's cached BIOS settings %s: want ProcTurboMode Enabled and BootMode Bios", out)
	}

	ir.Baremetal(t, "node power on", "node", "power", "on", uuid)
	ir.WaitPower(t, uuid, "power on", 120*time.Second)
	assertChassisPower(t, m, "17", "on")
	ir.Baremetal(t, "node power off", "node", "power", "off", uuid)
	ir.WaitPower(t, uuid, "power off", 120*time.Second)
	assertChassisPower(t, m, "17", "off")

	for i, c := range []struct {
		persistent bool
		flags      byte // parameter 5 byte 0 & 0xe0: valid, persistent, EFI
	}{{true, 0xc0}, {false, 0x80}, {true, 0xe0}, {false, 0xa0}} {
		if i == 2 {
			// UEFI: Ironic sets the boot mode with a PATCH of
			// BootSourceOverrideMode alone, reads it back, and the next
			// boot device keeps it.
			ir.Baremetal(t, "node boot mode set uefi", "node", "boot", "mode", "set", uuid, "uefi")
			ir.WaitNode(t, uuid, "boot_mode uefi", 60*time.Second, func(n IronicNode) bool {
				return str(n.BootMode) == "uefi"
			})
		}
		args := []string{"node", "boot", "device", "set", uuid, "pxe"}
		if c.persistent {
			args = append(args, "--persistent")
		}
		ir.Baremetal(t, "node boot device set pxe", args...)
		var shown struct {
			BootDevice string `json:"boot_device"`
			Persistent *bool  `json:"persistent"`
		}
		out := ir.Baremetal(t, "node boot device show", "node", "boot", "device", "show", uuid, "-f", "json")
		if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.BootDevice != "pxe" || shown.Persistent == nil || *shown.Persistent != c.persistent {
			t.Errorf("after boot device set pxe (persistent %v), Ironic shows %s (%v)", c.persistent, out, err)
		}
		data, err := bootParam5(t.Context(), m, "17")
		if err != nil {
			t.Fatal(err)
		}
		var b0, b1 byte
		if len(data) < 4 || !parseHexByte(data[0:2], &b0) || !parseHexByte(data[2:4], &b1) || b0&0xe0 != c.flags || b1 != 0x04 {
			t.Errorf("parameter 5 %s after Ironic's Redfish pxe (persistent %v): want valid/persistent/EFI %02x, PXE 04", data, c.persistent, c.flags)
		}
	}

	ir.Baremetal(t, "node inspect", "node", "inspect", uuid)
	ir.WaitProvision(t, uuid, "manageable", 180*time.Second)
	var props struct {
		Properties map[string]any `json:"properties"`
	}
	out = ir.Baremetal(t, "node show properties", "node", "show", uuid, "--fields", "properties", "-f", "json")
	if err := json.Unmarshal([]byte(out), &props); err != nil {
		t.Fatalf("node show output: %v", err)
	}
	p := props.Properties
	wantGB := m.Disk.SizeBytes>>30 - 1 // Ironic leaves a GiB for partitioning
	if toInt(p["cpus"]) != 2 || toInt(p["memory_mb"]) != 2048 || toInt(p["local_gb"]) != wantGB || p["cpu_arch"] != "x86_64" {
		t.Errorf("inspected properties %v, want cpus 2, memory_mb 2048, local_gb %d, cpu_arch x86_64", p, wantGB)
	}
	ports := ir.Baremetal(t, "port list", "port", "list", "--node", uuid, "-f", "value", "-c", "Address")
	if !strings.Contains(strings.ToLower(ports), strings.ToLower(m.MACs[0])) {
		t.Errorf("inspection created no port for %s: %q", m.MACs[0], ports)
	}

	ir.Baremetal(t, "node provide", "node", "provide", uuid)
	ir.WaitProvision(t, uuid, "available", 120*time.Second)
	t.Logf("Ironic calls against metalbed's Redfish:\n%s", ir.Calls.Summary())
}

// redfishDriverInfo is the driver_info of the redfish hardware type for
// machine m, from inventory.json's redfish fields: the Redfish service over
// HTTPS, verified with the CA file inventory.json names, at the address a
// provisioner on the machines' network uses (inside the boot network for
// real VMs, where Ironic then runs).
func redfishDriverInfo(t testing.TB, m inventoryNode) []string {
	t.Helper()
	rf := m.Redfish
	if rf == nil {
		t.Fatalf("inventory without redfish: %+v", m)
	}
	addr := cmp.Or(rf.BootNetworkAddress, rf.Address)
	ca, ok := rf.VerifyCA.(string)
	if !ok || !strings.HasPrefix(addr, "https://") {
		t.Fatalf("redfish %+v: want HTTPS with a CA file", rf)
	}
	return []string{"redfish_address=" + addr, "redfish_system_id=" + rf.SystemID,
		"redfish_username=" + rf.Username, "redfish_password=" + rf.Password, "redfish_verify_ca=" + ca}
}

// requireSushy skips (or fails under METALBED_INTEROP=required) when the
// system's Python cannot import sushy, the redfish hardware type's library.
func requireSushy(t testing.TB) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import sushy").Run(); err != nil {
		testenv.Unavailable(t, "sushy not importable by /usr/bin/python3: install the Debian package python3-sushy")
	}
}

func parseHexByte(s string, b *byte) bool {
	var v byte
	for _, c := range []byte(s) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return false
		}
	}
	*b = v
	return true
}

// toInt reads a JSON number or numeric string as Ironic returns
// properties (either, depending on the interface that set them).
func toInt(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		var n int64
		for _, c := range x {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int64(c-'0')
		}
		return n
	}
	return -1
}
