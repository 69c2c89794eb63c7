package iscsi_test

// The same deploy through the production wiring: service.Config.Netboot
// plugs the pxe boot and iscsi deploy interfaces into the real "ipmi"
// hardware type, whose power and management run the real ipmitool against
// metalbed's bmcemu, one BMC per machine on its own loopback address.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/service"
)

// bmcMachine is a machine as bmcemu drives it.
type bmcMachine struct{ m *machine }

func (b bmcMachine) PowerState(context.Context) (bool, error) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return b.m.power == provisioner.PowerOn, nil
}

func (b bmcMachine) Control(_ context.Context, a bmcemu.PowerAction) error {
	switch a {
	case bmcemu.PowerUp:
		on, _ := b.PowerState(context.Background())
		if !on {
			b.m.powerOn()
		}
	case bmcemu.PowerDown, bmcemu.SoftShutdown:
		b.m.stop()
		b.m.mu.Lock()
		b.m.power = provisioner.PowerOff
		b.m.mu.Unlock()
	case bmcemu.PowerCycle, bmcemu.HardReset:
		on, _ := b.PowerState(context.Background())
		if !on && a == bmcemu.HardReset {
			return errors.New("powered off")
		}
		b.m.powerOn()
	default:
		return fmt.Errorf("power action %d not supported", a)
	}
	return nil
}

func (b bmcMachine) BootFlags(context.Context) ([5]byte, error) {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	return b.m.flags, nil
}

// SetBootFlags stores parameter 5 and the override firmware will follow.
func (b bmcMachine) SetBootFlags(_ context.Context, f [5]byte) error {
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	b.m.flags = f
	dev := ""
	if f[0]&0x80 != 0 {
		switch f[1] >> 2 & 0x0f {
		case 1:
			dev = "pxe"
		case 2:
			dev = "disk"
		}
	}
	b.m.bootDev = drivers.BootDevice{Device: dev, Persistent: f[0]&0x40 != 0}
	return nil
}

func (bmcMachine) AttachConsole(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("no serial console on this test machine")
}

func (bmcMachine) Subscribe(func(bmcemu.MachineEvent)) func() { return func() {} }

// TestDeployThroughIPMI deploys a uefi local-boot node and undeploys it
// (with automated cleaning) through ipmitool and bmcemu.
func TestDeployThroughIPMI(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	part, _ := instanceImages(t)
	dir := t.TempDir()
	b := &bed{t: t, tftpRoot: filepath.Join(dir, "tftp"), files: filepath.Join(dir, "files"),
		bmc: &bmc{machines: map[string]*machine{}}, milestones: map[string][]string{}}
	b.writeFiles()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	svc, err := service.New(service.Config{
		StateDir: filepath.Join(dir, "state"), Hostname: "ipmi-conductor", PowerSyncInterval: -1,
		IPMI: drivers.IPMIConfig{
			Client: drivers.ClientIPMITool, MinCommandInterval: 10 * time.Millisecond,
			PollInterval: 100 * time.Millisecond, PowerTimeout: 20 * time.Second,
		},
		Netboot: &service.Netboot{
			TFTPRoot: b.tftpRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"), APIURL: b.url,
			Hosts: &dhcp.StaticHosts{}, NotifyDelay: -1,
		},
		Milestone: b.milestone,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.serve(svc, ln)

	// The machine and its BMC.
	m := newMachine(t, b.tftpRoot)
	conn, err := net.ListenPacket("udp", net.JoinHostPort(m.ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bmcemu.New(bmcemu.Config{Machine: bmcMachine{m}, Name: "ipmi0", Username: "admin", Password: "password"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, conn) }()
	t.Cleanup(func() { cancel(); <-done })
	port := conn.LocalAddr().(*net.UDPAddr).Port

	var n nodeView
	b.mustCall("POST", "/v1/nodes", map[string]any{
		"name": "ipmi0", "driver": "ipmi", "deploy_interface": "iscsi", "boot_interface": "pxe",
		"automated_clean": true,
		"driver_info": map[string]any{
			"ipmi_address": m.ip.String(), "ipmi_port": port, "ipmi_username": "admin", "ipmi_password": "password",
			"deploy_kernel": filepath.Join(b.files, "deploy_kernel"), "deploy_ramdisk": filepath.Join(b.files, "deploy_ramdisk"),
		},
		"properties": map[string]any{"capabilities": "boot_mode:uefi,boot_option:local"},
	}, &n)
	uuid := n.UUID
	m.nodeUUID = uuid
	b.bmc.mu.Lock()
	b.bmc.machines[uuid] = m // for failure dumps only: the BMC drives it
	b.bmc.mu.Unlock()
	b.mustCall("POST", "/v1/ports", map[string]any{"node_uuid": uuid, "address": m.mac(), "pxe_enabled": true}, nil)
	b.provision(uuid, "manage")
	b.waitState(uuid, "manageable")
	// provide cleans: the ramdisk boots and the empty disk is wiped.
	b.provision(uuid, "provide")
	b.waitState(uuid, "available")

	b.setInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1})
	start := time.Now()
	b.provision(uuid, "active")
	n = b.waitState(uuid, "active")
	t.Logf("ipmi + iscsi uefi local boot deploy of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	in := inspect(t, m)
	if in.ESP == 0 || !in.ESPLoader || n.DriverInternalInfo["root_uuid_or_disk_id"] != part.RootUUID {
		t.Errorf("deployed disk: ESP %d loader %t, root %v", in.ESP, in.ESPLoader, n.DriverInternalInfo["root_uuid_or_disk_id"])
	}
	// The BMC stores what Ironic asked for: disk, persistent, EFI.
	m.mu.Lock()
	flags := m.flags
	m.mu.Unlock()
	if flags[0]&0xe0 != 0xe0 || flags[1]>>2&0x0f != 2 {
		t.Errorf("boot flags % x, want valid persistent EFI disk", flags)
	}
	if booted := m.bootedList(); booted[len(booted)-1] != "disk" {
		t.Errorf("boots %q, want the last from disk", booted)
	}

	b.provision(uuid, "deleted")
	n = b.waitState(uuid, "available")
	if in := inspect(t, m); in.Layout.Label != "" {
		t.Errorf("partition table %q left after cleaning", in.Layout.Label)
	}
	if n.PowerState == nil || *n.PowerState != "power off" {
		t.Errorf("power %v after cleaning", n.PowerState)
	}
	ms := strings.Join(b.milestonesOf(uuid), ",")
	for _, k := range []string{"prepare", "power on", "pass_deploy_info", "iscsi login", "image written", "iscsi logout",
		"notify", "bootloader", "reboot", "active", "disk wiped"} {
		if !strings.Contains(ms, k) {
			t.Errorf("milestone %q missing: %s", k, ms)
		}
	}
}
