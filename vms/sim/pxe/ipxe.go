package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ipxeImage is an image fetched by kernel/initrd/chain.
type ipxeImage struct {
	name string
	url  string
	file File
	args string
}

// ipxeVM interprets the subset of the iPXE script language that Ironic's
// boot scripts (boot.ipxe, ipxe_config.template) and hand-written chain
// scripts use: labels and goto, set/inc/iseq/isset with || and &&,
// ${var} expansion, echo, sleep, imgfree, dhcp/ifconf, kernel/imgfetch/
// initrd/module, chain, boot, and the exits (poweroff, reboot, exit,
// sanboot — which this ROM cannot do).
type ipxeVM struct {
	vars   map[string]string
	load   func(ctx context.Context, ref string) (File, error)
	say    func(format string, a ...any)
	kernel *ipxeImage
	initrd []*ipxeImage
	sleep  func(ctx context.Context, d time.Duration) error
	steps  int
}

// errBoot is returned by run when the script booted the selected kernel.
var errBoot = errors.New("boot")

// maxSteps bounds a script that loops (Ironic's retry loop is bounded by
// its attempt counter; a broken script must not spin forever).
const maxSteps = 10000

func (vm *ipxeVM) run(ctx context.Context, script, base string) error {
	lines := strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n")
	if !strings.HasPrefix(strings.TrimSpace(lines[0]), "#!ipxe") {
		return errors.New("not an iPXE script (no #!ipxe)")
	}
	labels := map[string]int{}
	for i, l := range lines {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, ":") {
			labels[strings.TrimSpace(t[1:])] = i
		}
	}
	for pc := 1; pc < len(lines); pc++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if vm.steps++; vm.steps > maxSteps {
			return errors.New("script ran too long (loop?)")
		}
		line := strings.TrimSpace(lines[pc])
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		jump, err := vm.line(ctx, line, base)
		if err != nil {
			return err
		}
		if jump != "" {
			target, ok := labels[jump]
			if !ok {
				return fmt.Errorf("goto %s: no such label", jump)
			}
			pc = target
		}
	}
	return errors.New("script ended without booting")
}

// line runs one line with its || and && chains; it returns a label to jump to.
func (vm *ipxeVM) line(ctx context.Context, line, base string) (jump string, err error) {
	// Split on || and && left to right, as iPXE's shell does.
	type seg struct {
		op  string
		cmd string
	}
	var segs []seg
	op := ""
	for {
		i := strings.Index(line, "||")
		j := strings.Index(line, "&&")
		k, next := -1, ""
		switch {
		case i >= 0 && (j < 0 || i < j):
			k, next = i, "||"
		case j >= 0:
			k, next = j, "&&"
		}
		if k < 0 {
			segs = append(segs, seg{op, strings.TrimSpace(line)})
			break
		}
		segs = append(segs, seg{op, strings.TrimSpace(line[:k])})
		op, line = next, line[k+2:]
	}
	// A line's status is that of the last command run; "a || b" runs b
	// only when a failed, "a && b" only when a succeeded. A line that ends
	// in failure ends the script, as iPXE's script runner does.
	var status error
	for i, sg := range segs {
		if i > 0 && (sg.op == "||" && status == nil || sg.op == "&&" && status != nil) {
			continue
		}
		j, cerr := vm.command(ctx, vm.expand(sg.cmd), base)
		if errors.Is(cerr, errBoot) || errors.Is(cerr, errExit) || ctx.Err() != nil {
			return "", cerr
		}
		if j != "" {
			return j, nil
		}
		if cerr != nil && i+1 < len(segs) && segs[i+1].op == "||" {
			vm.say("%s: %v", firstWord(sg.cmd), cerr)
		}
		status = cerr
	}
	if status != nil {
		return "", fmt.Errorf("%s: %w", firstWord(segs[len(segs)-1].cmd), status)
	}
	return "", nil
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

var errExit = errors.New("exit")

func (vm *ipxeVM) command(ctx context.Context, cmd, base string) (jump string, err error) {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return "", nil
	}
	name, args := f[0], f[1:]
	switch name {
	case "goto":
		if len(args) != 1 {
			return "", errors.New("goto needs a label")
		}
		return args[0], nil
	case "set":
		if len(args) == 0 {
			return "", errors.New("set needs a name")
		}
		key, _, _ := strings.Cut(args[0], ":") // set i:int32 0
		vm.vars[key] = strings.Join(args[1:], " ")
	case "clear":
		for _, a := range args {
			delete(vm.vars, a)
		}
	case "inc":
		if len(args) == 0 {
			return "", errors.New("inc needs a name")
		}
		n, _ := strconv.Atoi(vm.vars[args[0]])
		step := 1
		if len(args) > 1 {
			step, _ = strconv.Atoi(args[1])
		}
		vm.vars[args[0]] = strconv.Itoa(n + step)
	case "iseq":
		if len(args) != 2 || args[0] != args[1] {
			return "", errors.New("not equal")
		}
	case "isset":
		if len(args) != 1 || args[0] == "" {
			return "", errors.New("not set")
		}
	case "echo":
		vm.say("%s", strings.Join(trimFlags(args), " "))
	case "sleep":
		secs := 1
		if len(args) > 0 {
			secs, _ = strconv.Atoi(args[0])
		}
		return "", vm.sleep(ctx, time.Duration(secs)*time.Second)
	case "prompt", "dhcp", "ifconf", "ifopen", "imgverify", "console", "cpuid", "colour", "cpair":
		// Already configured, or display only.
	case "imgfree":
		vm.kernel, vm.initrd = nil, nil
	case "kernel", "imgselect", "imgexec", "imgfetch", "module", "initrd", "chain":
		return "", vm.image(ctx, name, args, base)
	case "boot":
		if vm.kernel == nil {
			return "", errors.New("no kernel selected")
		}
		return "", errBoot
	case "poweroff", "reboot", "shell", "exit":
		vm.say("script asked for %s", name)
		return "", fmt.Errorf("%w: %s", errExit, name)
	case "sanboot":
		return "", errors.New("sanboot: this ROM boots no SAN devices")
	default:
		return "", fmt.Errorf("%s: command not found", name)
	}
	return "", nil
}

func (vm *ipxeVM) image(ctx context.Context, cmd string, args []string, base string) error {
	// Options: --name/-n and --timeout/-t take a value (also as --opt=v);
	// --autofree/-a, --replace/-r and the like are flags.
	name := ""
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opt, val, hasVal := strings.Cut(args[0], "=")
		args = args[1:]
		switch opt {
		case "--name", "-n", "--timeout", "-t":
			if !hasVal {
				if len(args) == 0 {
					return fmt.Errorf("%s: %s needs a value", cmd, opt)
				}
				val, args = args[0], args[1:]
			}
			if opt == "--name" || opt == "-n" {
				name = val
			}
		}
	}
	if len(args) == 0 {
		return fmt.Errorf("%s needs an image", cmd)
	}
	ref, err := resolveURL(base, args[0])
	if err != nil {
		return err
	}
	img := &ipxeImage{name: name, url: ref, args: strings.Join(args[1:], " ")}
	if img.name == "" {
		img.name = path0(img.url)
	}
	vm.say("%s... ", img.url)
	f, err := vm.load(ctx, img.url)
	if err != nil {
		return err
	}
	img.file = f
	vm.say("ok (%d bytes)", f.Size)
	switch cmd {
	case "initrd", "module", "imgfetch":
		vm.initrd = append(vm.initrd, img)
	case "chain":
		if bytes.HasPrefix(f.Head, []byte("#!ipxe")) {
			if !f.Whole() {
				return fmt.Errorf("%s: an iPXE script of %d bytes, more than this ROM runs", img.url, f.Size)
			}
			return vm.run(ctx, string(f.Head), img.url)
		}
		vm.kernel = img
		return errBoot
	default:
		vm.kernel = img
		if cmd == "imgexec" {
			return errBoot
		}
	}
	return nil
}

// expand substitutes ${name} and ${name:type}, innermost first, so that
// Ironic's ${net${netid}/mac:hexhyp} works; unknown settings expand to "".
func (vm *ipxeVM) expand(s string) string {
	for range 64 { // bounded: each round removes one ${...}
		end := strings.Index(s, "}")
		if end < 0 {
			return s
		}
		start := strings.LastIndex(s[:end], "${")
		if start < 0 {
			return s
		}
		s = s[:start] + vm.setting(s[start+2:end]) + s[end+1:]
	}
	return s
}

// setting reads a setting with an optional type: ":hexhyp" prints a MAC
// with hyphens, ":hex" with colons, others (":int32", ":string") as is.
func (vm *ipxeVM) setting(name string) string {
	base, typ, _ := strings.Cut(name, ":")
	if v, ok := vm.vars[name]; ok {
		return v
	}
	v := vm.vars[base]
	switch typ {
	case "hexhyp":
		return strings.ReplaceAll(v, ":", "-")
	case "hex":
		return strings.ReplaceAll(v, "-", ":")
	}
	return v
}

func trimFlags(args []string) []string {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		args = args[1:]
	}
	return args
}

func resolveURL(base, ref string) (string, error) {
	if base == "" {
		return ref, nil
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %v", ref, err)
	}
	return b.ResolveReference(r).String(), nil
}

func path0(u string) string {
	if p, err := url.Parse(u); err == nil && p.Path != "" {
		u = p.Path
	}
	return u[strings.LastIndex(u, "/")+1:]
}
