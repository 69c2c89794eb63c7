package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/metalbed/metalbed/vms/ramdisk"
)

// Inventory is IPA's hardware inventory (hardware.list_hardware_info), in
// its JSON shape: sent on legacy lookup and kept for the logs.
type Inventory struct {
	Interfaces   []InvInterface  `json:"interfaces"`
	CPU          InvCPU          `json:"cpu"`
	Disks        []InvDisk       `json:"disks"`
	Memory       InvMemory       `json:"memory"`
	BMCAddress   string          `json:"bmc_address"`
	BMCV6Address string          `json:"bmc_v6address"`
	SystemVendor InvSystemVendor `json:"system_vendor"`
	Boot         InvBoot         `json:"boot"`
	Hostname     string          `json:"hostname"`
}

// InvInterface is IPA's NetworkInterface.
type InvInterface struct {
	Name        string  `json:"name"`
	MACAddress  string  `json:"mac_address"`
	IPv4Address *string `json:"ipv4_address"`
	IPv6Address *string `json:"ipv6_address"`
	HasCarrier  bool    `json:"has_carrier"`
	LLDP        any     `json:"lldp"`
	Vendor      *string `json:"vendor"`
	Product     *string `json:"product"`
	ClientID    *string `json:"client_id"`
	Biosdevname *string `json:"biosdevname"`
}

// InvCPU is IPA's CPU.
type InvCPU struct {
	ModelName    string   `json:"model_name"`
	Frequency    string   `json:"frequency"`
	Count        int      `json:"count"`
	Architecture string   `json:"architecture"`
	Flags        []string `json:"flags"`
}

// InvDisk is IPA's BlockDevice.
type InvDisk struct {
	Name               string  `json:"name"`
	Model              string  `json:"model"`
	Size               int64   `json:"size"`
	Rotational         bool    `json:"rotational"`
	WWN                *string `json:"wwn"`
	Serial             *string `json:"serial"`
	Vendor             *string `json:"vendor"`
	WWNWithExtension   *string `json:"wwn_with_extension"`
	WWNVendorExtension *string `json:"wwn_vendor_extension"`
	HCTL               *string `json:"hctl"`
	ByPath             *string `json:"by_path"`
}

// InvMemory is IPA's Memory.
type InvMemory struct {
	Total      int64  `json:"total"`
	PhysicalMB *int64 `json:"physical_mb"`
}

// InvSystemVendor is IPA's SystemVendorInfo.
type InvSystemVendor struct {
	ProductName  string `json:"product_name"`
	SerialNumber string `json:"serial_number"`
	Manufacturer string `json:"manufacturer"`
}

// InvBoot is IPA's BootInfo.
type InvBoot struct {
	CurrentBootMode string  `json:"current_boot_mode"`
	PXEInterface    *string `json:"pxe_interface"`
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// inventory collects the inventory from the Env.
func (a *Agent) inventory(ctx context.Context) (*Inventory, error) {
	hw, err := a.cfg.Env.Hardware(ctx)
	if err != nil {
		return nil, err
	}
	disks, err := a.cfg.Env.Disks(ctx)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{
		CPU: InvCPU{
			ModelName: hw.CPU.ModelName, Frequency: hw.CPU.Frequency, Count: hw.CPU.Count,
			Architecture: hw.CPU.Architecture, Flags: append([]string{}, hw.CPU.Flags...),
		},
		Memory:       InvMemory{Total: hw.MemoryBytes},
		BMCAddress:   hw.BMCAddress,
		BMCV6Address: "::/0",
		SystemVendor: InvSystemVendor{ProductName: hw.Vendor.ProductName, SerialNumber: hw.Vendor.SerialNumber, Manufacturer: hw.Vendor.Manufacturer},
		Boot:         InvBoot{CurrentBootMode: hw.BootMode, PXEInterface: strp(hw.PXEInterface)},
		Hostname:     hw.Hostname,
		Interfaces:   []InvInterface{},
		Disks:        []InvDisk{},
	}
	if inv.CPU.Architecture == "" {
		inv.CPU.Architecture = "x86_64"
	}
	if inv.BMCAddress == "" {
		inv.BMCAddress = "0.0.0.0"
	}
	if inv.Boot.CurrentBootMode == "" {
		inv.Boot.CurrentBootMode = "bios"
	}
	if inv.Hostname == "" {
		inv.Hostname = "localhost.localdomain"
	}
	if hw.PhysicalMB > 0 {
		inv.Memory.PhysicalMB = &hw.PhysicalMB
	}
	for _, n := range hw.NICs {
		inv.Interfaces = append(inv.Interfaces, InvInterface{
			Name: n.Name, MACAddress: strings.ToLower(n.MAC), IPv4Address: strp(n.IPv4),
			HasCarrier: n.HasCarrier, Vendor: strp(n.Vendor), Product: strp(n.Product),
		})
	}
	for _, d := range disks {
		inv.Disks = append(inv.Disks, invDisk(d))
	}
	return inv, nil
}

func invDisk(d ramdisk.Disk) InvDisk {
	return InvDisk{
		Name: "/dev/" + d.Name, Model: d.Model, Size: d.SizeBytes, Rotational: d.Rotational,
		WWN: strp(d.WWN), Serial: strp(d.Serial), Vendor: strp(d.Vendor), WWNWithExtension: strp(d.WWN),
		HCTL: strp(d.HCTL), ByPath: strp(d.ByPath),
	}
}

// errNoDevice is IPA's DeviceNotFound.
var errNoDevice = errors.New("no install device")

// installDevice is IPA's get_os_install_device: the disk matching the
// node's root_device hints, else the smallest disk of at least
// MinDiskBytes.
func (a *Agent) installDevice(ctx context.Context) (ramdisk.Disk, error) {
	disks, err := a.cfg.Env.Disks(ctx)
	if err != nil {
		return ramdisk.Disk{}, fmt.Errorf("list disks: %w", err)
	}
	a.mu.Lock()
	hints := rootDeviceHints(a.node)
	a.mu.Unlock()
	if len(hints) > 0 {
		for _, d := range disks {
			if d.Dev != nil && matchHints(d, hints) {
				return d, nil
			}
		}
		return ramdisk.Disk{}, &restError{Type: "DeviceNotFound", Code: 404,
			Message: "Error finding the disk or partition device to deploy the image onto",
			Details: fmt.Sprintf("No suitable device was found for deployment using these hints %v", hints), cause: errNoDevice}
	}
	sorted := append([]ramdisk.Disk{}, disks...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].SizeBytes < sorted[j].SizeBytes })
	for _, d := range sorted {
		if a.cfg.MinDiskBytes < 0 || d.SizeBytes >= a.cfg.MinDiskBytes {
			if d.Dev == nil {
				continue
			}
			return d, nil
		}
	}
	min := a.cfg.MinDiskBytes
	if min < 0 {
		min = 0
	}
	return ramdisk.Disk{}, &restError{Type: "DeviceNotFound", Code: 404,
		Message: "Error finding the disk or partition device to deploy the image onto",
		Details: fmt.Sprintf("No suitable device was found for deployment - root device hints were not provided and all found block devices are smaller than %dB.", min),
		cause:   errNoDevice}
}

// rootDeviceHints reads properties.root_device of the cached node.
func rootDeviceHints(node map[string]any) map[string]string {
	props, _ := node["properties"].(map[string]any)
	rd, _ := props["root_device"].(map[string]any)
	if len(rd) == 0 {
		return nil
	}
	hints := map[string]string{}
	for k, v := range rd {
		hints[k] = fmt.Sprint(v)
	}
	return hints
}

// matchHints applies Ironic's root device hints: strings case-insensitive
// with an optional "s==" operator, size in GiB with ==, >=, <=, >, <.
func matchHints(d ramdisk.Disk, hints map[string]string) bool {
	for k, v := range hints {
		v = strings.TrimSpace(v)
		str := strings.TrimSpace(strings.TrimPrefix(v, "s=="))
		var ok bool
		switch k {
		case "name":
			ok = strings.TrimPrefix(str, "/dev/") == d.Name
		case "size":
			ok = matchSize(d.SizeBytes>>30, v)
		case "model":
			ok = strings.EqualFold(str, d.Model)
		case "vendor":
			ok = strings.EqualFold(str, d.Vendor)
		case "serial":
			ok = strings.EqualFold(str, d.Serial)
		case "wwn", "wwn_with_extension":
			ok = strings.EqualFold(str, d.WWN)
		case "rotational":
			b, err := strconv.ParseBool(strings.TrimPrefix(str, "<is> "))
			ok = err == nil && b == d.Rotational
		case "hctl":
			ok = str == d.HCTL
		case "by_path":
			ok = strings.TrimPrefix(str, "/dev/disk/by-path/") == strings.TrimPrefix(d.ByPath, "/dev/disk/by-path/")
		}
		if !ok {
			return false
		}
	}
	return true
}

func matchSize(gib int64, v string) bool {
	op := "=="
	for _, o := range []string{">=", "<=", "==", ">", "<", "="} {
		if strings.HasPrefix(v, o) {
			op, v = o, strings.TrimSpace(v[len(o):])
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false
	}
	switch op {
	case ">=":
		return gib >= n
	case "<=":
		return gib <= n
	case ">":
		return gib > n
	case "<":
		return gib < n
	}
	return gib == n
}
