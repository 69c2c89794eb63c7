package boot

import (
	"fmt"
	"sort"
	"strings"
)

// The files a node's network boot reads, laid out as Ironic's pxe_utils
// lays them out (relative to the TFTP root for pxe, the HTTP root for
// ipxe):
//
//	<uuid>/config                 the node's pxelinux config or iPXE script
//	<uuid>/config.ipxe            pxe in UEFI mode: the iPXE rendering (TFTP)
//	<uuid>/deploy_kernel, deploy_ramdisk, kernel, ramdisk
//	pxelinux.cfg/01-<mac>         pxe: link to ../<uuid>/config, per port
//	pxelinux.cfg/<uuid>           pxe: the same, by node UUID
//	pxelinux.cfg/<mac>            ipxe: link to ../<uuid>/config, per port
//	boot.ipxe                     ipxe: chains pxelinux.cfg/${mac:hexhyp}
//	token-<uuid>                  TFTP root: the ramdisk's X-Auth-Token
const (
	configName     = "config"
	configIPXEName = "config.ipxe"
	pxeCfgDir      = "pxelinux.cfg"
	bootScriptName = "boot.ipxe"
	deployKernel   = "deploy_kernel"
	deployRamdisk  = "deploy_ramdisk"
	instKernel     = "kernel"
	instRamdisk    = "ramdisk"
	// rootTag is what the boot label carries until the root partition is
	// known, as in Ironic's configs; PrepareInstance replaces it.
	rootTag = "{{ ROOT }}"
	// ipxeAttempts is Ironic's retry bound in ipxe_config.template.
	ipxeAttempts = 10
)

// param is one kernel parameter; an empty Value is written as the bare key.
type param struct{ Key, Value string }

func (p param) String() string {
	if p.Value == "" {
		return p.Key
	}
	return p.Key + "=" + p.Value
}

func joinParams(ps []param) string {
	s := make([]string, 0, len(ps))
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// checkParam refuses what would break a config line or an iPXE command.
func checkParam(k, v string) error {
	if k == "" || strings.ContainsAny(k, " \t\r\n=") {
		return fmt.Errorf("kernel parameter name %q is malformed", k)
	}
	if strings.ContainsAny(v, " \t\r\n") || strings.Contains(v, "||") || strings.Contains(v, "&&") ||
		strings.Contains(k, "||") || strings.Contains(k, "&&") {
		return fmt.Errorf("kernel parameter %s=%q is malformed (whitespace or iPXE operators)", k, v)
	}
	return nil
}

// mergeParams puts extra into base: a known key keeps its place with the
// new value, the others follow in name order.
func mergeParams(base []param, extra map[string]string) ([]param, error) {
	out := append([]param(nil), base...)
	idx := map[string]int{}
	for i, p := range out {
		idx[p.Key] = i
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := extra[k]
		if err := checkParam(k, v); err != nil {
			return nil, err
		}
		if i, ok := idx[k]; ok {
			out[i].Value = v
			continue
		}
		out = append(out, param{k, v})
	}
	return out, nil
}

// rootDeviceHints flattens properties.root_device as Ironic's
// parse_root_device_hints did: key=urlquoted-value joined by commas, in
// key order.
func rootDeviceHints(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("root_device must be a dictionary, not %T", v)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !validHints[k] {
			valid := make([]string, 0, len(validHints))
			for h := range validHints {
				valid = append(valid, h)
			}
			sort.Strings(valid)
			return "", fmt.Errorf("The hints \"%s\" are invalid. Valid hints are: \"%s\"", k, strings.Join(valid, ", "))
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var hints []string
	for _, k := range keys {
		var s string
		switch x := m[k].(type) {
		case string:
			s = quote(strings.TrimSpace(x))
		case float64:
			if x != float64(int64(x)) {
				return "", fmt.Errorf("Root device hint %q is not an integer value.", k)
			}
			s = fmt.Sprint(int64(x))
		case int:
			s = fmt.Sprint(x)
		case int64:
			s = fmt.Sprint(x)
		case bool:
			s = "False" // Python's str(), as Ironic formatted it
			if x {
				s = "True"
			}
		default:
			return "", fmt.Errorf("root device hint %q has an unsupported value %v", k, x)
		}
		if k == "size" {
			if _, err := fmt.Sscanf(s, "%d", new(int64)); err != nil {
				return "", fmt.Errorf("Root device hint \"size\" is not an integer value.")
			}
		}
		hints = append(hints, k+"="+s)
	}
	return strings.Join(hints, ","), nil
}

// quote is Python's urllib.parse.quote with its default safe "/": what
// Ironic applied to hint values (the ramdisk unquotes them).
func quote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("_.-~/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// validHints are Ironic's root device hints.
var validHints = map[string]bool{
	"size": true, "model": true, "wwn": true, "serial": true, "vendor": true,
	"wwn_with_extension": true, "wwn_vendor_extension": true, "name": true,
	"rotational": true, "hctl": true, "by_path": true,
}

// pxeConfig is the data of one node's boot config.
type pxeConfig struct {
	DeployKernel, DeployRamdisk string // paths or URLs
	Kernel, Ramdisk             string
	DeployParams                []param // the deploy label's kernel parameters
	AppendParams                string  // pxe_append_params, also on the boot label
	IPXETimeoutMS               int     // iPXE --timeout in ms; 0: none
}

// agent reports whether the deploy label boots the agent (its parameters
// carry ipa-api-url): Ironic 21.4's templates then append only BOOTIF
// (pxelinux "ipappend 2", iPXE BOOTIF=${mac}), no ip=.
func (c pxeConfig) agent() bool {
	for _, p := range c.DeployParams {
		if p.Key == "ipa-api-url" {
			return true
		}
	}
	return false
}

// renderPXELinux writes the pxelinux config: default deploy; the deploy
// label with the ramdisk's parameters and "ipappend 3" (ip= and BOOTIF=;
// "ipappend 2", BOOTIF= alone, for the agent);
// the boot label with root={{ ROOT }} until the instance is deployed.
func renderPXELinux(c pxeConfig) string {
	var b strings.Builder
	b.WriteString("default deploy\n\n")
	b.WriteString("label deploy\n")
	fmt.Fprintf(&b, "kernel %s\n", c.DeployKernel)
	fmt.Fprintf(&b, "append %s\n", joinWords("initrd="+c.DeployRamdisk, joinParams(c.DeployParams)))
	if c.agent() {
		b.WriteString("ipappend 2\n\n\n")
	} else {
		b.WriteString("ipappend 3\n\n\n")
	}
	b.WriteString("label boot\n")
	fmt.Fprintf(&b, "kernel %s\n", c.Kernel)
	fmt.Fprintf(&b, "append %s\n", joinWords("initrd="+c.Ramdisk, "root="+rootTag, "ro", "text", c.AppendParams))
	return b.String()
}

// renderIPXE writes the node's iPXE script as Ironic's ipxe_config.template
// does: the deploy section retries its downloads ten times with a growing
// pause, then powers off; boot_partition boots the instance kernel;
// boot_whole_disk hands over to the local disk. The deploy kernel also
// gets ip= and BOOTIF= from iPXE's settings (pxelinux's ipappend 3); the
// agent's only BOOTIF=, as in Ironic 21.4's template.
func renderIPXE(c pxeConfig) string {
	timeout := ""
	if c.IPXETimeoutMS > 0 {
		timeout = fmt.Sprintf("--timeout %d ", c.IPXETimeoutMS)
	}
	var b strings.Builder
	b.WriteString("#!ipxe\n\n")
	fmt.Fprintf(&b, "set attempts:int32 %d\nset i:int32 0\n\n", ipxeAttempts)
	b.WriteString("goto deploy\n\n")
	b.WriteString(":deploy\nimgfree\n")
	ipArg := "ip=${ip}:${next-server}:${gateway}:${netmask}"
	if c.agent() {
		ipArg = ""
	}
	fmt.Fprintf(&b, "kernel %s%s || goto retry\n\n", timeout, joinWords(c.DeployKernel, joinParams(c.DeployParams),
		ipArg, "BOOTIF=${mac}", "initrd="+deployRamdisk))
	fmt.Fprintf(&b, "initrd %s%s || goto retry\nboot\n\n", timeout, c.DeployRamdisk)
	b.WriteString(":retry\niseq ${i} ${attempts} && goto fail ||\ninc i\n")
	b.WriteString("echo No response, retrying in ${i} seconds.\nsleep ${i}\ngoto deploy\n\n")
	b.WriteString(":fail\necho Failed to get a response after ${attempts} attempts\n")
	b.WriteString("echo Powering off in 30 seconds.\nsleep 30\npoweroff\n\n")
	b.WriteString(":boot_partition\nimgfree\n")
	fmt.Fprintf(&b, "kernel %s%s || goto boot_partition\n", timeout, joinWords(c.Kernel, "root="+rootTag, "ro", "text", c.AppendParams, "initrd="+instRamdisk))
	fmt.Fprintf(&b, "initrd %s%s || goto boot_partition\nboot\n\n", timeout, c.Ramdisk)
	b.WriteString(":boot_whole_disk\nsanboot --no-describe || exit 0\n")
	return b.String()
}

// bootScript is the HTTP root's boot.ipxe: chain the config of the NIC
// iPXE booted from; failing that, as Ironic's boot.ipxe (launchpad bug
// 1504482), try every NIC in turn.
const bootScript = `#!ipxe

# Chain the config of the NIC iPXE booted from; failing that, try every
# network device in turn (https://bugs.launchpad.net/ironic/+bug/1504482).
chain pxelinux.cfg/${mac:hexhyp} && goto chained || goto loop_init

:loop_init
set netid:int32 -1
:loop
inc netid || goto old_rom
isset ${net${netid}/mac} || goto loop_done
echo Attempting to boot from MAC ${net${netid}/mac:hexhyp}
chain pxelinux.cfg/${net${netid}/mac:hexhyp} || goto loop

:chained
# If we've got here the chained config returned success
# suggesting "sanboot" in boot_whole_disk failed (some UEFI cases)
# exit 0 so the bios continues to the next device
echo Exiting pxe config to allow boot to continue on next device
exit 0

:loop_done
echo PXE boot failed! No configuration found for any of the present NICs.
echo Press any key to reboot...
prompt --timeout 180
reboot

:old_rom
echo PXE boot failed! No configuration found for NIC ${mac:hexhyp}.
echo Please update your iPXE ROM and retry.
echo Press any key to reboot...
prompt --timeout 180
reboot
`

func joinWords(words ...string) string {
	var out []string
	for _, w := range words {
		if w = strings.TrimSpace(w); w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// switchToBoot is Ironic's switch_pxe_config: the default becomes the
// instance (pxelinux "default boot", iPXE "goto boot_partition") and the
// root tag the root partition's UUID.
func switchToBoot(text, rootUUID string, ipxe bool) string {
	if ipxe {
		text = strings.Replace(text, "\ngoto deploy\n", "\ngoto boot_partition\n", 1)
	} else {
		text = strings.Replace(text, "default deploy\n", "default boot\n", 1)
	}
	return strings.ReplaceAll(text, "root="+rootTag, "root=UUID="+rootUUID)
}
