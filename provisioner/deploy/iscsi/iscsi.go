// Package iscsi is the conductor side of Ironic's "iscsi" deploy interface
// with the bash-era deploy ramdisk (Liberty to Queens): prepare caches the
// instance image and makes the node boot the deploy ramdisk with a fresh
// deploy key; the ramdisk exports the node's disk over iSCSI and calls
// pass_deploy_info; the conductor logs in with metalbed's pure-Go
// initiator, partitions the disk and writes the image (or writes a
// whole-disk image as it is), records the root UUID or disk identifier,
// logs out, and then either switches the PXE config to the instance
// (netboot) or lets the ramdisk install the bootloader and waits for
// pass_bootloader_install_info (local boot). It notifies the ramdisk on
// TCP 10000 ("done") and reboots the node through its power interface.
//
// Automated cleaning boots the same ramdisk: on its pass_deploy_info the
// conductor logs in and wipes the partition tables
// (disk.DestroyDiskMetadata), notifies it and powers the node off.
//
// Messages are Ironic's (ironic/drivers/modules/iscsi_deploy.py).
package iscsi

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// Name is the interface's name in the API.
const Name = "iscsi"

// Vendor passthru methods the deploy ramdisk calls.
const (
	MethodPassDeployInfo     = "pass_deploy_info"
	MethodPassBootloaderInfo = "pass_bootloader_install_info"
)

// IQNPrefix is prepended to the node UUID to name the ramdisk's target.
const IQNPrefix = "iqn.2008-10.org.openstack:"

// Config gives the interface its dependencies. There are no globals.
type Config struct {
	// Config is what every deploy interface gets: Images (required),
	// DefaultBootMode/DefaultBootOption, DialContext (the iSCSI portal and
	// the notice port), Milestone (prepare, power on, pass_deploy_info,
	// iscsi login, image written, iscsi logout, bootloader, notify,
	// reboot, disk wiped), Logger, Now.
	deploy.Config
	// ImagesDir holds each node's copy of its instance image while it is
	// deployed (Ironic's [pxe]images_path). Required.
	ImagesDir string
	// APIURL, when set, is passed as ironic_api_url (the boot interface
	// passes its own otherwise).
	APIURL string
	// ISCSIPort is the ramdisk's portal port; default 3260.
	ISCSIPort int
	// NotifyPort is where the ramdisk waits for "done"; default 10000.
	NotifyPort int
	// NotifyDelay is waited before notifying, as Ironic's
	// notify_ramdisk_to_proceed sleeps 3 s; default 3 s, negative: none.
	NotifyDelay time.Duration
	// InitiatorIQN names the conductor's initiator; default the initiator
	// package's.
	InitiatorIQN string
	// MaxWrites is how many images are written over iSCSI at once; the
	// others wait their turn, logged in. Each write holds about 8 MiB in
	// flight (the copy's 4 MiB chunk and the target's WRITEs), so a fleet
	// deploying at once holds MaxWrites × 8 MiB, not 8 MiB per machine, as
	// Ironic's conductor bounds its work by workers_pool_size. Default 16.
	MaxWrites int
}

// Deploy is the "iscsi" deploy interface. It is safe for concurrent use on
// different nodes; the conductor serialises calls per node.
type Deploy struct {
	cfg    Config
	core   *deploy.Core
	log    *slog.Logger
	writes chan struct{} // a token per image being written (MaxWrites)
}

var (
	_ drivers.DeployInterface  = (*Deploy)(nil)
	_ drivers.RamdiskCallbacks = (*Deploy)(nil)
	_ drivers.Cleaner          = (*Deploy)(nil)
)

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Deploy, error) {
	core, err := deploy.New(Name, cfg.Config, map[string]string{"ImagesDir": cfg.ImagesDir})
	if err != nil {
		return nil, err
	}
	if cfg.ISCSIPort == 0 {
		cfg.ISCSIPort = 3260
	}
	if cfg.NotifyPort == 0 {
		cfg.NotifyPort = 10000
	}
	switch {
	case cfg.NotifyDelay == 0:
		cfg.NotifyDelay = 3 * time.Second
	case cfg.NotifyDelay < 0:
		cfg.NotifyDelay = 0
	}
	if cfg.MaxWrites <= 0 {
		cfg.MaxWrites = 16
	}
	return &Deploy{cfg: cfg, core: core, log: core.Logger(), writes: make(chan struct{}, cfg.MaxWrites)}, nil
}

// Validate is Ironic's ISCSIDeploy.validate: the boot interface's
// validation, the boot_mode and boot_option capabilities, then the
// instance_info the deploy needs.
func (d *Deploy) Validate(ctx context.Context, t *drivers.Task) error {
	if err := t.Boot.Validate(ctx, t); err != nil {
		return err
	}
	if err := validateCapabilities(t.Node); err != nil {
		return err
	}
	_, err := d.instanceInfo(t.Node, wholeDiskHint(t.Node))
	return err
}

// validateCapabilities is deploy_utils.validate_capabilities for the two
// capabilities the iSCSI deploy reads.
func validateCapabilities(node *provisioner.Node) error {
	for _, c := range []struct {
		key   string
		valid []string
	}{
		{"boot_mode", []string{"bios", "uefi"}},
		{"boot_option", []string{"local", "netboot"}},
	} {
		for _, src := range []struct {
			name string
			caps any
		}{{"properties/capabilities", node.Properties["capabilities"]}, {"instance_info/capabilities", node.InstanceInfo["capabilities"]}} {
			v := provisioner.Capability(src.caps, c.key)
			if v == "" {
				continue
			}
			ok := false
			for _, w := range c.valid {
				ok = ok || v == w
			}
			if !ok {
				return deploy.Invalid("Invalid %s parameter '%s'. Supported values are: %s", c.key, v, drivers.PyList(c.valid))
			}
		}
	}
	return nil
}

// instInfo is instance_info parsed as deploy_utils.parse_instance_info.
type instInfo struct {
	ImageSource string
	Checksum    string
	HashAlgo    string
	HashValue   string
	Kernel      string
	Ramdisk     string
	RootMB      int64
	SwapMB      int64
	EphemeralMB int64
	EphFormat   string
	ConfigDrive string
}

// wholeDiskHint says what the node's instance_info declares: image_type
// "whole-disk" or "partition" (Ironic since Zed), else an image with a
// kernel and ramdisk is a partition image; otherwise unknown until the
// image is looked at (driver_internal_info is_whole_disk_image).
func wholeDiskHint(node *provisioner.Node) *bool {
	yes, no := true, false
	switch s, _ := node.InstanceInfo["image_type"].(string); s {
	case "whole-disk":
		return &yes
	case "partition":
		return &no
	}
	if v, ok := node.DriverInternalInfo["is_whole_disk_image"].(bool); ok {
		return &v
	}
	k, _ := node.InstanceInfo["kernel"].(string)
	r, _ := node.InstanceInfo["ramdisk"].(string)
	if k != "" && r != "" {
		return &no
	}
	return nil
}

// instanceInfo checks instance_info; wholeDisk nil means not known yet, so
// root_gb is not required.
func (d *Deploy) instanceInfo(node *provisioner.Node, wholeDisk *bool) (instInfo, error) {
	ii := node.InstanceInfo
	str := func(k string) string { s, _ := ii[k].(string); return s }
	in := instInfo{
		ImageSource: str("image_source"), Checksum: str("image_checksum"),
		HashAlgo: str("image_os_hash_algo"), HashValue: str("image_os_hash_value"),
		Kernel: str("kernel"), Ramdisk: str("ramdisk"), EphFormat: str("ephemeral_format"),
		ConfigDrive: str("configdrive"),
	}
	partition := wholeDisk != nil && !*wholeDisk
	var missing []string
	if partition {
		if v, ok := ii["root_gb"]; !ok || v == nil || v == "" || v == 0.0 || v == "0" {
			missing = append(missing, "root_gb")
		}
		if d.core.BootOption(node) == disk.BootOptionNetboot {
			if in.Ramdisk == "" {
				missing = append(missing, "ramdisk")
			}
			if in.Kernel == "" {
				missing = append(missing, "kernel")
			}
		}
	}
	if in.ImageSource == "" {
		missing = append(missing, "image_source")
	}
	if len(missing) > 0 {
		return in, deploy.Invalid("Cannot validate iSCSI deploy. Some parameters were missing in node's instance_info. Missing are: %s", drivers.PyList(missing))
	}
	for _, p := range []struct {
		key   string
		scale int64
		dst   *int64
	}{{"root_gb", 1024, &in.RootMB}, {"swap_mb", 1, &in.SwapMB}, {"ephemeral_gb", 1024, &in.EphemeralMB}} {
		v, ok := ii[p.key]
		if !ok || v == nil {
			continue
		}
		n, err := asInt(v)
		if err != nil || n < 0 {
			return in, deploy.Invalid("Cannot validate parameter for driver deploy. Invalid parameter %s. Reason: %v is not an integer value.", p.key, v)
		}
		*p.dst = n * p.scale
	}
	if wholeDisk != nil && *wholeDisk && (in.SwapMB > 0 || in.EphemeralMB > 0) {
		return in, deploy.Invalid("Cannot deploy whole disk image with swap or ephemeral size set")
	}
	if strings.HasPrefix(in.ConfigDrive, "http://") || strings.HasPrefix(in.ConfigDrive, "https://") {
		return in, deploy.Invalid("Cannot validate iSCSI deploy. configdrive URLs are not supported by metalbed; pass the config drive itself.")
	}
	return in, nil
}

func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case float64:
		if x != float64(int64(x)) {
			return 0, errors.New("not an integer")
		}
		return int64(x), nil
	case int:
		return int64(x), nil
	case int64:
		return x, nil
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	}
	return 0, errors.New("not an integer")
}

// imageDir and imagePath are Ironic's _get_image_dir_path/_get_image_file_path.
func (d *Deploy) imageDir(node *provisioner.Node) string {
	return filepath.Join(d.cfg.ImagesDir, node.UUID)
}

func (d *Deploy) imagePath(node *provisioner.Node) string {
	return filepath.Join(d.imageDir(node), "disk")
}

// destroyImages drops the node's copy of its instance image (the cache
// keeps the master).
func (d *Deploy) destroyImages(node *provisioner.Node) {
	if err := os.RemoveAll(d.imageDir(node)); err != nil {
		d.log.Warn("remove instance image copy", "node", node.UUID, "err", err)
	}
	d.cfg.Images.CleanUp()
}

// Prepare caches the instance image, decides whether it is a whole-disk
// image, checks it fits the root partition, and makes the node boot the
// deploy ramdisk with a new deploy key (stored in driver_internal_info
// deploy_key). An active node (take over, rebuild of the config) gets its
// instance boot prepared instead.
func (d *Deploy) Prepare(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if node.ProvisionState == provisioner.StateActive {
		return d.core.TakeOver(ctx, t)
	}
	in, err := d.instanceInfo(node, wholeDiskHint(node))
	if err != nil {
		return err
	}
	deploy.ResetDeployInfo(node)
	start := d.core.Now()
	if err := os.MkdirAll(d.imageDir(node), 0o755); err != nil {
		return fmt.Errorf("instance image directory: %w", err)
	}
	src := imagecache.Source{URL: in.ImageSource, Checksum: in.Checksum, HashAlgo: in.HashAlgo, HashValue: in.HashValue}
	if err := d.cfg.Images.Fetch(ctx, src, d.imagePath(node)); err != nil {
		d.destroyImages(node)
		return fmt.Errorf("fetch image %s: %w", in.ImageSource, err)
	}
	whole, size, err := d.sniff(node)
	if err != nil {
		d.destroyImages(node)
		return err
	}
	node.DriverInternalInfo["is_whole_disk_image"] = whole
	if in, err = d.instanceInfo(node, &whole); err != nil {
		d.destroyImages(node)
		return err
	}
	if !whole {
		imageMB := (size + (1<<20 - 1)) >> 20
		if imageMB > in.RootMB {
			d.destroyImages(node)
			return fmt.Errorf("Root partition is too small for requested image. Image virtual size: %d MB, Root size: %d MB", imageMB, in.RootMB)
		}
	}
	d.core.Milestone(node, events.ConductorImageCached, fmt.Sprintf("%s, %d bytes, whole disk %t, %.2fs", in.ImageSource, size, whole, d.core.Since(start).Seconds()))
	if err := d.prepareRamdisk(ctx, t, ""); err != nil {
		d.destroyImages(node)
		return err
	}
	d.core.Milestone(node, events.ConductorPrepare, "deploy ramdisk configured, boot device pxe")
	return nil
}

// sniff tells a partition image (a bare ext2/3/4 file system) from a
// whole-disk image (anything else: a partition table) unless instance_info
// says which it is.
func (d *Deploy) sniff(node *provisioner.Node) (whole bool, size int64, err error) {
	f, err := os.Open(d.imagePath(node))
	if err != nil {
		return false, 0, fmt.Errorf("open instance image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, 0, fmt.Errorf("stat instance image: %w", err)
	}
	if hint := wholeDiskHint(node); hint != nil {
		return *hint, st.Size(), nil
	}
	_, ferr := disk.ReadExt4Super(io.NewSectionReader(f, 0, st.Size()))
	return ferr != nil, st.Size(), nil
}

// prepareRamdisk makes a fresh deploy key and has the boot interface boot
// the deploy ramdisk with the iSCSI deploy's kernel parameters.
func (d *Deploy) prepareRamdisk(ctx context.Context, t *drivers.Task, bootOption string) error {
	node := t.Node
	key, err := randomAlnum(32)
	if err != nil {
		return err
	}
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	node.DriverInternalInfo["deploy_key"] = key
	if bootOption == "" {
		bootOption = d.core.BootOption(node)
		if w, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool); w {
			bootOption = disk.BootOptionNetboot // no bootloader to install
		}
	}
	params := map[string]string{
		"deployment_key":   key,
		"iscsi_target_iqn": IQNPrefix + node.UUID,
		"deployment_id":    node.UUID,
		"boot_option":      bootOption,
		"boot_mode":        d.core.BootMode(node),
	}
	if d.cfg.APIURL != "" {
		params["ironic_api_url"] = strings.TrimRight(d.cfg.APIURL, "/")
	}
	return t.Boot.PrepareRamdisk(ctx, t, params)
}

// Deploy powers the node on (or reboots it) into the deploy ramdisk and
// waits for its call back.
func (d *Deploy) Deploy(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.core.BootRamdisk(ctx, t, "booting the deploy ramdisk")
}

// TearDown powers the node off; CleanUp removes the rest.
func (d *Deploy) TearDown(ctx context.Context, t *drivers.Task) error {
	return d.core.PowerOff(ctx, t)
}

// CleanUp removes the instance image copy and the node's boot files and
// DHCP answers.
func (d *Deploy) CleanUp(ctx context.Context, t *drivers.Task) error {
	d.destroyImages(t.Node)
	return d.core.CleanUpBoot(ctx, t)
}

// TakeOver rebuilds the boot configuration of an active node.
func (d *Deploy) TakeOver(ctx context.Context, t *drivers.Task) error {
	return d.core.TakeOver(ctx, t)
}

var _ drivers.ManualCleaner = (*Deploy)(nil)

// CleanSteps names what its cleaning does, the one step a manual
// cleaning may ask of it: the ramdisk wipes the disk's partition tables.
func (d *Deploy) CleanSteps() []string { return []string{"erase_devices_metadata"} }

// PrepareCleaning makes the node boot the deploy ramdisk (boot_option
// netboot: it must not install a bootloader) with a new deploy key.
func (d *Deploy) PrepareCleaning(ctx context.Context, t *drivers.Task) error {
	if err := d.prepareRamdisk(ctx, t, disk.BootOptionNetboot); err != nil {
		return err
	}
	d.core.Milestone(t.Node, events.ConductorPrepare, "deploy ramdisk configured for cleaning")
	return nil
}

// Clean powers the node on into the ramdisk, which calls back to have its
// disk wiped.
func (d *Deploy) Clean(ctx context.Context, t *drivers.Task) (drivers.Step, error) {
	return d.core.BootRamdisk(ctx, t, "booting the deploy ramdisk for cleaning")
}

// notify is Ironic's notify_ramdisk_to_proceed: wait, connect to
// <address>:10000, send "done", close.
func (d *Deploy) notify(ctx context.Context, node *provisioner.Node, address string) error {
	if err := deploy.Sleep(ctx, d.cfg.NotifyDelay); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr := net.JoinHostPort(address, strconv.Itoa(d.cfg.NotifyPort))
	c, err := d.core.Dial(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, werr := io.WriteString(c, "done")
	if err := errors.Join(werr, c.Close()); err != nil {
		return fmt.Errorf("notify %s: %w", addr, err)
	}
	d.core.Milestone(node, events.ConductorNotify, "done sent to "+addr)
	return nil
}
