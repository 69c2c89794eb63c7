// Package ramdisk is metalbed's deploy ramdisk: one program that is /init in
// a real VM and runs in-process for simulated machines, with the machine's
// disks, NIC and kernel command line injected through Env. It does what the
// old Ironic bash ramdisk did for the iSCSI deploy: find the disk, export it
// over iSCSI as LUN 1, call pass_deploy_info, wait for the conductor on TCP
// 10000, and for local boot install the bootloader and call
// pass_bootloader_install_info.
package ramdisk

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Params are the kernel parameters the conductor put on the deploy label.
type Params struct {
	DeploymentID   string            // deployment_id: the node UUID
	DeploymentKey  string            // deployment_key
	ISCSITargetIQN string            // iscsi_target_iqn
	IronicAPIURL   string            // ironic_api_url
	Disks          []string          // disk=cciss/c0d0,sda,hda,vda
	BootOption     string            // boot_option: netboot (default) or local
	BootMode       string            // boot_mode: bios (default) or uefi
	RootDevice     map[string]string // root_device=serial=…,model=…
	Troubleshoot   bool              // troubleshoot=1 keeps a shell on failure (real VMs)
	// From pxelinux "ipappend 3": ip=<client>:<server>:<gw>:<mask>, BOOTIF=01-<mac>.
	ClientIP   net.IP
	BootServer net.IP
	Gateway    net.IP
	Netmask    net.IPMask
	BootIF     net.HardwareAddr
	// Raw keeps every parameter, for agent-mode keys and diagnostics.
	Raw map[string]string
}

// ParseCmdline reads a kernel command line. Unknown parameters are kept in
// Raw; a malformed one the deploy needs is an error naming it.
func ParseCmdline(cmdline string) (Params, error) {
	p := Params{BootOption: "netboot", BootMode: "bios", Raw: map[string]string{}}
	for _, field := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(field, "=")
		p.Raw[k] = v
	}
	var errs []error
	p.DeploymentID = p.Raw["deployment_id"]
	p.DeploymentKey = p.Raw["deployment_key"]
	p.ISCSITargetIQN = p.Raw["iscsi_target_iqn"]
	p.IronicAPIURL = strings.TrimRight(p.Raw["ironic_api_url"], "/")
	if d := p.Raw["disk"]; d != "" {
		for _, c := range strings.Split(d, ",") {
			if c = strings.TrimSpace(c); c != "" {
				p.Disks = append(p.Disks, c)
			}
		}
	}
	if v, ok := p.Raw["boot_option"]; ok && v != "" {
		if v != "local" && v != "netboot" {
			errs = append(errs, fmt.Errorf("boot_option=%q: want local or netboot", v))
		}
		p.BootOption = v
	}
	if v, ok := p.Raw["boot_mode"]; ok && v != "" {
		if v != "bios" && v != "uefi" {
			errs = append(errs, fmt.Errorf("boot_mode=%q: want bios or uefi", v))
		}
		p.BootMode = v
	}
	if v := p.Raw["root_device"]; v != "" {
		hints, err := parseHints(v)
		if err != nil {
			errs = append(errs, err)
		}
		p.RootDevice = hints
	}
	p.Troubleshoot = p.Raw["troubleshoot"] == "1"
	if v := p.Raw["ip"]; v != "" {
		if err := p.parseIP(v); err != nil {
			errs = append(errs, err)
		}
	}
	if v := p.Raw["BOOTIF"]; v != "" {
		// pxelinux writes 01-aa-bb-cc-dd-ee-ff: ARP type 1, then the MAC.
		mac, err := net.ParseMAC(strings.ReplaceAll(strings.TrimPrefix(v, "01-"), "-", ":"))
		if err != nil {
			errs = append(errs, fmt.Errorf("BOOTIF=%q: %v", v, err))
		}
		p.BootIF = mac
	}
	return p, errors.Join(errs...)
}

// CheckISCSIDeploy reports what an iSCSI deploy cannot do without.
func (p Params) CheckISCSIDeploy() error {
	var missing []string
	for _, kv := range [][2]string{
		{"deployment_id", p.DeploymentID},
		{"deployment_key", p.DeploymentKey},
		{"iscsi_target_iqn", p.ISCSITargetIQN},
		{"ironic_api_url", p.IronicAPIURL},
	} {
		if kv[1] == "" {
			missing = append(missing, kv[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel command line lacks %s", strings.Join(missing, ", "))
	}
	if _, err := url.Parse(p.IronicAPIURL); err != nil {
		return fmt.Errorf("ironic_api_url: %w", err)
	}
	return nil
}

// parseIP reads ip=<client>:<server>:<gw>:<mask> as pxelinux appends it.
func (p *Params) parseIP(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 4 {
		return fmt.Errorf("ip=%q: want client:server:gateway:netmask", v)
	}
	ips := make([]net.IP, 4)
	for i := range 4 {
		if parts[i] == "" {
			continue
		}
		if ips[i] = net.ParseIP(parts[i]); ips[i] == nil {
			return fmt.Errorf("ip=%q: bad address %q", v, parts[i])
		}
	}
	p.ClientIP, p.BootServer, p.Gateway = ips[0], ips[1], ips[2]
	if ips[3] != nil {
		p.Netmask = net.IPMask(ips[3].To4())
	}
	return nil
}

// parseHints reads root_device hints: key=value pairs joined by commas,
// values URL-encoded (Ironic quotes them).
func parseHints(v string) (map[string]string, error) {
	hints := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("root_device=%q: %q is not key=value", v, kv)
		}
		dec, err := url.QueryUnescape(val)
		if err != nil {
			return nil, fmt.Errorf("root_device=%q: %v", v, err)
		}
		if !knownHint[k] {
			return nil, fmt.Errorf("root_device=%q: unknown hint %q", v, k)
		}
		hints[k] = dec
	}
	return hints, nil
}

var knownHint = map[string]bool{
	"name": true, "size": true, "model": true, "vendor": true, "serial": true,
	"wwn": true, "wwn_with_extension": true, "wwn_vendor_extension": true,
	"rotational": true, "hctl": true, "by_path": true,
}
