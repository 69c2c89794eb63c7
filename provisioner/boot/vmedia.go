package boot

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// VirtualMediaName is the "redfish-virtual-media" boot interface's name.
const VirtualMediaName = "redfish-virtual-media"

// vmediaDir is where the ISOs are published under the HTTP root, as
// Ironic's [redfish]use_swift=False: <http_root>/redfish/boot-<uuid>.iso.
const vmediaDir = "redfish"

// VirtualMedia is Ironic's "redfish-virtual-media" boot interface: it
// builds an ISO from the deploy kernel and ramdisk with the agent's
// command line (the agent token on it), publishes it under the HTTP root,
// and has the node's BMC insert it as a virtual CD and boot it once; the
// instance then boots from its disk. The management interface must be a
// drivers.VirtualMediaManager (the redfish one). Only the agent (deploy
// interface direct) boots this way, as in Ironic.
//
// The media-booted ramdisk gets its address by plain DHCP: the node's
// ports are answered with an address and no boot file.
type VirtualMedia struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	loaders map[string]disk.ISOLoaders // by boot mode, once found
}

var _ drivers.BootInterface = (*VirtualMedia)(nil)

// NewVirtualMedia returns the "redfish-virtual-media" boot interface. It
// needs HTTPRoot, HTTPURL, Hosts and Images; TFTP and APIURL are unused
// (the deploy interface passes ipa-api-url). AppendParams is Ironic's
// [redfish]kernel_append_params here. It does no I/O: ISOLINUX and GRUB
// are looked for when a node first needs them.
func NewVirtualMedia(cfg Config) (*VirtualMedia, error) {
	var missing []string
	if cfg.HTTPRoot == "" {
		missing = append(missing, "HTTPRoot")
	}
	if cfg.HTTPURL == "" {
		missing = append(missing, "HTTPURL")
	}
	if cfg.Hosts == nil {
		missing = append(missing, "Hosts")
	}
	if cfg.Images == nil {
		missing = append(missing, "Images")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("boot: %s interface: missing %s", VirtualMediaName, strings.Join(missing, ", "))
	}
	cfg, log, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.ISOLoaders == nil {
		cfg.ISOLoaders = disk.DefaultISOLoaders
	}
	return &VirtualMedia{cfg: cfg, log: log.With("boot_interface", VirtualMediaName), loaders: map[string]disk.ISOLoaders{}}, nil
}

// Name is "redfish-virtual-media".
func (b *VirtualMedia) Name() string { return VirtualMediaName }

// Properties documents the driver_info keys this interface reads.
func (b *VirtualMedia) Properties() map[string]string {
	return map[string]string{
		"deploy_kernel":  "URL or Glance UUID of the deployment kernel. Required.",
		"deploy_ramdisk": "URL or Glance UUID of the ramdisk that is mounted at boot time. Required.",
	}
}

// Validate checks driver_info's deploy kernel and ramdisk, that the
// management interface drives virtual media, that the deploy interface
// is the agent's, and that the boot loaders of the node's boot mode are
// installed.
func (b *VirtualMedia) Validate(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	var missing []string
	for _, k := range []string{"deploy_kernel", "deploy_ramdisk"} {
		if s, _ := node.DriverInfo[k].(string); s == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return invalid("Error validating Redfish virtual media. Some parameters were missing in node's driver_info. Missing are: %s", drivers.PyList(missing))
	}
	if _, ok := t.Management.(drivers.VirtualMediaManager); !ok {
		return invalid("The %s boot interface of node %s needs a management interface with virtual media (redfish), not %q", VirtualMediaName, node.UUID, node.Interfaces.Management)
	}
	if d := node.Interfaces.Deploy; d != "" && d != "direct" {
		return invalid("The %s boot interface of node %s boots the agent only: set deploy_interface direct, not %s", VirtualMediaName, node.UUID, d)
	}
	if b.netbootPartition(node) {
		return invalid(netbootRefused, VirtualMediaName, node.UUID)
	}
	_, err := b.isoLoaders(ctx, b.bootMode(node))
	return err
}

const netbootRefused = "The %s boot interface of node %s boots partition images from the local disk only: set the boot_option capability to local"

// netbootPartition reports whether the node's instance is a partition
// image to boot over the network (boot option netboot): it would need an
// instance boot ISO, which this interface does not build.
func (b *VirtualMedia) netbootPartition(node *provisioner.Node) bool {
	if node.DeployBootOption(b.cfg.DefaultBootOption) == "local" {
		return false
	}
	if wd, ok := node.DriverInternalInfo["is_whole_disk_image"].(bool); ok {
		return !wd
	}
	ii := node.InstanceInfo
	typ, _ := ii["image_type"].(string)
	k, _ := ii["kernel"].(string)
	r, _ := ii["ramdisk"].(string)
	return typ == "partition" || (typ == "" && k != "" && r != "")
}

// isoLoaders finds ISOLINUX (bios) or GRUB (uefi) once per boot mode.
func (b *VirtualMedia) isoLoaders(ctx context.Context, mode string) (disk.ISOLoaders, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.loaders[mode]; ok {
		return l, nil
	}
	l, err := b.cfg.ISOLoaders(ctx, mode == "bios", mode == "uefi")
	if err != nil {
		return disk.ISOLoaders{}, invalid("The %s boot interface cannot build a %s boot ISO: %v", VirtualMediaName, mode, err)
	}
	b.loaders[mode] = l
	return l, nil
}

func (b *VirtualMedia) bootMode(node *provisioner.Node) string {
	return node.DeployBootMode(b.cfg.DefaultBootMode)
}

// isoPath and isoURL are where the node's ISO is published.
func (b *VirtualMedia) isoPath(node *provisioner.Node) string {
	return filepath.Join(b.cfg.HTTPRoot, vmediaDir, "boot-"+node.UUID+".iso")
}

func (b *VirtualMedia) isoURL(node *provisioner.Node) string {
	return b.cfg.HTTPURL + "/" + vmediaDir + "/boot-" + node.UUID + ".iso"
}

// PrepareRamdisk makes the node boot the agent from virtual media next,
// as Ironic's RedfishVirtualMediaBoot.prepare_ramdisk: a new agent token
// (driver_internal_info agent_secret_token, pregenerated; the caller saves
// the node), power off, the ISO built with the agent's command line and
// published, the DHCP answers without a boot file, whatever CD is
// inserted ejected, the ISO inserted, and boot device cdrom for the next
// boot only, in the node's boot mode.
func (b *VirtualMedia) PrepareRamdisk(ctx context.Context, t *drivers.Task, params map[string]string) error {
	node := t.Node
	if err := b.Validate(ctx, t); err != nil {
		return err
	}
	vm := t.Management.(drivers.VirtualMediaManager)
	token, err := agentToken()
	if err != nil {
		return err
	}
	if node.DriverInternalInfo == nil {
		node.DriverInternalInfo = map[string]any{}
	}
	node.DriverInternalInfo["agent_secret_token"] = token
	node.DriverInternalInfo["agent_secret_token_pregenerated"] = true
	if err := t.Power.SetPowerState(ctx, node, provisioner.PowerOff); err != nil {
		return fmt.Errorf("boot: power off %s before inserting media: %w", node.UUID, err)
	}
	cmdline, err := b.cmdline(params, token)
	if err != nil {
		return err
	}
	mode := b.bootMode(node)
	if err := b.buildISO(ctx, node, mode, cmdline); err != nil {
		return err
	}
	b.setHosts(node, t.Ports)
	if err := b.insert(ctx, t, vm); err != nil {
		return err
	}
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "cdrom", Persistent: false}); err != nil {
		return fmt.Errorf("boot: set boot device cdrom for %s: %w", node.UUID, err)
	}
	b.log.Info("deploy ramdisk prepared", "node", node.UUID, "boot_mode", mode, "iso", b.isoURL(node))
	return nil
}

// insert ejects the node's CD and inserts its published ISO.
func (b *VirtualMedia) insert(ctx context.Context, t *drivers.Task, vm drivers.VirtualMediaManager) error {
	node := t.Node
	if err := vm.EjectMedia(ctx, node, drivers.MediaCD); err != nil {
		return fmt.Errorf("boot: eject the virtual CD of %s: %w", node.UUID, err)
	}
	if err := vm.InsertMedia(ctx, node, drivers.MediaCD, b.isoURL(node)); err != nil {
		return fmt.Errorf("boot: insert %s into the virtual CD of %s: %w", b.isoURL(node), node.UUID, err)
	}
	return nil
}

// agentToken is a new agent token, as Ironic's add_secret_token.
func agentToken() (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("boot: agent token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// cmdline is the ISO's kernel command line as Ironic 21.4's
// _prepare_iso_image writes it for the agent: [redfish]kernel_append_params,
// ir_pub_id=<new UUID>, the deploy interface's parameters (ipa-api-url …),
// ipa-agent-token, boot_method=vmedia.
func (b *VirtualMedia) cmdline(params map[string]string, token string) (string, error) {
	base := appendFields(nil, b.cfg.AppendParams)
	base = append(base, param{"ir_pub_id", uuid.NewString()})
	extra := map[string]string{}
	for k, v := range params {
		if k != "ipa-agent-token" && k != "boot_method" {
			extra[k] = v
		}
	}
	ps, err := checkMerge(base, extra)
	if err != nil {
		return "", err
	}
	ps = append(ps, param{"ipa-agent-token", token}, param{"boot_method", "vmedia"})
	return joinParams(ps), nil
}

// buildISO stages the deploy kernel and ramdisk through the image cache
// and builds the node's boot ISO in place of the published one.
func (b *VirtualMedia) buildISO(ctx context.Context, node *provisioner.Node, mode, cmdline string) error {
	loaders, err := b.isoLoaders(ctx, mode)
	if err != nil {
		return err
	}
	dir := filepath.Join(b.cfg.HTTPRoot, vmediaDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	stage, err := os.MkdirTemp(dir, ".stage-"+node.UUID+"-")
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	defer os.RemoveAll(stage)
	files := map[string]string{"deploy_kernel": filepath.Join(stage, deployKernel), "deploy_ramdisk": filepath.Join(stage, deployRamdisk)}
	for key, dst := range files {
		src, _ := node.DriverInfo[key].(string)
		if err := b.cfg.Images.Fetch(ctx, imagecache.Source{URL: src}, dst); err != nil {
			return fmt.Errorf("boot: stage %s of node %s: %w", key, node.UUID, err)
		}
	}
	tmp := filepath.Join(stage, "boot.iso")
	cfg := disk.BootISOConfig{
		Kernel: files["deploy_kernel"], Initrd: files["deploy_ramdisk"], Cmdline: cmdline,
		BIOS: mode == "bios", UEFI: mode == "uefi", Loaders: loaders,
	}
	if err := disk.BuildBootISO(ctx, cfg, tmp); err != nil {
		return &drivers.DeployError{Msg: fmt.Sprintf("Failed to create boot ISO image for node %s: %v", node.UUID, err), Err: err}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if err := os.Rename(tmp, b.isoPath(node)); err != nil {
		return fmt.Errorf("boot: publish the ISO of %s: %w", node.UUID, err)
	}
	return nil
}

// setHosts answers the node's ports by DHCP with an address and no boot
// file: the media-booted ramdisk and the instance configure themselves.
func (b *VirtualMedia) setHosts(node *provisioner.Node, ports []provisioner.Port) {
	for _, p := range ports {
		if len(p.Address) > 0 {
			b.cfg.Hosts.Set(p.Address, dhcp.Host{Hostname: node.Name})
		}
	}
}

// ejectAll ejects the node's CD and removes its published ISO (Ironic's
// _eject_all and cleanup_iso_image).
func (b *VirtualMedia) ejectAll(ctx context.Context, t *drivers.Task) error {
	var errs []error
	if vm, ok := t.Management.(drivers.VirtualMediaManager); ok {
		if err := vm.EjectMedia(ctx, t.Node, drivers.MediaCD); err != nil {
			errs = append(errs, fmt.Errorf("boot: eject the virtual CD of %s: %w", t.Node.UUID, err))
		}
	}
	errs = append(errs, removeFile(b.isoPath(t.Node)))
	return errors.Join(errs...)
}

// CleanUpRamdisk ejects the CD and removes the ISO.
func (b *VirtualMedia) CleanUpRamdisk(ctx context.Context, t *drivers.Task) error {
	return b.ejectAll(ctx, t)
}

// PrepareInstance makes the node boot the deployed instance from its disk
// for good, after ejecting the CD, as Ironic's prepare_instance for local
// boot and whole-disk images. A partition image booted over the network
// (boot option netboot) would need an instance boot ISO, which this
// interface does not build: it fails clearly.
func (b *VirtualMedia) PrepareInstance(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if err := b.ejectAll(ctx, t); err != nil {
		return err
	}
	if b.netbootPartition(node) {
		return &drivers.DeployError{Msg: fmt.Sprintf(netbootRefused, VirtualMediaName, node.UUID)}
	}
	b.setHosts(node, t.Ports)
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "disk", Persistent: true}); err != nil {
		return fmt.Errorf("boot: set boot device disk for %s: %w", node.UUID, err)
	}
	b.log.Info("instance prepared for local boot", "node", node.UUID, "boot_mode", b.bootMode(node))
	return nil
}

// CleanUpInstance ejects the CD, removes the ISO and the DHCP answers.
func (b *VirtualMedia) CleanUpInstance(ctx context.Context, t *drivers.Task) error {
	err := b.ejectAll(ctx, t)
	for _, p := range t.Ports {
		if len(p.Address) > 0 {
			b.cfg.Hosts.Delete(p.Address)
		}
	}
	return err
}
