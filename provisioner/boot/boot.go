// Package boot holds the provisioner's network boot interfaces, Ironic's
// "pxe" and "ipxe": they make a node boot the deploy ramdisk, then the
// deployed instance, by writing the files its firmware fetches (a pxelinux
// config or an iPXE script, the kernels and ramdisks, the token), telling
// the DHCP server what each of the node's MACs boots, and setting the boot
// device through the node's management interface.
//
// pxe serves everything over TFTP. BIOS firmware gets pxelinux.0 (Debian
// package pxelinux, with ldlinux.c32 from syslinux-common), which reads
// pxelinux.cfg/01-<mac>, a link to <uuid>/config. UEFI firmware gets iPXE's
// ipxe.efi, and iPXE (the NBP, or a NIC ROM that is iPXE already) the
// script tftp://<server>/<uuid>/config.ipxe — the same labels in iPXE's
// language — instead of Ironic's GRUB, so one set of files boots both the
// simulated ROM and QEMU.
//
// ipxe serves configs and images over HTTP: iPXE is told
// <HTTPURL>/boot.ipxe, which chains pxelinux.cfg/<mac>, a link to
// <uuid>/config, Ironic's iPXE script with its retry loop. Firmware that is
// not iPXE gets undionly.kpxe (BIOS) or ipxe.efi (UEFI) over TFTP first
// (Debian package ipxe).
//
// Both write the kernel parameters of Ironic's iSCSI deploy ramdisk
// (deployment_id, deployment_key, iscsi_target_iqn, ironic_api_url, disk,
// boot_option, boot_mode, root_device, troubleshoot) plus whatever the deploy
// interface passes.
package boot

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/dhcp"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

// Hosts is where the interfaces tell DHCP what a MAC boots;
// *dhcp.StaticHosts implements it.
type Hosts interface {
	Set(mac net.HardwareAddr, host dhcp.Host)
	Delete(mac net.HardwareAddr)
}

// Loaders are the boot programs copied into the TFTP root, by source path.
// Zero fields get Debian's paths.
type Loaders struct {
	PXELinux string // default /usr/lib/PXELINUX/pxelinux.0 (package pxelinux)
	LDLinux  string // default /usr/lib/syslinux/modules/bios/ldlinux.c32 (package syslinux-common)
	UndiOnly string // default /usr/lib/ipxe/undionly.kpxe (package ipxe)
	IPXEEFI  string // default /usr/lib/ipxe/ipxe.efi (package ipxe)
	// IPXEOnly makes the ipxe interface serve NICs whose ROM is iPXE (QEMU's,
	// the simulated machines') without iPXE's NBPs: DHCP gives iPXE clients
	// the script and plain PXE clients no boot file, and undionly.kpxe /
	// ipxe.efi are neither required nor copied. No effect on the pxe
	// interface, which always needs pxelinux.0.
	IPXEOnly bool
}

// MissingIPXE reports whether iPXE's NBPs (Debian package ipxe) are absent
// from their default places, when IPXEOnly is the way to boot iPXE ROMs.
func MissingIPXE() bool {
	for _, p := range []string{"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.efi"} {
		if _, err := os.Stat(p); err != nil {
			return true
		}
	}
	return false
}

// HavePXELinux reports whether pxelinux.0 and ldlinux.c32 (Debian packages
// pxelinux, syslinux-common) are in their default places.
func HavePXELinux() bool {
	for _, p := range []string{"/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/modules/bios/ldlinux.c32"} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Names of the boot programs in the TFTP root (what DHCP hands out).
const (
	PXELinuxNBP = "pxelinux.0"
	LDLinuxName = "ldlinux.c32"
	UndiOnlyNBP = "undionly.kpxe"
	IPXEEFINBP  = "ipxe.efi"
)

// Config gives an interface its dependencies. There are no globals: a
// conductor builds one interface per configuration.
type Config struct {
	// TFTPRoot is the directory the TFTP server serves. Required.
	TFTPRoot string
	// TFTPServer is the TFTP server's address as machines reach it
	// (next-server). Required.
	TFTPServer netip.Addr
	// HTTPRoot is the directory the HTTP boot server serves and HTTPURL its
	// base URL as machines reach it, e.g. "http://192.0.2.1:8080".
	// Required for ipxe.
	HTTPRoot string
	HTTPURL  string
	// APIURL is ironic_api_url: the API as the ramdisk reaches it.
	// Required.
	APIURL string
	// Hosts receives each PXE-enabled port's DHCP answer. Required.
	Hosts Hosts
	// Images fetches and caches deploy and instance kernels and ramdisks.
	// Required.
	Images *imagecache.Cache
	// Token, when set, gives the token written to token-<uuid> in the TFTP
	// root for the ramdisk's X-Auth-Token; "" writes none.
	Token func(ctx context.Context, node *provisioner.Node) (string, error)
	// Loaders locate pxelinux.0, ldlinux.c32, undionly.kpxe and ipxe.efi.
	Loaders Loaders
	// ISOLoaders finds what the redfish-virtual-media interface's boot
	// ISOs need: ISOLINUX for bios, a GRUB EFI image for uefi. It is asked
	// once per boot mode, when the first node of that mode is validated,
	// so a missing package fails only the nodes that need it; default
	// disk.DefaultISOLoaders.
	ISOLoaders func(ctx context.Context, bios, uefi bool) (disk.ISOLoaders, error)
	// DiskDevices is the ramdisk's disk= candidates; default
	// "cciss/c0d0,sda,hda,vda" (Ironic's [pxe]disk_devices).
	DiskDevices string
	// AppendParams is Ironic's pxe_append_params, on both labels; default
	// "nofb nomodeset vga=normal". Set "-" for none.
	AppendParams string
	// DefaultBootMode applies when neither instance_info, capabilities nor
	// the node choose one: "uefi" (default, as drivers.IPMIConfig) or
	// "bios". It must match the management interface's.
	DefaultBootMode string
	// DefaultBootOption applies when no capability chooses one: "netboot"
	// (default, as the iSCSI-deploy era of Ironic) or "local".
	DefaultBootOption string
	// IPXETimeout is iPXE's --timeout for kernel and initrd; 0 gives none.
	IPXETimeout time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Interface is the pxe or ipxe boot interface; it implements
// drivers.BootInterface and is safe for concurrent use on different nodes.
type Interface struct {
	cfg  Config
	ipxe bool
	log  *slog.Logger
}

var _ drivers.BootInterface = (*Interface)(nil)

// NewPXE returns the "pxe" boot interface. It does no I/O.
func NewPXE(cfg Config) (*Interface, error) { return newInterface(cfg, false) }

// NewIPXE returns the "ipxe" boot interface. It does no I/O.
func NewIPXE(cfg Config) (*Interface, error) { return newInterface(cfg, true) }

func newInterface(cfg Config, ipxe bool) (*Interface, error) {
	name := "pxe"
	if ipxe {
		name = "ipxe"
	}
	var missing []string
	if cfg.TFTPRoot == "" {
		missing = append(missing, "TFTPRoot")
	}
	if !cfg.TFTPServer.Is4() {
		missing = append(missing, "TFTPServer (IPv4)")
	}
	if cfg.APIURL == "" {
		missing = append(missing, "APIURL")
	}
	if cfg.Hosts == nil {
		missing = append(missing, "Hosts")
	}
	if cfg.Images == nil {
		missing = append(missing, "Images")
	}
	if ipxe && cfg.HTTPRoot == "" {
		missing = append(missing, "HTTPRoot")
	}
	if ipxe && cfg.HTTPURL == "" {
		missing = append(missing, "HTTPURL")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("boot: %s interface: missing %s", name, strings.Join(missing, ", "))
	}
	cfg, log, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Interface{cfg: cfg, ipxe: ipxe, log: log.With("boot_interface", name)}, nil
}

// withDefaults trims the URLs and fills the zero fields every boot
// interface shares with their documented defaults.
func (cfg Config) withDefaults() (Config, *slog.Logger, error) {
	cfg.APIURL = strings.TrimRight(cfg.APIURL, "/")
	cfg.HTTPURL = strings.TrimRight(cfg.HTTPURL, "/")
	if cfg.Loaders.PXELinux == "" {
		cfg.Loaders.PXELinux = "/usr/lib/PXELINUX/pxelinux.0"
	}
	if cfg.Loaders.LDLinux == "" {
		cfg.Loaders.LDLinux = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	}
	if cfg.Loaders.UndiOnly == "" {
		cfg.Loaders.UndiOnly = "/usr/lib/ipxe/undionly.kpxe"
	}
	if cfg.Loaders.IPXEEFI == "" {
		cfg.Loaders.IPXEEFI = "/usr/lib/ipxe/ipxe.efi"
	}
	if cfg.DiskDevices == "" {
		cfg.DiskDevices = "cciss/c0d0,sda,hda,vda"
	}
	switch cfg.AppendParams {
	case "":
		cfg.AppendParams = "nofb nomodeset vga=normal"
	case "-":
		cfg.AppendParams = ""
	}
	switch cfg.DefaultBootMode {
	case "":
		cfg.DefaultBootMode = "uefi"
	case "uefi", "bios":
	default:
		return cfg, nil, fmt.Errorf("boot: DefaultBootMode %q: want uefi or bios", cfg.DefaultBootMode)
	}
	switch cfg.DefaultBootOption {
	case "":
		cfg.DefaultBootOption = "netboot"
	case "netboot", "local":
	default:
		return cfg, nil, fmt.Errorf("boot: DefaultBootOption %q: want netboot or local", cfg.DefaultBootOption)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return cfg, log, nil
}

// Name is the interface's name in Ironic: "pxe" or "ipxe".
func (b *Interface) Name() string {
	if b.ipxe {
		return "ipxe"
	}
	return "pxe"
}

// Properties documents the driver_info keys this interface reads, as the
// API lists driver properties.
func (b *Interface) Properties() map[string]string {
	return map[string]string{
		"deploy_kernel":  "UUID (from Glance) of the deployment kernel. Required.",
		"deploy_ramdisk": "UUID (from Glance) of the ramdisk that is mounted at boot time. Required.",
	}
}

func invalid(format string, args ...any) error {
	return &drivers.ParameterError{Msg: fmt.Sprintf(format, args...)}
}

// loader is one boot program this interface copies into the TFTP root.
type loader struct{ src, name, pkg string }

func (b *Interface) loaders(mode string) []loader {
	if b.ipxe && b.cfg.Loaders.IPXEOnly {
		return nil
	}
	if b.ipxe {
		return []loader{
			{b.cfg.Loaders.UndiOnly, UndiOnlyNBP, "ipxe"},
			{b.cfg.Loaders.IPXEEFI, IPXEEFINBP, "ipxe"},
		}
	}
	l := []loader{
		{b.cfg.Loaders.PXELinux, PXELinuxNBP, "pxelinux"},
		{b.cfg.Loaders.LDLinux, LDLinuxName, "syslinux-common"},
	}
	if mode == "uefi" {
		l = append(l, loader{b.cfg.Loaders.IPXEEFI, IPXEEFINBP, "ipxe"})
	}
	return l
}

// Validate checks driver_info, the root device hints, the node's ports and
// that the boot programs are installed.
func (b *Interface) Validate(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	var missing []string
	for _, k := range []string{"deploy_kernel", "deploy_ramdisk"} {
		if s, _ := node.DriverInfo[k].(string); s == "" {
			missing = append(missing, "'"+k+"'")
		}
	}
	if len(missing) > 0 {
		return invalid("Cannot validate PXE bootloader. Some parameters were missing in node's driver_info. Missing are: [%s]", strings.Join(missing, ", "))
	}
	if _, err := rootDeviceHints(node.Properties["root_device"]); err != nil {
		return invalid("%v", err)
	}
	for _, l := range b.loaders(b.bootMode(node)) {
		if _, err := os.Stat(l.src); err != nil {
			return invalid("%s boot interface: %s is missing (install the Debian package %s)", b.Name(), l.src, l.pkg)
		}
	}
	ports := t.Ports
	if len(ports) == 0 {
		return invalid("Node %s does not have any port associated with it.", node.UUID)
	}
	if len(pxePorts(ports)) == 0 {
		return invalid("Node %s has no port with pxe_enabled set.", node.UUID)
	}
	return nil
}

func pxePorts(ports []provisioner.Port) []provisioner.Port {
	var out []provisioner.Port
	for _, p := range ports {
		if p.PXEEnabled && len(p.Address) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// PrepareRamdisk makes the node boot the deploy ramdisk next: it stages
// deploy_kernel and deploy_ramdisk, writes the config (default deploy) and
// its per-port links, the token, the boot programs, the DHCP answers, and
// sets the boot device to PXE for the next boot only. params join the
// deploy label's kernel parameters (a known key is replaced). The deploy
// key is params["deployment_key"], else driver_internal_info deploy_key,
// else a new one recorded there (the caller saves the node).
func (b *Interface) PrepareRamdisk(ctx context.Context, t *drivers.Task, params map[string]string) error {
	node := t.Node
	if err := b.Validate(ctx, t); err != nil {
		return err
	}
	mode := b.bootMode(node)
	if err := b.placeLoaders(mode); err != nil {
		return err
	}
	root := b.root()
	nodeDir := filepath.Join(root, node.UUID)
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	for _, img := range []struct{ key, name string }{{"deploy_kernel", deployKernel}, {"deploy_ramdisk", deployRamdisk}} {
		src, _ := node.DriverInfo[img.key].(string)
		if err := b.cfg.Images.Fetch(ctx, imagecache.Source{URL: src}, filepath.Join(nodeDir, img.name)); err != nil {
			return fmt.Errorf("boot: stage %s of node %s: %w", img.key, node.UUID, err)
		}
	}
	dp, err := b.deployParams(node, params)
	if err != nil {
		return err
	}
	if err := b.writeConfigs(node, mode, dp); err != nil {
		return err
	}
	if err := b.writeToken(ctx, node); err != nil {
		return err
	}
	ports, err := b.linkPorts(ctx, t)
	if err != nil {
		return err
	}
	b.setHosts(node, ports, mode, true)
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "pxe", Persistent: false}); err != nil {
		return fmt.Errorf("boot: set boot device pxe for %s: %w", node.UUID, err)
	}
	b.log.Info("deploy ramdisk prepared", "node", node.UUID, "boot_mode", mode, "ports", len(ports))
	return nil
}

// root is where configs and images go: the TFTP root for pxe, the HTTP
// root for ipxe.
func (b *Interface) root() string {
	if b.ipxe {
		return b.cfg.HTTPRoot
	}
	return b.cfg.TFTPRoot
}

// isAgent reports whether the node's ramdisk runs the agent: the deploy
// interface passes ipa-api-url, or the node names the direct interface.
func isAgent(node *provisioner.Node, extra map[string]string) bool {
	return extra["ipa-api-url"] != "" || node.Interfaces.Deploy == "direct"
}

// deployParams builds the deploy label's kernel parameters: for the agent
// (isAgent) what Ironic 21.4's pxe_config.template and
// build_extra_pxe_options put there (selinux=0 troubleshoot=0 text, the
// append params, then the ramdisk's: ipa-api-url, ipa-global-request-id);
// else in the order of Ironic's iSCSI-era template.
func (b *Interface) deployParams(node *provisioner.Node, extra map[string]string) ([]param, error) {
	if isAgent(node, extra) {
		ps := []param{{"selinux", "0"}, {"troubleshoot", "0"}, {"text", ""}}
		return checkMerge(b.appendParams(ps), extra)
	}
	key := extra["deployment_key"]
	if key == "" {
		key, _ = node.DriverInternalInfo["deploy_key"].(string)
	}
	if key == "" {
		k, err := randomAlnum(32)
		if err != nil {
			return nil, err
		}
		key = k
		if node.DriverInternalInfo == nil {
			node.DriverInternalInfo = map[string]any{}
		}
		node.DriverInternalInfo["deploy_key"] = key
	}
	hints, err := rootDeviceHints(node.Properties["root_device"])
	if err != nil {
		return nil, invalid("%v", err)
	}
	bootOption := b.bootOption(node)
	if isWholeDisk(node) {
		bootOption = "netboot" // the ramdisk installs no bootloader for whole disks
	}
	ps := []param{
		{"selinux", "0"},
		{"disk", b.cfg.DiskDevices},
		{"iscsi_target_iqn", "iqn.2008-10.org.openstack:" + node.UUID},
		{"deployment_id", node.UUID},
		{"deployment_key", key},
		{"ironic_api_url", b.cfg.APIURL},
		{"troubleshoot", "0"},
		{"text", ""},
	}
	ps = append(b.appendParams(ps), param{"boot_option", bootOption})
	if hints != "" {
		ps = append(ps, param{"root_device", hints})
	}
	ps = append(ps, param{"boot_mode", b.bootMode(node)})
	return checkMerge(ps, extra)
}

// appendParams appends AppendParams (pxe_append_params) to ps.
func (b *Interface) appendParams(ps []param) []param { return appendFields(ps, b.cfg.AppendParams) }

// appendFields appends the space-separated key[=value] words of s to ps.
func appendFields(ps []param, s string) []param {
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		ps = append(ps, param{k, v})
	}
	return ps
}

// checkMerge checks ps and merges the caller's extra parameters into them.
func checkMerge(ps []param, extra map[string]string) ([]param, error) {
	for _, p := range ps {
		if err := checkParam(p.Key, p.Value); err != nil {
			return nil, invalid("%v", err)
		}
	}
	merged, err := mergeParams(ps, extra)
	if err != nil {
		return nil, invalid("%v", err)
	}
	return merged, nil
}

// pxeConfigFor fills the config data: TFTP-root-relative paths for
// pxelinux, URLs for iPXE (base is HTTPURL, or tftp://<server> for the
// pxe interface's UEFI script).
func (b *Interface) pxeConfigFor(node *provisioner.Node, dp []param, base string) pxeConfig {
	at := func(name string) string {
		if base == "" {
			return node.UUID + "/" + name
		}
		return base + "/" + node.UUID + "/" + name
	}
	return pxeConfig{
		DeployKernel: at(deployKernel), DeployRamdisk: at(deployRamdisk),
		Kernel: at(instKernel), Ramdisk: at(instRamdisk),
		DeployParams: dp, AppendParams: b.cfg.AppendParams,
		IPXETimeoutMS: int(b.cfg.IPXETimeout / time.Millisecond),
	}
}

func (b *Interface) tftpURL() string { return "tftp://" + b.cfg.TFTPServer.String() }

// writeConfigs writes <uuid>/config (and for pxe in UEFI mode
// <uuid>/config.ipxe), plus boot.ipxe for ipxe.
func (b *Interface) writeConfigs(node *provisioner.Node, mode string, dp []param) error {
	nodeDir := filepath.Join(b.root(), node.UUID)
	if b.ipxe {
		if err := writeIfChanged(filepath.Join(b.cfg.HTTPRoot, bootScriptName), []byte(bootScript)); err != nil {
			return err
		}
		return writeFile(filepath.Join(nodeDir, configName), []byte(renderIPXE(b.pxeConfigFor(node, dp, b.cfg.HTTPURL))))
	}
	if err := writeFile(filepath.Join(nodeDir, configName), []byte(renderPXELinux(b.pxeConfigFor(node, dp, "")))); err != nil {
		return err
	}
	if mode == "uefi" {
		return writeFile(filepath.Join(nodeDir, configIPXEName), []byte(renderIPXE(b.pxeConfigFor(node, dp, b.tftpURL()))))
	}
	os.Remove(filepath.Join(nodeDir, configIPXEName))
	return nil
}

// macFile is the config link name for mac: 01-aa-bb-… for pxelinux,
// aa-bb-… for iPXE's ${mac:hexhyp}.
func (b *Interface) macFile(mac net.HardwareAddr) string {
	s := strings.ToLower(strings.ReplaceAll(mac.String(), ":", "-"))
	if b.ipxe {
		return s
	}
	return "01-" + s
}

// linkPorts links pxelinux.cfg/<mac> (and for pxe pxelinux.cfg/<uuid>) to
// the node's config and returns the PXE-enabled ports.
func (b *Interface) linkPorts(ctx context.Context, t *drivers.Task) ([]provisioner.Port, error) {
	node := t.Node
	all := t.Ports
	ports := pxePorts(all)
	dir := filepath.Join(b.root(), pxeCfgDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	target := path.Join("..", node.UUID, configName)
	names := make([]string, 0, len(ports)+1)
	for _, p := range ports {
		names = append(names, b.macFile(p.Address))
	}
	if !b.ipxe {
		names = append(names, strings.ToLower(node.UUID))
	}
	for _, n := range names {
		if err := relink(target, filepath.Join(dir, n)); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

// setHosts tells DHCP what each port boots; netboot false leaves the
// address but no boot file (the instance boots from disk).
func (b *Interface) setHosts(node *provisioner.Node, ports []provisioner.Port, mode string, netboot bool) {
	h := dhcp.Host{Hostname: node.Name, TFTPServer: b.cfg.TFTPServer}
	if netboot {
		if b.ipxe {
			if !b.cfg.Loaders.IPXEOnly {
				h.BIOSBootFile, h.UEFIBootFile = UndiOnlyNBP, IPXEEFINBP
			}
			h.IPXEScript = b.cfg.HTTPURL + "/" + bootScriptName
		} else {
			h.BIOSBootFile, h.UEFIBootFile = PXELinuxNBP, IPXEEFINBP
			if mode == "uefi" {
				h.IPXEScript = b.tftpURL() + "/" + node.UUID + "/" + configIPXEName
			}
		}
	}
	for _, p := range ports {
		b.cfg.Hosts.Set(p.Address, h)
		b.log.Debug("dhcp host set", "node", node.UUID, "mac", p.Address.String(), "bios", h.BIOSBootFile, "uefi", h.UEFIBootFile, "ipxe_script", h.IPXEScript)
	}
}

func (b *Interface) tokenPath(node *provisioner.Node) string {
	return filepath.Join(b.cfg.TFTPRoot, "token-"+node.UUID)
}

func (b *Interface) writeToken(ctx context.Context, node *provisioner.Node) error {
	if b.cfg.Token == nil {
		return nil
	}
	tok, err := b.cfg.Token(ctx, node)
	if err != nil {
		return fmt.Errorf("boot: token for %s: %w", node.UUID, err)
	}
	if tok == "" {
		os.Remove(b.tokenPath(node))
		return nil
	}
	return writeFileMode(b.tokenPath(node), []byte(tok), 0o644)
}

// placeLoaders copies the boot programs into the TFTP root when missing or
// different in size.
func (b *Interface) placeLoaders(mode string) error {
	for _, l := range b.loaders(mode) {
		st, err := os.Stat(l.src)
		if err != nil {
			return invalid("%s boot interface: %s is missing (install the Debian package %s)", b.Name(), l.src, l.pkg)
		}
		dst := filepath.Join(b.cfg.TFTPRoot, l.name)
		if dt, err := os.Stat(dst); err == nil && dt.Size() == st.Size() {
			continue
		}
		data, err := os.ReadFile(l.src)
		if err != nil {
			return fmt.Errorf("boot: read %s: %w", l.src, err)
		}
		if err := writeFile(dst, data); err != nil {
			return err
		}
	}
	return nil
}

// CleanUpRamdisk removes the deploy kernel, ramdisk and token; while the
// node still boots the deploy label it also removes the config, its links
// and the DHCP answers.
func (b *Interface) CleanUpRamdisk(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	nodeDir := filepath.Join(b.root(), node.UUID)
	var errs []error
	for _, n := range []string{deployKernel, deployRamdisk} {
		errs = append(errs, removeFile(filepath.Join(nodeDir, n)))
	}
	errs = append(errs, removeFile(b.tokenPath(node)))
	cfg, err := os.ReadFile(filepath.Join(nodeDir, configName))
	if err == nil && b.stillDeploy(string(cfg)) {
		errs = append(errs, b.removeAll(ctx, t))
	}
	return errors.Join(errs...)
}

func (b *Interface) stillDeploy(cfg string) bool {
	if b.ipxe {
		return strings.Contains(cfg, "\ngoto deploy\n")
	}
	return strings.HasPrefix(cfg, "default deploy\n")
}

// PrepareInstance makes the node boot the instance next. Netboot (partition
// images): stage instance_info kernel and ramdisk, switch the config to the
// boot label with root=UUID=<root_uuid_or_disk_id> and set the boot device
// to PXE for good. Local boot (capability boot_option:local, or a whole-disk
// image): remove the config and set the boot device to disk for good.
func (b *Interface) PrepareInstance(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	mode := b.bootMode(node)
	if b.bootOption(node) == "local" || isWholeDisk(node) {
		if err := b.removeConfig(ctx, t); err != nil {
			return err
		}
		b.setHosts(node, pxePorts(t.Ports), mode, false)
		if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "disk", Persistent: true}); err != nil {
			return fmt.Errorf("boot: set boot device disk for %s: %w", node.UUID, err)
		}
		b.log.Info("instance prepared for local boot", "node", node.UUID, "boot_mode", mode)
		return nil
	}
	rootUUID, _ := node.DriverInternalInfo["root_uuid_or_disk_id"].(string)
	if rootUUID == "" {
		return fmt.Errorf("boot: the UUID for the root partition of node %s can't be found, unable to switch the pxe config from deployment mode to service (boot) mode", node.UUID)
	}
	if strings.ContainsAny(rootUUID, " \t\r\n") {
		return fmt.Errorf("boot: root_uuid_or_disk_id %q of node %s is malformed", rootUUID, node.UUID)
	}
	var missing []string
	srcs := map[string]string{}
	for _, k := range []string{"kernel", "ramdisk"} {
		s, _ := node.InstanceInfo[k].(string)
		if s == "" {
			missing = append(missing, "'"+k+"'")
		}
		srcs[k] = s
	}
	if len(missing) > 0 {
		return invalid("Cannot boot the instance of node %s over the network. Some parameters were missing in node's instance_info. Missing are: [%s]", node.UUID, strings.Join(missing, ", "))
	}
	if err := b.placeLoaders(mode); err != nil {
		return err
	}
	nodeDir := filepath.Join(b.root(), node.UUID)
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	for k, name := range map[string]string{"kernel": instKernel, "ramdisk": instRamdisk} {
		if err := b.cfg.Images.Fetch(ctx, imagecache.Source{URL: srcs[k]}, filepath.Join(nodeDir, name)); err != nil {
			return fmt.Errorf("boot: stage instance %s of node %s: %w", k, node.UUID, err)
		}
	}
	// A conductor that took the node over has no config yet: write it.
	if _, err := os.Stat(filepath.Join(nodeDir, configName)); err != nil {
		dp, err := b.deployParams(node, nil)
		if err != nil {
			return err
		}
		if err := b.writeConfigs(node, mode, dp); err != nil {
			return err
		}
	}
	names := []string{configName}
	if !b.ipxe && mode == "uefi" {
		names = append(names, configIPXEName)
	}
	for _, n := range names {
		p := filepath.Join(nodeDir, n)
		text, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && n == configIPXEName {
			dp, derr := b.deployParams(node, nil)
			if derr != nil {
				return derr
			}
			text = []byte(renderIPXE(b.pxeConfigFor(node, dp, b.tftpURL())))
		} else if err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		ipxe := b.ipxe || n == configIPXEName
		if err := writeFile(p, []byte(switchToBoot(string(text), rootUUID, ipxe))); err != nil {
			return err
		}
	}
	ports, err := b.linkPorts(ctx, t)
	if err != nil {
		return err
	}
	b.setHosts(node, ports, mode, true)
	if err := t.Management.SetBootDevice(ctx, node, drivers.BootDevice{Device: "pxe", Persistent: true}); err != nil {
		return fmt.Errorf("boot: set boot device pxe for %s: %w", node.UUID, err)
	}
	b.log.Info("instance prepared for netboot", "node", node.UUID, "boot_mode", mode, "root_uuid", rootUUID)
	return nil
}

// CleanUpInstance removes everything the node's boot used: config, links,
// kernels and ramdisks, token and DHCP answers.
func (b *Interface) CleanUpInstance(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	return errors.Join(b.removeAll(ctx, t), removeFile(b.tokenPath(node)))
}

// removeConfig removes the config links and the node's directory.
func (b *Interface) removeConfig(ctx context.Context, t *drivers.Task) error {
	node := t.Node
	all := t.Ports
	dir := filepath.Join(b.root(), pxeCfgDir)
	var errs []error
	for _, p := range all {
		if len(p.Address) > 0 {
			errs = append(errs, removeFile(filepath.Join(dir, b.macFile(p.Address))))
		}
	}
	if !b.ipxe {
		errs = append(errs, removeFile(filepath.Join(dir, strings.ToLower(node.UUID))))
	}
	if err := os.RemoveAll(filepath.Join(b.root(), node.UUID)); err != nil {
		errs = append(errs, fmt.Errorf("boot: %w", err))
	}
	return errors.Join(errs...)
}

// removeAll removes the config and the DHCP answers of every port.
func (b *Interface) removeAll(ctx context.Context, t *drivers.Task) error {
	if err := b.removeConfig(ctx, t); err != nil {
		return err
	}
	for _, p := range t.Ports {
		if len(p.Address) > 0 {
			b.cfg.Hosts.Delete(p.Address)
		}
	}
	return nil
}

// bootMode is Ironic's get_boot_mode: instance_info deploy_boot_mode, then
// the boot_mode capability of instance_info and properties, then the
// node's boot_mode, then the default.
func (b *Interface) bootMode(node *provisioner.Node) string {
	return node.DeployBootMode(b.cfg.DefaultBootMode)
}

// bootOption is Ironic's get_boot_option: instance_info boot_option, then
// the boot_option capability of instance_info and properties.
func (b *Interface) bootOption(node *provisioner.Node) string {
	return node.DeployBootOption(b.cfg.DefaultBootOption)
}

func isWholeDisk(node *provisioner.Node) bool {
	v, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	return v
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomAlnum is Ironic's utils.random_alnum (upper case and digits).
func randomAlnum(n int) (string, error) {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alnum)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("boot: deploy key: %w", err)
		}
		b[i] = alnum[v.Int64()]
	}
	return string(b), nil
}

// writeFile replaces p atomically (temp + rename), creating its directory.
func writeFile(p string, data []byte) error { return writeFileMode(p, data, 0o644) }

func writeFileMode(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), mode)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("boot: write %s: %w", p, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("boot: %w", err)
	}
	return nil
}

// writeIfChanged writes p only when its content differs (boot.ipxe is
// shared by every node).
func writeIfChanged(p string, data []byte) error {
	if cur, err := os.ReadFile(p); err == nil && string(cur) == string(data) {
		return nil
	}
	return writeFile(p, data)
}

// relink makes link a symlink to target, replacing what was there.
func relink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("boot: link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("boot: link %s: %w", link, err)
	}
	return nil
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("boot: %w", err)
	}
	return nil
}
