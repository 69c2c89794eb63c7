package boot

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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

// vmediaDir is where the ISOs are published under the HTTP root, as
// Ironic's [redfish]use_swift=False: <http_root>/redfish/boot-<uuid>.iso.
const vmediaDir = "redfish"

// isoBoot is what the boot interfaces that boot the agent from an ISO
// (redfish-virtual-media and redfish-https) share, as Ironic's
// image_utils.prepare_deploy_iso and cleanup_iso_image: the deploy ISO
// built from the deploy kernel and ramdisk with the agent's command line,
// published under the HTTP root, and the DHCP answers without a boot file
// the ISO-booted ramdisk and the instance configure themselves with.
type isoBoot struct {
	name string // the boot interface's name, for messages
	cfg  Config
	log  *slog.Logger

	mu      sync.Mutex
	loaders map[string]disk.ISOLoaders // by boot mode, once found
}

// newISOBoot checks cfg for the boot interface name: it needs HTTPRoot,
// HTTPURL, Hosts and Images. It does no I/O.
func newISOBoot(name string, cfg Config) (*isoBoot, error) {
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
		return nil, fmt.Errorf("boot: %s interface: missing %s", name, strings.Join(missing, ", "))
	}
	cfg, log, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.ISOLoaders == nil {
		cfg.ISOLoaders = disk.DefaultISOLoaders
	}
	return &isoBoot{name: name, cfg: cfg, log: log.With("boot_interface", name), loaders: map[string]disk.ISOLoaders{}}, nil
}

// isoProperties documents the driver_info keys both interfaces read.
func isoProperties() map[string]string {
	return map[string]string{
		"deploy_kernel":  "URL or Glance UUID of the deployment kernel. Required.",
		"deploy_ramdisk": "URL or Glance UUID of the ramdisk that is mounted at boot time. Required.",
	}
}

// validateDeploy checks what building the deploy ISO needs, with
// Ironic's messages where it has them: driver_info's deploy kernel and
// ramdisk, the agent's deploy interface, no partition image booted over
// the network, and the boot loaders of the node's boot mode.
func (b *isoBoot) validateDeploy(ctx context.Context, node *provisioner.Node) error {
	var missing []string
	for _, k := range []string{"deploy_kernel", "deploy_ramdisk"} {
		if s, _ := node.DriverInfo[k].(string); s == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return invalid("Error validating Redfish virtual media. Some parameters were missing in node's driver_info. Missing are: %s", drivers.PyList(missing))
	}
	if d := node.Interfaces.Deploy; d != "" && d != "direct" {
		return invalid("The %s boot interface of node %s boots the agent only: set deploy_interface direct, not %s", b.name, node.UUID, d)
	}
	if b.netbootPartition(node) {
		return invalid(netbootRefused, b.name, node.UUID)
	}
	_, err := b.isoLoaders(ctx, b.bootMode(node))
	return err
}

const netbootRefused = "The %s boot interface of node %s boots partition images from the local disk only: set the boot_option capability to local"

// netbootPartition reports whether the node's instance is a partition
// image to boot over the network (boot option netboot): it would need an
// instance boot ISO, which these interfaces do not build.
func (b *isoBoot) netbootPartition(node *provisioner.Node) bool {
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
func (b *isoBoot) isoLoaders(ctx context.Context, mode string) (disk.ISOLoaders, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.loaders[mode]; ok {
		return l, nil
	}
	l, err := b.cfg.ISOLoaders(ctx, mode == "bios", mode == "uefi")
	if err != nil {
		return disk.ISOLoaders{}, invalid("The %s boot interface cannot build a %s boot ISO: %v", b.name, mode, err)
	}
	b.loaders[mode] = l
	return l, nil
}

func (b *isoBoot) bootMode(node *provisioner.Node) string {
	return node.DeployBootMode(b.cfg.DefaultBootMode)
}

// isoPath and isoURL are where the node's ISO is published.
func (b *isoBoot) isoPath(node *provisioner.Node) string {
	return filepath.Join(b.cfg.HTTPRoot, vmediaDir, "boot-"+node.UUID+".iso")
}

func (b *isoBoot) isoURL(node *provisioner.Node) string {
	return b.cfg.HTTPURL + "/" + vmediaDir + "/boot-" + node.UUID + ".iso"
}

// prepareDeployISO is the part of Ironic's prepare_ramdisk both
// interfaces share: a new agent token (driver_internal_info
// agent_secret_token, pregenerated; the caller saves the node), power
// off, the ISO built with the agent's command line and published, and
// the DHCP answers without a boot file.
func (b *isoBoot) prepareDeployISO(ctx context.Context, t *drivers.Task, params map[string]string) error {
	node := t.Node
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
		return fmt.Errorf("boot: power off %s before booting the deploy ISO: %w", node.UUID, err)
	}
	cmdline, err := b.cmdline(params, token)
	if err != nil {
		return err
	}
	if err := b.buildISO(ctx, node, b.bootMode(node), cmdline); err != nil {
		return err
	}
	b.setHosts(node, t.Ports)
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
// ipa-agent-token, boot_method=vmedia (redfish-https sets it too).
func (b *isoBoot) cmdline(params map[string]string, token string) (string, error) {
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
func (b *isoBoot) buildISO(ctx context.Context, node *provisioner.Node, mode, cmdline string) error {
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

// removeISO removes the node's published ISO (Ironic's cleanup_iso_image).
func (b *isoBoot) removeISO(node *provisioner.Node) error {
	return removeFile(b.isoPath(node))
}

// setHosts answers the node's ports by DHCP with an address and no boot
// file: the ISO-booted ramdisk and the instance configure themselves.
func (b *isoBoot) setHosts(node *provisioner.Node, ports []provisioner.Port) {
	for _, p := range ports {
		if len(p.Address) > 0 {
			b.cfg.Hosts.Set(p.Address, dhcp.Host{Hostname: node.Name})
		}
	}
}

// deleteHosts forgets the node's ports' DHCP answers.
func (b *isoBoot) deleteHosts(ports []provisioner.Port) {
	for _, p := range ports {
		if len(p.Address) > 0 {
			b.cfg.Hosts.Delete(p.Address)
		}
	}
}

// prepareLocalBoot is the end of Ironic's prepare_instance for local boot
// and whole-disk images, once the deploy ISO is gone: a partition image
// booted over the network fails clearly (it would need an instance boot
// ISO), the DHCP answers stay without a boot file, and the node boots
// from its disk for good.
func (b *isoBoot) prepareLocalBoot(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	if b.netbootPartition(node) {
		return &drivers.DeployError{Msg: fmt.Sprintf(netbootRefused, b.name, node.UUID)}
	}
	b.setHosts(node, t.Ports)
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "disk", Persistent: true}); err != nil {
		return fmt.Errorf("boot: set boot device disk for %s: %w", node.UUID, err)
	}
	b.log.Info("instance prepared for local boot", "node", node.UUID, "boot_mode", b.bootMode(node))
	return nil
}
