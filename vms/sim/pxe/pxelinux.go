package pxe

import (
	"bufio"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
)

// pxelinuxConfigNames is the order in which PXELINUX looks for its config
// under pxelinux.cfg/: the machine UUID, ARP type + MAC, the client IP in
// hex with ever fewer digits, then "default".
func pxelinuxConfigNames(uuid string, mac net.HardwareAddr, ip net.IP) []string {
	var names []string
	if uuid != "" {
		names = append(names, strings.ToLower(uuid))
	}
	names = append(names, "01-"+strings.ToLower(strings.ReplaceAll(mac.String(), ":", "-")))
	if v4 := ip.To4(); v4 != nil {
		hex := fmt.Sprintf("%02X%02X%02X%02X", v4[0], v4[1], v4[2], v4[3])
		for n := len(hex); n > 0; n-- {
			names = append(names, hex[:n])
		}
	}
	names = append(names, "default")
	for i := range names {
		names[i] = "pxelinux.cfg/" + names[i]
	}
	return names
}

// pxeLabel is one label of a pxelinux config.
type pxeLabel struct {
	Name      string
	Kernel    string
	Append    string
	IPAppend  int
	LocalBoot bool
	// COM32 names a SYSLINUX module the label runs instead of a kernel
	// (Ironic's boot_whole_disk label: "COM32 chain.c32", append mbr:<id>).
	COM32 string
	// Initrd is the label's "initrd" directive (SYSLINUX 4+), files
	// loaded before those of initrd= on the append line.
	Initrd string
}

// pxeConfig is a parsed pxelinux config: the labels and which is default.
type pxeConfig struct {
	Default string
	Labels  map[string]*pxeLabel
	Order   []string
}

// parsePXELinux reads the subset of the SYSLINUX config language Ironic's
// templates use: default, label, kernel/linux, append, ipappend, localboot;
// display directives (prompt, timeout, say, menu …) are accepted and ignored.
func parsePXELinux(text string) (*pxeConfig, error) {
	cfg := &pxeConfig{Labels: map[string]*pxeLabel{}}
	var cur *pxeLabel
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToLower(key) {
		case "default":
			cfg.Default = rest
		case "label":
			if rest == "" {
				return nil, fmt.Errorf("line %d: label without a name", n)
			}
			cur = &pxeLabel{Name: rest}
			cfg.Labels[rest] = cur
			cfg.Order = append(cfg.Order, rest)
		case "kernel", "linux":
			if cur == nil {
				return nil, fmt.Errorf("line %d: %s outside a label", n, key)
			}
			cur.Kernel = rest
		case "initrd":
			if cur == nil {
				return nil, fmt.Errorf("line %d: initrd outside a label", n)
			}
			cur.Initrd = rest
		case "append":
			if cur == nil {
				return nil, fmt.Errorf("line %d: append outside a label", n)
			}
			cur.Append = rest
		case "ipappend", "sysappend":
			if cur == nil {
				return nil, fmt.Errorf("line %d: %s outside a label", n, key)
			}
			v, err := strconv.Atoi(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s %q: %v", n, key, rest, err)
			}
			cur.IPAppend = v
		case "localboot":
			if cur == nil {
				return nil, fmt.Errorf("line %d: localboot outside a label", n)
			}
			cur.LocalBoot = true
		case "com32":
			if cur == nil || rest == "" {
				return nil, fmt.Errorf("line %d: com32 outside a label or without a module", n)
			}
			cur.COM32 = rest
		case "prompt", "timeout", "ui", "f1", "f2", "totaltimeout", "ontimeout", "say", "display", "menu", "serial", "noescape", "implicit", "allowoptions", "font", "kbdmap":
		default:
			return nil, fmt.Errorf("line %d: unknown directive %q", n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// pick returns the label to boot: the default, else the first.
func (c *pxeConfig) pick() (*pxeLabel, error) {
	name := c.Default
	if name == "" && len(c.Order) > 0 {
		name = c.Order[0]
	}
	// "default vesamenu.c32" style defaults name a module, not a label.
	if l, ok := c.Labels[name]; ok {
		return l, nil
	}
	if len(c.Order) > 0 && strings.HasSuffix(name, ".c32") {
		return c.Labels[c.Order[0]], nil
	}
	return nil, fmt.Errorf("default label %q not found", name)
}

// SyslinuxLabel is the label a SYSLINUX-family config (pxelinux.cfg,
// isolinux.cfg, syslinux.cfg) boots by default.
type SyslinuxLabel struct {
	Name, Kernel, Append string
	// Initrds are the files the label loads: its initrd directive's,
	// then initrd=a,b of its append line.
	Initrds   []string
	LocalBoot bool
	COM32     string
}

// ParseSyslinuxDefault parses a SYSLINUX-family config (the subset
// Ironic's templates use) and returns its default label.
func ParseSyslinuxDefault(text string) (SyslinuxLabel, error) {
	cfg, err := parsePXELinux(text)
	if err != nil {
		return SyslinuxLabel{}, err
	}
	l, err := cfg.pick()
	if err != nil {
		return SyslinuxLabel{}, err
	}
	out := SyslinuxLabel{Name: l.Name, Kernel: l.Kernel, Append: l.Append, LocalBoot: l.LocalBoot, COM32: l.COM32}
	if l.Initrd != "" {
		out.Initrds = append(out.Initrds, strings.Split(l.Initrd, ",")...)
	}
	out.Initrds = append(out.Initrds, initrds(l.Append)...)
	return out, nil
}

// initrds takes initrd=a,b out of an append line, returning the files and
// the command line the kernel sees (pxelinux keeps initrd= on it).
func initrds(appendLine string) []string {
	var files []string
	for _, f := range strings.Fields(appendLine) {
		if v, ok := strings.CutPrefix(f, "initrd="); ok {
			for _, p := range strings.Split(v, ",") {
				if p != "" {
					files = append(files, p)
				}
			}
		}
	}
	return files
}

// ipappendArgs are what pxelinux adds for "ipappend 1/2/3".
func ipappendArgs(flags int, l Lease, mac net.HardwareAddr) string {
	var parts []string
	if flags&1 != 0 {
		mask := ""
		if l.Netmask != nil {
			mask = net.IP(l.Netmask).String()
		}
		gw := ""
		if l.Router != nil {
			gw = l.Router.String()
		}
		parts = append(parts, fmt.Sprintf("ip=%s:%s:%s:%s", l.IP, l.NextServer, gw, mask))
	}
	if flags&2 != 0 {
		parts = append(parts, "BOOTIF=01-"+strings.ToLower(strings.ReplaceAll(mac.String(), ":", "-")))
	}
	return strings.Join(parts, " ")
}

// resolveTFTP makes a config-relative path absolute under the NBP's
// directory, as pxelinux does with its path prefix.
func resolveTFTP(prefix, p string) string {
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") || prefix == "" || prefix == "." {
		return strings.TrimPrefix(p, "/")
	}
	return path.Join(prefix, p)
}
