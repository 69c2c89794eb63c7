package deploy_test

// The iscsi deploy through the production wiring: service.Config.Netboot
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
	"testing"
	"time"

	"github.com/metalbed/metalbed/bmcemu"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/internal/deploytest"
	"github.com/metalbed/metalbed/provisioner/service"
)

// bmcMachine is a machine as bmcemu drives it.
type bmcMachine struct{ m *deploytest.Machine }

func (b bmcMachine) PowerState(context.Context) (bool, error) {
	return b.m.PowerState() == "power on", nil
}

func (b bmcMachine) Control(_ context.Context, a bmcemu.PowerAction) error {
	switch a {
	case bmcemu.PowerUp:
		b.m.PowerOnIfOff()
	case bmcemu.PowerDown, bmcemu.SoftShutdown:
		b.m.PowerOff()
	case bmcemu.PowerCycle, bmcemu.HardReset:
		if on, _ := b.PowerState(context.Background()); !on && a == bmcemu.HardReset {
			return errors.New("powered off")
		}
		b.m.PowerOn()
	default:
		return fmt.Errorf("power action %d not supported", a)
	}
	return nil
}

func (b bmcMachine) BootFlags(context.Context) ([5]byte, error) { return b.m.BootFlags(), nil }

// SetBootFlags stores parameter 5 and the override firmware will follow.
func (b bmcMachine) SetBootFlags(_ context.Context, f [5]byte) error {
	dev := ""
	if f[0]&0x80 != 0 {
		switch f[1] >> 2 & 0x0f {
		case 1:
			dev = "pxe"
		case 2:
			dev = "disk"
		}
	}
	b.m.SetBootFlags(f, drivers.BootDevice{Device: dev, Persistent: f[0]&0x40 != 0})
	return nil
}

func (bmcMachine) AttachConsole(context.Context) (io.ReadWriteCloser, error) {
	return nil, errors.New("no serial console on this test machine")
}

func (bmcMachine) Subscribe(func(bmcemu.MachineEvent)) func() { return func() {} }

func (bmcMachine) Hardware() bmcemu.Hardware { return bmcemu.Hardware{Name: "deploy-test"} }

// TestDeployThroughIPMI deploys a uefi local-boot node and undeploys it
// (with automated cleaning) through ipmitool and bmcemu.
func TestDeployThroughIPMI(t *testing.T) {
	testenv.RequireTool(t, "ipmitool", "ipmitool")
	part, _ := images.Get(t)
	b := deploytest.NewBed(t, deploytest.Options{Variant: iscsiVariant(), Service: func(b *deploytest.Bed) service.Config {
		return service.Config{
			Hostname: "ipmi-conductor",
			IPMI: drivers.IPMIConfig{
				Client: drivers.ClientIPMITool, MinCommandInterval: 10 * time.Millisecond,
				PollInterval: 100 * time.Millisecond, PowerTimeout: 20 * time.Second,
			},
			Netboot: &service.Netboot{
				TFTPRoot: b.TFTPRoot, TFTPServer: netip.MustParseAddr("127.0.0.1"), APIURL: b.URL,
				Hosts: &dhcp.StaticHosts{}, NotifyDelay: -1,
			},
		}
	}})

	// The machine and its BMC.
	m := deploytest.NewMachine(t, b.ConfigRoot, iscsiRamdisk)
	conn, err := net.ListenPacket("udp", net.JoinHostPort(m.IP().String(), "0"))
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

	var n deploytest.NodeView
	b.MustCall("POST", "/v1/nodes", map[string]any{
		"name": "ipmi0", "driver": "ipmi", "deploy_interface": iscsi.Name, "boot_interface": "pxe",
		"automated_clean": true,
		"driver_info": map[string]any{
			"ipmi_address": m.IP().String(), "ipmi_port": port, "ipmi_username": "admin", "ipmi_password": "password",
			"deploy_kernel": b.File("deploy_kernel"), "deploy_ramdisk": b.File("deploy_ramdisk"),
		},
		"properties": map[string]any{"capabilities": "boot_mode:uefi,boot_option:local"},
	}, &n)
	uuid := n.UUID
	b.BMC.Attach(uuid, m) // names the machine's node; the real BMC drives it
	b.MustCall("POST", "/v1/ports", map[string]any{"node_uuid": uuid, "address": m.MAC(), "pxe_enabled": true}, nil)
	b.Provision(uuid, "manage")
	b.WaitState(uuid, "manageable")
	// provide cleans: the ramdisk boots and the empty disk is wiped.
	b.Provision(uuid, "provide")
	b.WaitState(uuid, "available")

	b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1})
	start := time.Now()
	b.Provision(uuid, "active")
	n = b.WaitState(uuid, "active")
	t.Logf("ipmi + iscsi uefi local boot deploy of a %d MiB partition image: %.2fs", part.Size>>20, time.Since(start).Seconds())
	in := m.Inspect(t)
	if in.ESP == 0 || !in.ESPLoader || n.DriverInternalInfo["root_uuid_or_disk_id"] != part.RootUUID {
		t.Errorf("deployed disk: ESP %d loader %t, root %v", in.ESP, in.ESPLoader, n.DriverInternalInfo["root_uuid_or_disk_id"])
	}
	// The BMC stores what Ironic asked for: disk, persistent, EFI.
	if flags := m.BootFlags(); flags[0]&0xe0 != 0xe0 || flags[1]>>2&0x0f != 2 {
		t.Errorf("boot flags % x, want valid persistent EFI disk", flags)
	}
	lastBootIsDisk(t, m)

	b.Provision(uuid, "deleted")
	n = b.WaitState(uuid, "available")
	if in := m.Inspect(t); in.Layout.Label != "" {
		t.Errorf("partition table %q left after cleaning", in.Layout.Label)
	}
	if n.Power() != "power off" {
		t.Errorf("power %q after cleaning", n.Power())
	}
	milestonesInclude(t, b, uuid, "conductor.prepare", "conductor.power_on", "conductor.pass_deploy_info", "conductor.iscsi_login", "conductor.image_written", "conductor.iscsi_logout",
		"conductor.notify", "conductor.bootloader", "conductor.reboot", "conductor.active", "conductor.disk_wiped")
}
