package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms"
)

// TestRealIronicDrivesMetalbedBMCs points a REAL standalone Ironic 21.4
// (Debian ironic-api + ironic-conductor, ipmi hardware type, ipmitool
// power and management) at the BMCs of `metalbed up` and drives them with
// the real `baremetal` CLI: enrolment with cipher suites 17, 3 and none,
// manage, validate, power on/off (checked independently with ipmitool),
// persistent and one-time PXE in BIOS and UEFI mode (Ironic's raw
// 0x00 0x08 0x05 0xe0 … in UEFI), and provide. It logs how long every
// Ironic call and every ipmitool command the conductor ran took; it asserts
// no timings.
func TestRealIronicDrivesMetalbedBMCs(t *testing.T) {
	requireIronic(t)
	bin := buildMetalbed(t)
	fleet := startFleet(t, bin, 2)
	ir := startIronic(t, IronicOptions{})
	t.Logf("real Ironic ready (API answering, conductor alive) in %s s", ir.StartSeconds)

	cases := []struct {
		name    string
		suite   string // ipmi_cipher_suite, "" = not set (ipmitool's own choice)
		machine int
	}{
		{"cipher-suite-17", "17", 0},
		{"cipher-suite-3", "3", 1},
		{"cipher-suite-unset", "", 0}, // node-0 again, once the first node is deleted
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			driveNodeThroughIronic(t, ir, fleet.Inventory.Nodes[c.machine], c.suite)
		})
	}

	t.Logf("Ironic calls against metalbed BMCs (baremetal CLI wall time, incl. ~1 s of Python start-up; waits polled over REST):\n%s", ir.Calls.Summary())
	cmds := ir.IpmitoolCommands(t)
	t.Logf("ipmitool commands the conductor ran against metalbed BMCs:\n%s", IpmitoolSummary(cmds))
	for _, c := range cmds {
		if c.Exit != 0 {
			t.Errorf("the conductor's ipmitool %q (port %d, -C %q) exited %d", c.Command, c.Port, c.Suite, c.Exit)
		}
	}
}

// driveNodeThroughIronic enrols one metalbed machine in Ironic and walks it
// through manage, validate, power, boot device and provide, then deletes it.
func driveNodeThroughIronic(t *testing.T, ir *Ironic, m inventoryNode, suite string) {
	name := m.Name + "-cs" + suite
	if suite == "" {
		name = m.Name + "-cs-unset"
	}
	args := []string{"node", "create", "--driver", "ipmi", "--name", name,
		"--boot-interface", "pxe", "--deploy-interface", "direct",
		"--driver-info", "ipmi_address=" + m.BMC.Address,
		"--driver-info", fmt.Sprintf("ipmi_port=%d", m.BMC.Port),
		"--driver-info", "ipmi_username=" + m.BMC.Username,
		"--driver-info", "ipmi_password=" + m.BMC.Password,
		"-f", "json"}
	if suite != "" {
		args = append(args, "--driver-info", "ipmi_cipher_suite="+suite)
	}
	var created struct {
		UUID           string `json:"uuid"`
		ProvisionState string `json:"provision_state"`
	}
	if err := json.Unmarshal([]byte(ir.Baremetal(t, "node create", args...)), &created); err != nil {
		t.Fatalf("node create output: %v", err)
	}
	if created.ProvisionState != "enroll" {
		t.Fatalf("new node in %q, want enroll", created.ProvisionState)
	}
	uuid := created.UUID
	t.Cleanup(func() {
		// Whatever state a failure left it in, the node goes, so the next
		// case can enrol the same machine (t.Context is over by now).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := ir.Node(ctx, uuid); errors.Is(err, errNotFound) {
			return // deleted by the case itself
		}
		if _, err := ir.TryBaremetal(ctx, "node delete", "node", "delete", uuid); err == nil {
			return
		}
		_, _ = ir.TryBaremetal(ctx, "node maintenance set", "node", "maintenance", "set", uuid)
		if _, err := ir.TryBaremetal(ctx, "node delete", "node", "delete", uuid); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ir.Baremetal(t, "port create", "port", "create", "--node", uuid, m.MACs[0])

	// manage: Ironic validates power and management and reads the power state.
	ir.Baremetal(t, "node manage", "node", "manage", uuid)
	n := ir.WaitProvision(t, uuid, "manageable", 120*time.Second)
	if got := str(n.PowerState); got != "power off" && got != "power on" {
		t.Fatalf("after manage, power_state %s: Ironic could not read the BMC", got)
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
		if (v.Interface == "power" || v.Interface == "management") && (v.Result == nil || !*v.Result) {
			t.Errorf("node validate: %s is not True: %s", v.Interface, v.Reason)
		}
	}

	// Power on through Ironic, then ask the BMC ourselves.
	ir.Baremetal(t, "node power on", "node", "power", "on", uuid)
	ir.WaitPower(t, uuid, "power on", 120*time.Second)
	assertChassisPower(t, m, suite, "on")
	ir.Baremetal(t, "node power off", "node", "power", "off", uuid)
	ir.WaitPower(t, uuid, "power off", 120*time.Second)
	assertChassisPower(t, m, suite, "off")

	// BIOS: persistent PXE, where vbmc and ipmi_sim lose the persistent bit;
	// then a one-time PXE.
	checkBootDevice(t, ir, m, suite, uuid, true, "c004")
	checkBootDevice(t, ir, m, suite, uuid, false, "8004")

	// UEFI: Ironic sends the raw Set System Boot Options itself, EFI bit set.
	ir.Baremetal(t, "node set capabilities", "node", "set", uuid, "--property", "capabilities=boot_mode:uefi")
	checkBootDevice(t, ir, m, suite, uuid, true, "e004")
	checkBootDevice(t, ir, m, suite, uuid, false, "a004")
	ir.Baremetal(t, "node unset capabilities", "node", "unset", uuid, "--property", "capabilities")

	ir.Baremetal(t, "node provide", "node", "provide", uuid)
	ir.WaitProvision(t, uuid, "available", 120*time.Second)
	ir.Baremetal(t, "node delete", "node", "delete", uuid)
}

// assertChassisPower checks the machine's power with ipmitool against its
// BMC, independently of Ironic.
func assertChassisPower(t *testing.T, m inventoryNode, suite, want string) {
	t.Helper()
	out, err := ipmitool(t.Context(), m, suite, "power", "status")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "Chassis Power is "+want {
		t.Fatalf("%s: ipmitool power status says %q after Ironic's power %s", m.Name, got, want)
	}
}

// checkBootDevice sets PXE through Ironic (persistent or one-time), reads
// it back through Ironic, and reads parameter 5 from the BMC with ipmitool:
// its first two data bytes must be wantHex (flags and device selector).
func checkBootDevice(t *testing.T, ir *Ironic, m inventoryNode, suite, uuid string, persistent bool, wantHex string) {
	t.Helper()
	args := []string{"node", "boot", "device", "set", uuid, "pxe"}
	label := "node boot device set pxe"
	if persistent {
		args = append(args, "--persistent")
		label += " --persistent"
	}
	ir.Baremetal(t, label, args...)
	var shown struct {
		BootDevice string `json:"boot_device"`
		Persistent *bool  `json:"persistent"`
	}
	out := ir.Baremetal(t, "node boot device show", "node", "boot", "device", "show", uuid, "-f", "json")
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("node boot device show output %q: %v", out, err)
	}
	if shown.BootDevice != "pxe" || shown.Persistent == nil || *shown.Persistent != persistent {
		t.Errorf("%s: after boot device set pxe (persistent %v), Ironic shows %s", m.Name, persistent, out)
	}
	data, err := bootParam5(t.Context(), m, suite)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(data, wantHex) {
		t.Errorf("%s: boot flags (parameter 5) %s after Ironic set pxe (persistent %v), want %s…", m.Name, data, persistent, wantHex)
	}
}

// TestRealIronicDeploysMetalbedMachine is issue 6 part 5: a REAL Ironic
// 21.4 (ipmi hardware type, direct deploy, automated cleaning) deploys a
// whole-disk image to metalbed simulated machines through metalbed's
// IPA-compatible agent and undeploys them: ipxe boot in BIOS and UEFI, pxe
// boot (PXELINUX) in BIOS. The machines' DHCP/TFTP/HTTP come from `metalbed
// netboot serve` (Ironic's dhcp_provider = none); the deploy kernel is the
// gokrazy bzImage and the ramdisk metalbed's initramfs.
//
// The machines are those of `metalbed up --no-provisioner --netboot-dhcp`:
// told by Ironic (through their BMCs) to network-boot, their own NIC ROMs
// ask the netboot server, run Ironic's boot files and the agent; nothing
// boots in this process.
//
// Asserted per machine: provide cleans through the agent
// (erase_devices_metadata) to available; deploy reaches wait call-back with
// a boot config whose kernel command line carries ipa-api-url; the NIC ROM
// runs Ironic's boot files; the agent looks up, heartbeats and runs Ironic's
// deploy commands; Ironic reaches active; the machine's disk holds the image
// byte for byte; undeploy cleans again and returns it to available.
func TestRealIronicDeploysMetalbedMachine(t *testing.T) {
	requireIronic(t)
	bin := buildMetalbed(t)

	roots := t.TempDir()
	tftpRoot, httpRoot := filepath.Join(roots, "tftpboot"), filepath.Join(roots, "httpboot")
	for _, d := range []string{tftpRoot, filepath.Join(httpRoot, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Two netboot servers on the same roots, as two dnsmasq set-ups would
	// be: one hands iPXE clients Ironic's boot.ipxe (the ipxe boot
	// interface), the other hands everyone pxelinux.0 over TFTP (the pxe boot
	// interface). Ironic's http_url is the first one's HTTP address. The
	// machines start after them (their ROMs must know where to ask), so
	// both answer any MAC, from leases apart.
	nbIPXE := startNetboot(t, bin, NetbootOptions{TFTPRoot: tftpRoot, HTTPRoot: httpRoot,
		IPXEScriptPath: "boot.ipxe", AnswerUnknown: true, Range: "127.0.0.100-127.0.0.149"})
	nbPXE := startNetboot(t, bin, NetbootOptions{TFTPRoot: tftpRoot, HTTPRoot: httpRoot,
		AnswerUnknown: true, Range: "127.0.0.150-127.0.0.199"})
	fleetOf := func(nb *Netboot, topology string) []inventoryNode {
		path := filepath.Join(t.TempDir(), "topology.yaml")
		if err := os.WriteFile(path, []byte(topology), 0o644); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(topology, "- name:")
		f := startFleet(t, bin, n, "--config", path, "--netboot-dhcp", nb.DHCPAddr, "--netboot-tftp-port", nb.TFTPPort(t))
		return f.Inventory.Nodes
	}
	ipxeNodes := fleetOf(nbIPXE, "machines:\n  - name: ipxe-bios\n    boot_mode: bios\n  - name: ipxe-uefi\n    boot_mode: uefi\n")
	pxeNodes := fleetOf(nbPXE, "machines:\n  - name: pxe-bios\n    boot_mode: bios\n")
	ir := startIronic(t, IronicOptions{HTTPURL: nbIPXE.HTTPURL, HTTPRoot: httpRoot, TFTPRoot: tftpRoot, AutomatedClean: true})
	t.Logf("netboot serve (ipxe): dhcp %s tftp %s http %s; (pxe): dhcp %s tftp %s; Ironic %s (ready in %s s)",
		nbIPXE.DHCPAddr, nbIPXE.TFTPAddr, nbIPXE.HTTPURL, nbPXE.DHCPAddr, nbPXE.TFTPAddr, ir.APIURL, ir.StartSeconds)

	cases := []struct {
		bootIface string
		mode      vms.BootMode
		machine   inventoryNode
	}{
		{"ipxe", vms.BIOS, ipxeNodes[0]},
		{"ipxe", vms.UEFI, ipxeNodes[1]},
		{"pxe", vms.BIOS, pxeNodes[0]},
	}
	for _, c := range cases {
		t.Run(c.bootIface+"-whole-disk-"+string(c.mode), func(t *testing.T) {
			if c.machine.BootMode != string(c.mode) {
				t.Fatalf("%s runs in %s mode, want %s", c.machine.Name, c.machine.BootMode, c.mode)
			}
			if c.bootIface == "pxe" {
				if _, err := os.Stat(filepath.Join(tftpRoot, "pxelinux.0")); err != nil {
					if testenv.InteropRequired() {
						t.Fatalf("Ironic placed no pxelinux.0 in its tftp_root (Debian packages pxelinux, syslinux-common): %v", err)
					}
					t.Skipf("Ironic placed no pxelinux.0 in its tftp_root: install the Debian packages pxelinux and syslinux-common")
				}
			}
			art := buildDeployArtifacts(t, bin, ir.FilesDir, string(c.mode))
			imageName := "images/" + filepath.Base(art.Image)
			if err := os.Rename(art.Image, filepath.Join(httpRoot, imageName)); err != nil {
				t.Fatal(err)
			}
			deployThroughIronic(t, ir, c.machine, art, nbIPXE.HTTPURL+"/"+imageName, ipmiEnrolment(ir, c.machine, c.bootIface, c.mode))
		})
	}
	t.Logf("Ironic calls:\n%s", ir.Calls.Summary())
}

// ironicEnrolment is how a machine is enrolled in Ironic for a deploy
// through the direct deploy interface.
type ironicEnrolment struct {
	// Driver is the hardware type (ipmi or redfish), DriverInfo its
	// driver_info as key=value (the BMC's address and credentials, and
	// anything the boot interface needs besides deploy_kernel and
	// deploy_ramdisk).
	Driver     string
	DriverInfo []string
	// BootIface is the boot interface: pxe, ipxe or redfish-virtual-media.
	BootIface string
	Mode      vms.BootMode
	// CheckBoot checks what Ironic prepared for the ramdisk's boot (its
	// PXE config, its ISO) once the deploy waits for the agent.
	CheckBoot func(t *testing.T, uuid string)
	// CheckActive, when set, checks what is left of the ramdisk's boot
	// once the node is active.
	CheckActive func(t *testing.T, uuid string)
}

// ipmiEnrolment enrols m through its IPMI BMC (cipher suite 17) with a
// network boot interface (pxe or ipxe), checking the boot config Ironic
// writes for the machine's MAC.
func ipmiEnrolment(ir *Ironic, m inventoryNode, bootIface string, mode vms.BootMode) ironicEnrolment {
	return ironicEnrolment{
		Driver: "ipmi", BootIface: bootIface, Mode: mode,
		DriverInfo: []string{"ipmi_address=" + m.BMC.Address, fmt.Sprintf("ipmi_port=%d", m.BMC.Port),
			"ipmi_username=" + m.BMC.Username, "ipmi_password=" + m.BMC.Password, "ipmi_cipher_suite=17"},
		CheckBoot: func(t *testing.T, uuid string) { checkNetbootConfig(t, ir, m, bootIface) },
	}
}

// checkNetbootConfig reads what Ironic handed the machine: its PXE or
// iPXE config for this MAC, with the deploy kernel's command line.
func checkNetbootConfig(t *testing.T, ir *Ironic, m inventoryNode, bootIface string) {
	t.Helper()
	mac := strings.ReplaceAll(strings.ToLower(m.MACs[0]), ":", "-")
	cfgPath := filepath.Join(ir.HTTPRoot, "pxelinux.cfg", mac)
	if bootIface == "pxe" {
		cfgPath = filepath.Join(ir.TFTPRoot, "pxelinux.cfg", "01-"+mac)
	}
	bootCfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatalf("Ironic wrote no %s config for %s: %v", bootIface, m.MACs[0], err)
	}
	t.Logf("Ironic's %s config for %s (%s):\n%s", bootIface, m.MACs[0], cfgPath, bootCfg)
	if bootIface == "ipxe" {
		if _, err := os.Stat(filepath.Join(ir.HTTPRoot, "boot.ipxe")); err != nil {
			t.Errorf("Ironic wrote no boot.ipxe in its http_root: %v", err)
		}
	}
	if want := "ipa-api-url=" + ir.APIURL; !strings.Contains(string(bootCfg), want) {
		t.Fatalf("Ironic's %s config lacks %q", bootIface, want)
	}
}

// deployThroughIronic enrols machine m as e says with the direct deploy
// interface, cleans it to available, deploys the whole-disk image at
// imageURL with real Ironic, checks the disk, and undeploys (cleaning
// again) back to available.
func deployThroughIronic(t *testing.T, ir *Ironic, m inventoryNode, art DeployArtifacts, imageURL string, e ironicEnrolment) {
	var created struct {
		UUID string `json:"uuid"`
	}
	args := []string{"node", "create", "--driver", e.Driver, "--name", m.Name,
		"--boot-interface", e.BootIface, "--deploy-interface", "direct"}
	for _, kv := range append(e.DriverInfo, "deploy_kernel=file://"+art.Kernel, "deploy_ramdisk=file://"+art.Ramdisk) {
		args = append(args, "--driver-info", kv)
	}
	args = append(args, "--property", "capabilities=boot_mode:"+string(e.Mode), "-f", "json")
	out := ir.Baremetal(t, "node create", args...)
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("node create output: %v", err)
	}
	uuid := created.UUID
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := ir.Node(ctx, uuid); errors.Is(err, errNotFound) {
			return
		}
		_, _ = ir.TryBaremetal(ctx, "node maintenance set", "node", "maintenance", "set", uuid)
		if _, err := ir.TryBaremetal(ctx, "node delete", "node", "delete", uuid); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ir.Baremetal(t, "port create", "port", "create", "--node", uuid, m.MACs[0])

	logConsole := func() {
		raw, _ := os.ReadFile(m.ConsoleLog)
		t.Logf("%s console.log:\n%s", m.Name, tailLines(string(raw), 60))
	}

	ir.Baremetal(t, "node manage", "node", "manage", uuid)
	ir.WaitProvision(t, uuid, "manageable", 120*time.Second)
	// With automated cleaning on, provide boots the ramdisk and cleans
	// through the agent (erase_devices_metadata).
	ir.Baremetal(t, "node provide", "node", "provide", uuid)
	if n := ir.WaitNode(t, uuid, "provide (cleaning)", 10*time.Minute, func(n IronicNode) bool {
		return n.TargetProvisionState == nil
	}); n.ProvisionState != "available" {
		logConsole()
		t.Fatalf("provide: provision_state %s (last_error %s)", n.ProvisionState, str(n.LastError))
	}
	ir.Baremetal(t, "node set instance-info", "node", "set", uuid,
		"--instance-info", "image_source="+imageURL,
		"--instance-info", "image_checksum="+art.ImageMD5)

	ir.Baremetal(t, "node deploy", "node", "deploy", uuid)
	n := ir.WaitNode(t, uuid, "deploy leaves deploying", 180*time.Second, func(n IronicNode) bool {
		return n.ProvisionState != "deploying"
	})
	if n.ProvisionState != "wait call-back" && n.ProvisionState != "active" {
		t.Fatalf("node deploy: provision_state %s, want wait call-back (last_error: %s)", n.ProvisionState, str(n.LastError))
	}

	e.CheckBoot(t, uuid)

	// The machine boots Ironic's config; the ramdisk's
	// agent looks the node up, heartbeats and runs Ironic's commands; Ironic
	// powers the machine off, sets disk boot and powers it on.
	n = ir.WaitNode(t, uuid, "wait call-back -> active (agent deploy)", 10*time.Minute, func(n IronicNode) bool {
		return n.ProvisionState == "active" || n.ProvisionState == "deploy failed"
	})
	if n.ProvisionState != "active" {
		logConsole()
		t.Fatalf("deploy: provision_state %s (last_error %s)", n.ProvisionState, str(n.LastError))
	}
	t.Logf("real Ironic deployed %s to active", m.Name)
	raw, _ := os.ReadFile(m.ConsoleLog)
	t.Logf("%s console.log after Ironic's reboot to the instance:\n%s", m.Name, tailLines(string(raw), 8))
	if got := diskPrefixMD5(t, m.Disk.Path, art.ImageSize); got != art.ImageMD5 {
		t.Errorf("%s's disk holds %s over the image's %d bytes, want the image's md5 %s", m.Name, got, art.ImageSize, art.ImageMD5)
	}
	if e.CheckActive != nil {
		e.CheckActive(t, uuid)
	}

	// Undeploy: with automated cleaning on, the ramdisk boots again and
	// cleans through the agent before the node is available.
	ir.Baremetal(t, "node undeploy", "node", "undeploy", uuid)
	if n := ir.WaitNode(t, uuid, "undeploy (cleaning)", 10*time.Minute, func(n IronicNode) bool {
		return n.TargetProvisionState == nil
	}); n.ProvisionState != "available" {
		logConsole()
		t.Fatalf("undeploy: provision_state %s (last_error %s)", n.ProvisionState, str(n.LastError))
	}
	if testing.Verbose() {
		logConsole()
	}
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
