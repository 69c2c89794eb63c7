package deploy_test

// End to end: the REAL conductor and API (provisioner/service on
// 127.0.0.1:0) deploy nodes with the real "pxe" (or "ipxe") boot interface
// and each deploy interface, a row of the tables below:
//
//   - "iscsi": the REAL bash-era deploy ramdisk (vms/ramdisk) runs
//     in-process as the machine, exporting its sparse-file disk with the
//     REAL iscsitarget; the conductor writes the image over iSCSI.
//   - "direct": the REAL agent (vms/ramdisk/agent) runs in-process as the
//     machine's ramdisk; it looks the node up, heartbeats, and downloads
//     the image from a real HTTP server serving the boot interface's HTTP
//     root, where the deploy interface publishes it.
//
// Each machine runs on its own random 127.x address. The machines' power
// and management are deploytest's fake BMC (the IPMI path is covered by
// TestDeployThroughIPMI and provisioner/drivers' interop tests): power on
// from PXE reads the config the boot interface wrote, exactly the file the
// firmware would fetch, and boots its default label. The provisioner never
// imports vms in production code; only these tests do, to run the real
// ramdisks as the peers.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/iscsitarget"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/deploy/direct"
	"github.com/metalbed/metalbed/provisioner/deploy/iscsi"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/internal/deploytest"
	"github.com/metalbed/metalbed/vms/ramdisk"
	"github.com/metalbed/metalbed/vms/ramdisk/agent"
)

// images are built once for the test binary.
var images deploytest.Images

func TestMain(m *testing.M) {
	code := m.Run()
	images.Remove()
	os.Exit(code)
}

// iscsiVariant is the "iscsi" deploy interface with the bash ramdisk.
func iscsiVariant() deploytest.Variant {
	return deploytest.Variant{
		Name: iscsi.Name,
		New: func(core deploy.Config, b *deploytest.Bed) (drivers.DeployInterface, error) {
			return iscsi.New(iscsi.Config{Config: core, ImagesDir: b.ImagesDir(), NotifyDelay: -1})
		},
		Ramdisk: iscsiRamdisk,
	}
}

// directVariant is the "direct" deploy interface with the agent.
func directVariant() deploytest.Variant {
	return deploytest.Variant{
		Name: direct.Name,
		New: func(core deploy.Config, b *deploytest.Bed) (drivers.DeployInterface, error) {
			core.DefaultBootMode = "bios"
			return direct.New(direct.Config{
				Config: core, APIURL: b.URL, HTTPRoot: b.HTTPRoot, HTTPURL: b.HTTPURL,
				PowerOffInterval: 20 * time.Millisecond, CommandWaitInterval: 50 * time.Millisecond,
				HTTPClient: &http.Client{Transport: b.Agents},
			})
		},
		Ramdisk: agentRamdisk,
	}
}

// ramdiskEnv is a machine as the ramdisk and the agent see it.
type ramdiskEnv struct{ m *deploytest.Machine }

type fileDev struct{ *os.File }

func (f fileDev) Size() int64 { return deploytest.DiskSize }

func (e ramdiskEnv) Disks(context.Context) ([]ramdisk.Disk, error) {
	if e.m.Faults().NoDisk {
		return nil, nil
	}
	return []ramdisk.Disk{{Name: "vda", SizeBytes: deploytest.DiskSize, Model: "metalbed SIMDISK", Serial: "disk0", Dev: fileDev{e.m.Disk()}}}, nil
}

func (e ramdiskEnv) Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(e.m.IP().String(), fmt.Sprint(port)))
}

// Reboot: the ramdisk asks for a reset; the conductor's reboot through
// the BMC follows and restarts the machine.
func (e ramdiskEnv) Reboot(context.Context) error { return nil }

// iscsiRamdisk runs the bash-era ramdisk, exporting the machine's disk
// with the real iSCSI target.
func iscsiRamdisk(ctx context.Context, m *deploytest.Machine, cmdline string) error {
	p, err := ramdisk.ParseCmdline(cmdline)
	if err != nil {
		return fmt.Errorf("deploy label: %w", err)
	}
	p.ClientIP = m.IP() // pxelinux's ipappend 3
	cfg := ramdisk.Config{
		Params: p, Env: ramdiskEnv{m}, Console: m.Console(), DiskWait: time.Second,
		Export: func(ctx context.Context, ln net.Listener, iqn string, dev ramdisk.BlockDevice) error {
			t, err := iscsitarget.New(iscsitarget.Config{IQN: iqn, Disk: dev, Size: dev.Size()})
			if err != nil {
				return err
			}
			err = t.Serve(ctx, ln)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	if berr := m.Faults().BootloaderErr; berr != nil {
		cfg.Bootloader = func(context.Context, ramdisk.Disk, string) (ramdisk.Installed, error) {
			return ramdisk.Installed{}, berr
		}
	}
	return ramdisk.Run(ctx, cfg)
}

// agentRamdisk runs the agent; its standby.power_off powers the machine
// off from its OS.
func agentRamdisk(ctx context.Context, m *deploytest.Machine, cmdline string) error {
	p, err := ramdisk.ParseCmdline(cmdline)
	if err != nil {
		return fmt.Errorf("deploy label: %w", err)
	}
	if !p.AgentMode() {
		return fmt.Errorf("deploy label without ipa-api-url: %s", cmdline)
	}
	acfg, err := agent.ConfigFromParams(p)
	if err != nil {
		return fmt.Errorf("agent parameters: %w", err)
	}
	hw := agent.Hardware{
		NICs:        []agent.NIC{{Name: "eth0", MAC: m.MAC(), IPv4: m.IP().String(), HasCarrier: true}},
		CPU:         agent.CPU{ModelName: "test CPU", Count: 1, Architecture: "x86_64"},
		MemoryBytes: 2 << 30, PhysicalMB: 2048, BMCAddress: "0.0.0.0", BootMode: "bios",
		PXEInterface: m.MAC(), Hostname: "m",
	}
	powerOff := func(ctx context.Context) error {
		m.PowerOffFromOS()
		<-ctx.Done()
		return nil
	}
	acfg.LocalIP = m.IP()
	acfg.Env = agent.EnvFrom(ramdiskEnv{m}, hw, powerOff)
	acfg.Console = m.Console()
	acfg.MinDiskBytes = -1
	acfg.TempDir = m.TempDir()
	return agent.Run(ctx, acfg)
}

// lastBootIsInstanceLabel checks the machine's last boot was the instance's
// PXE label with root=UUID of root.
func lastBootIsInstanceLabel(t *testing.T, m *deploytest.Machine, root string) {
	t.Helper()
	if last := m.LastBoot(); !strings.HasPrefix(last, "pxe boot ") || !strings.Contains(last, "root=UUID="+root) {
		t.Errorf("last boot %q, want the instance's boot label with root=UUID=%s (all: %q)", last, root, m.Booted())
	}
}

func lastBootIsDisk(t *testing.T, m *deploytest.Machine) {
	t.Helper()
	if last := m.LastBoot(); last != "disk" {
		t.Errorf("boots %q: want the last from disk", m.Booted())
	}
}

func milestonesInclude(t *testing.T, b *deploytest.Bed, uuid string, kinds ...string) {
	t.Helper()
	// The conductor records a state's milestone (conductor.active) just
	// after saving the state the test saw.
	all := func() bool {
		ms := b.Milestones(uuid)
		for _, k := range kinds {
			if !strings.Contains(ms, k) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !all() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ms := b.Milestones(uuid)
	for _, k := range kinds {
		if !strings.Contains(ms, k) {
			t.Errorf("milestone %q missing: %s", k, ms)
		}
	}
}

// TestDeployNetbootPartition: a partition image booted over the network:
// no bootloader, the instance's PXE config, root=UUID of the written root.
func TestDeployNetbootPartition(t *testing.T) {
	part, _ := images.Get(t)
	for _, tc := range []struct {
		variant    deploytest.Variant
		ii         map[string]any
		milestones []string
		check      func(t *testing.T, b *deploytest.Bed, uuid string, m *deploytest.Machine)
	}{
		{iscsiVariant(), map[string]any{"image_checksum": part.MD5, "root_gb": "1", "swap_mb": 64},
			[]string{"conductor.prepare", "conductor.pass_deploy_info", "conductor.iscsi_login", "conductor.image_written", "conductor.iscsi_logout", "conductor.notify", "conductor.reboot", "conductor.active"},
			func(t *testing.T, b *deploytest.Bed, uuid string, m *deploytest.Machine) {
				// Ironic's order: swap, then root last.
				in := m.Inspect(t)
				if p := in.Layout.Partitions; in.Layout.Label != "msdos" || len(p) != 2 || p[0].FSType != "swap" ||
					p[1].UUID != part.RootUUID || p[1].Size != 1<<30 {
					t.Errorf("disk layout after deploy: %+v", in.Layout)
				}
				if cfg, err := os.ReadFile(filepath.Join(b.TFTPRoot, uuid, "config")); err != nil || !strings.HasPrefix(string(cfg), "default boot") {
					t.Errorf("PXE config after deploy: %v\n%s", err, cfg)
				}
				// Undeploy: cleaning runs only with automated_clean; here it is off.
				b.Provision(uuid, "deleted")
				b.WaitState(uuid, "available")
				if _, err := os.Stat(filepath.Join(b.TFTPRoot, uuid)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("boot files left after undeploy: %v", err)
				}
			}},
		{directVariant(), map[string]any{"image_os_hash_algo": "sha256", "image_os_hash_value": part.SHA256, "root_gb": 1},
			[]string{"conductor.prepare", "conductor.power_on", "conductor.write_image", "conductor.image_written", "conductor.power_off", "conductor.reboot", "conductor.active"},
			func(t *testing.T, b *deploytest.Bed, uuid string, m *deploytest.Machine) {
				if in := m.Inspect(t); in.BootLoader != "" || in.Layout.Find("root") == nil || in.Layout.Find("root").UUID != part.RootUUID {
					t.Errorf("disk after a netboot deploy: loader %q layout %+v", in.BootLoader, in.Layout)
				}
			}},
	} {
		t.Run(tc.variant.Name, func(t *testing.T) {
			b := deploytest.NewBed(t, deploytest.Options{Variant: tc.variant})
			uuid, m := b.Enroll("nb0", "boot_mode:bios,boot_option:netboot", false)
			ii := map[string]any{"image_source": part.Path, "kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")}
			for k, v := range tc.ii {
				ii[k] = v
			}
			b.SetInstanceInfo(uuid, ii)
			start := time.Now()
			b.Provision(uuid, "active")
			n := b.WaitState(uuid, "active")
			t.Logf("%s netboot deploy of a %d MiB partition image: %.2fs", tc.variant.Name, part.Size>>20, time.Since(start).Seconds())
			if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
				t.Errorf("root_uuid_or_disk_id = %v, want the image's root UUID %s", got, part.RootUUID)
			}
			lastBootIsInstanceLabel(t, m, part.RootUUID)
			milestonesInclude(t, b, uuid, tc.milestones...)
			if ms := b.Milestones(uuid); strings.Contains(ms, "conductor.bootloader") {
				t.Errorf("bootloader installed for netboot: %s", ms)
			}
			tc.check(t, b, uuid, m)
		})
	}
}

// TestDeployLocalBoot: a partition image with its bootloader installed
// (by the ramdisk or the agent); the node then boots from disk.
func TestDeployLocalBoot(t *testing.T) {
	part, _ := images.Get(t)
	for _, tc := range []struct {
		variant deploytest.Variant
		mode    string
	}{
		{iscsiVariant(), "bios"},
		{iscsiVariant(), "uefi"},
		{directVariant(), "bios"},
	} {
		t.Run(tc.variant.Name+"/"+tc.mode, func(t *testing.T) {
			b := deploytest.NewBed(t, deploytest.Options{Variant: tc.variant})
			uuid, m := b.Enroll("lb-"+tc.mode, "boot_mode:"+tc.mode+",boot_option:local", false)
			b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": "sha256:" + part.SHA256,
				"root_gb": "1", "image_type": "partition"})
			start := time.Now()
			b.Provision(uuid, "active")
			n := b.WaitState(uuid, "active")
			t.Logf("%s local boot (%s) deploy of a %d MiB partition image: %.2fs", tc.variant.Name, tc.mode, part.Size>>20, time.Since(start).Seconds())
			if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != part.RootUUID {
				t.Errorf("root_uuid_or_disk_id = %v, want %s", got, part.RootUUID)
			}
			in := m.Inspect(t)
			switch tc.mode {
			case "bios":
				if in.BootLoader != "metalbed" || in.Layout.Label != "msdos" || in.Layout.Find("root") == nil || in.Layout.Find("root").UUID != part.RootUUID {
					t.Errorf("bios local boot: loader %q layout %+v", in.BootLoader, in.Layout)
				}
			case "uefi":
				if in.ESP == 0 || !in.ESPLoader || in.Layout.Label != "gpt" {
					t.Errorf("uefi local boot: ESP %d loader %t label %q", in.ESP, in.ESPLoader, in.Layout.Label)
				}
				if n.DriverInternalInfo["efi_system_partition_uuid"] == nil {
					t.Error("efi_system_partition_uuid not recorded")
				}
			}
			lastBootIsDisk(t, m)
			if dev := m.BootDevice(); dev.Device != "disk" || !dev.Persistent {
				t.Errorf("boot device %+v, want disk persistent", dev)
			}
			milestonesInclude(t, b, uuid, "conductor.prepare", "conductor.power_on", "conductor.image_written", "conductor.bootloader", "conductor.reboot", "conductor.active")
			if tc.variant.Name != direct.Name {
				return
			}
			if _, ok := n.DriverInternalInfo["agent_secret_token"]; ok {
				t.Error("agent token kept after the deploy")
			}
			if soft := m.SoftOffs(); soft != 1 {
				t.Errorf("%d soft power offs through the agent, want 1", soft)
			}
			// As Ironic 21.4 (agent-traffic.jsonl): install_bootloader goes
			// asynchronously and the command list is polled right after.
			calls := b.Agents.Calls()
			i := slices.Index(calls, "POST image.install_bootloader wait=false")
			if i < 0 || i+1 >= len(calls) || calls[i+1] != "GET /v1/commands/" {
				t.Errorf("agent calls %q: want image.install_bootloader with wait=false, then GET /v1/commands/", calls)
			}
			milestonesInclude(t, b, uuid, "conductor.image_cached", "conductor.write_image", "conductor.power_off")
		})
	}
}

// TestDeployWholeDisk: a whole-disk image, written as it is; the node
// boots from disk. The agent fetches an HTTP source itself.
func TestDeployWholeDisk(t *testing.T) {
	_, whole := images.Get(t)
	for _, tc := range []struct {
		variant deploytest.Variant
		ii      func(t *testing.T) map[string]any
		check   func(t *testing.T, n deploytest.NodeView, m *deploytest.Machine)
	}{
		{iscsiVariant(), func(*testing.T) map[string]any {
			return map[string]any{"image_source": whole.Path, "image_checksum": whole.MD5}
		}, func(t *testing.T, n deploytest.NodeView, m *deploytest.Machine) {
			if got := n.DriverInternalInfo["root_uuid_or_disk_id"]; got != whole.DiskID {
				t.Errorf("root_uuid_or_disk_id = %v, want the disk identifier %s", got, whole.DiskID)
			}
			if w, _ := n.DriverInternalInfo["is_whole_disk_image"].(bool); !w {
				t.Error("is_whole_disk_image not recorded")
			}
			// The ramdisk was told netboot: it installs no bootloader.
			if strings.Contains(m.ConsoleText(), "installing bootloader") {
				t.Error("ramdisk installed a bootloader for a whole-disk image")
			}
		}},
		{directVariant(), func(t *testing.T) map[string]any {
			// The image on a real HTTP server of its own: the agent
			// fetches the image_source URL directly.
			u := deploytest.ServeFiles(t, filepath.Dir(whole.Path))
			return map[string]any{"image_source": u + "/" + filepath.Base(whole.Path),
				"image_os_hash_algo": "sha256", "image_os_hash_value": whole.SHA256}
		}, func(t *testing.T, n deploytest.NodeView, m *deploytest.Machine) {
			if dev := m.BootDevice(); dev.Device != "disk" || !dev.Persistent {
				t.Errorf("boot device %+v, want disk persistent", dev)
			}
		}},
	} {
		t.Run(tc.variant.Name, func(t *testing.T) {
			b := deploytest.NewBed(t, deploytest.Options{Variant: tc.variant})
			uuid, m := b.Enroll("wd0", "boot_mode:bios", false)
			b.SetInstanceInfo(uuid, tc.ii(t))
			b.Provision(uuid, "active")
			n := b.WaitState(uuid, "active")
			if in := m.Inspect(t); in.Layout.DiskID != whole.DiskID {
				t.Errorf("disk id on disk %s, want %s", in.Layout.DiskID, whole.DiskID)
			}
			lastBootIsDisk(t, m)
			tc.check(t, n, m)
		})
	}
}

// TestUndeployWipesDisk: undeploy with automated cleaning boots the ramdisk
// again, which has the partition tables wiped (by the conductor over iSCSI,
// or by the agent's erase_devices_metadata), and powers the node off.
func TestUndeployWipesDisk(t *testing.T) {
	part, _ := images.Get(t)
	for _, tc := range []struct {
		variant deploytest.Variant
		mode    string
		label   string
	}{
		{iscsiVariant(), "uefi", "gpt"},
		{directVariant(), "bios", "msdos"},
	} {
		t.Run(tc.variant.Name, func(t *testing.T) {
			b := deploytest.NewBed(t, deploytest.Options{Variant: tc.variant})
			uuid, m := b.Enroll("ud0", "boot_mode:"+tc.mode+",boot_option:local", true)
			b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1, "image_type": "partition"})
			b.Provision(uuid, "active")
			b.WaitState(uuid, "active")
			if in := m.Inspect(t); in.Layout.Label != tc.label {
				t.Fatalf("deployed disk label %q, want %q", in.Layout.Label, tc.label)
			}
			b.Provision(uuid, "deleted")
			n := b.WaitState(uuid, "available")
			if in := m.Inspect(t); in.Layout.Label != "" || len(in.Layout.Partitions) != 0 || in.BootSignature {
				t.Errorf("partition table left after cleaning: %+v", in.Layout)
			}
			if n.Power() != "power off" {
				t.Errorf("power %q after cleaning", n.Power())
			}
			milestonesInclude(t, b, uuid, "conductor.disk_wiped")
		})
	}
}

// TestCallbackTimeout: a machine whose ramdisk never calls back (nor
// heartbeats) fails its deploy once deploy_callback_timeout has passed on
// the conductor's clock, and its boot files are removed.
func TestCallbackTimeout(t *testing.T) {
	part, _ := images.Get(t)
	for _, v := range []deploytest.Variant{iscsiVariant(), directVariant()} {
		t.Run(v.Name, func(t *testing.T) {
			clock := testenv.NewClock(time.Now())
			b := deploytest.NewBed(t, deploytest.Options{Variant: v, CallbackTimeout: time.Hour, Clock: clock})
			uuid, m := b.Enroll("to0", "boot_mode:bios", false)
			m.SetFaults(deploytest.Faults{Silent: true})
			b.SetInstanceInfo(uuid, map[string]any{"image_source": part.Path, "image_checksum": part.MD5, "root_gb": 1,
				"kernel": b.File("kernel"), "ramdisk": b.File("ramdisk")})
			b.Provision(uuid, "active")
			b.WaitState(uuid, "wait call-back")
			clock.Advance(time.Hour)
			n := b.WaitState(uuid, "deploy failed")
			if want := "Timeout reached while waiting for callback for node " + uuid; n.Error() != want {
				t.Errorf("last_error %q, want %q", n.Error(), want)
			}
			// The clean-up runs after the fail edge, still under the node's
			// lock (as Ironic's cleanup_after_timeout).
			testenv.Eventually(t, 10*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(b.TFTPRoot, uuid))
				return errors.Is(err, os.ErrNotExist)
			}, "boot files removed after the timeout")
		})
	}
}
