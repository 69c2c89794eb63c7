package cli

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/testenv"
)

// readmeCommand is one command line of README.md's examples: its line
// number, its text with continuation lines joined, and the comment after
// it (what the README says it prints or does).
type readmeCommand struct {
	line    int
	text    string
	comment string
	block   string // the text of its block's first command
}

// readmePrograms are the programs whose command lines the README shows,
// after any environment assignments (VAR=value ...).
var readmePrograms = regexp.MustCompile(`^(\$ )?(([A-Z][A-Z0-9_]*=\S*(\s+|$))+|(go run ./cmd/metalbed|go build|go test|go tool|metalbed|\./metalbed|baremetal|ipmitool|redfishtool|curl|tail|export|bash|ip netns exec|ci/|iscsi-[a-z0-9]+|qemu-img|/usr/bin/python3)\b)`)

// readmeCommands reads README.md's command lines: lines of indented (4
// spaces, after a blank line) or fenced sh code blocks that start with one
// of readmePrograms.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		cmds         []readmeCommand
		fence, block bool
		prevBlank    = true
		cont         *readmeCommand
		blockStart   string
		sc           = bufio.NewScanner(f)
		n            int
	)
	for sc.Scan() {
		n++
		raw := sc.Text()
		switch {
		case strings.HasPrefix(raw, "```"):
			fence = !fence && (raw == "```sh" || raw == "```bash")
			cont, blockStart = nil, ""
			prevBlank = false
			continue
		case strings.TrimSpace(raw) == "":
			prevBlank, cont = true, nil
			continue
		}
		indented := strings.HasPrefix(raw, "    ")
		if !fence {
			block = indented && (block || prevBlank)
		}
		if !fence && !block {
			blockStart = ""
		}
		prevBlank = false
		if !fence && !block {
			cont = nil
			continue
		}
		text := strings.TrimSpace(raw)
		if cont != nil {
			more, comment, _ := strings.Cut(text, "  #")
			more = strings.TrimSpace(more)
			cont.text += " " + strings.TrimSpace(strings.TrimSuffix(more, `\`))
			if comment != "" {
				cont.comment = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(comment), "#"))
			}
			if !strings.HasSuffix(more, `\`) {
				cont = nil
			}
			continue
		}
		if !readmePrograms.MatchString(text) {
			continue
		}
		c := readmeCommand{line: n, text: text}
		if blockStart == "" {
			blockStart = strings.TrimPrefix(text, "$ ")
		}
		c.block = blockStart
		if i := strings.Index(text, "  #"); i >= 0 {
			c.text, c.comment = strings.TrimSpace(text[:i]), strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text[i:]), "#"))
		}
		c.text = strings.TrimPrefix(c.text, "$ ")
		cmds = append(cmds, c)
		if strings.HasSuffix(c.text, `\`) {
			cmds[len(cmds)-1].text = strings.TrimSpace(strings.TrimSuffix(c.text, `\`))
			cont = &cmds[len(cmds)-1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cmds
}

// readmeMirror says which test runs a README command: a README command
// whose text starts with prefix (the longest such prefix, preferring one
// whose block matches) is run by test (a Test function in
// the package directory pkg, relative to the repository root), whose
// package's test files hold every needle (the command's distinctive
// arguments, as that test spells them).
type readmeMirror struct {
	block   string // "" or a prefix of the first command of the command's block
	prefix  string
	pkg     string
	test    string
	needles []string
}

// readmeMirrors maps every command README.md shows to the test that runs
// it. The quickstart block and the fault commands are run as written by
// TestREADMEQuickstart; the others by the tests that do the same with
// free ports and temporary paths.
var readmeMirrors = []readmeMirror{
	{"", "go run ./cmd/metalbed demo", "internal/cli", "TestDemo", []string{`"demo"`}},
	{"", "go test -race -timeout 45m ./...", ".ci", "", nil}, // .ci/run runs it: checked below
	{"", "go run ./cmd/metalbed up --nodes 2 --enroll --state-dir ./state", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "export OS_AUTH_TYPE=none OS_ENDPOINT=", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node list", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node manage node-0 --wait 60", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node provide node-0 --wait 300", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "go run ./cmd/metalbed image build --kind partition", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node set node-0 --instance-info image_source=/tmp/part.img", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node deploy node-0", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "baremetal node show node-0 -f value -c provision_state", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "tail ./state/node-0/console.log", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "go run ./cmd/metalbed timeline node-0 --state-dir ./state", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed up --nodes 1 --boot-mode uefi --enroll --enroll-driver redfish --boot-interface redfish-virtual-media", "internal/cli", "TestUpEnrollRedfishVirtualMedia",
		[]string{`"--enroll-driver", "redfish"`, `"--boot-interface", "redfish-virtual-media"`}},
	{"metalbed up --nodes 1 --boot-mode uefi", "baremetal --os-baremetal-api-version latest driver show redfish", "internal/cli", "TestUpEnrollRedfishVirtualMedia", []string{`"driver", "show", "redfish"`}},
	{"metalbed up --nodes 1 --boot-mode uefi", "baremetal node manage node-0 --wait 60 && baremetal node provide node-0", "internal/cli", "TestUpEnrollRedfishVirtualMedia", []string{`"provide"`}},
	{"metalbed up --nodes 1 --boot-mode uefi", "baremetal node set node-0 --instance-info image_source=/path/to/disk.img", "internal/cli", "TestUpEnrollRedfishVirtualMedia", []string{`"--instance-info"`}},
	{"metalbed up --nodes 1 --boot-mode uefi", "baremetal node deploy node-0", "internal/cli", "TestUpEnrollRedfishVirtualMedia", []string{`"deploy"`}},
	{"metalbed up --nodes 1 --boot-mode uefi", "baremetal node undeploy node-0", "internal/cli", "TestUpEnrollRedfishVirtualMedia", []string{`"undeploy"`}},
	{"", "metalbed timeline node-0 [--json]", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault add --node node-0 --layer ipmi", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault add --node node-0 --layer iscsi", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault list", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault clear", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault add --node node-0 --layer agent", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "metalbed fault add --node node-0 --layer conductor", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "go run ./cmd/metalbed up --nodes 3 --no-provisioner", "internal/cli", "TestUpEndToEnd", []string{`"--nodes", "3"`, `"--no-provisioner"`}},
	{"", "ipmitool -I lanplus -C 3 ", "internal/cli", "TestUpEndToEnd", []string{`"power", "status"`}},
	{"", "ipmitool -I lanplus -C 17 ", "internal/cli", "TestUpEndToEnd", []string{`"chassis", "bootdev", "pxe"`}},
	{"", "/usr/bin/python3 -c 'from pyghmi.ipmi import command", "internal/cli", "TestUpEndToEnd", []string{"get_power()"}},
	{"", "metalbed netboot serve --dhcp-addr 127.0.0.1:6767 --server-ip 127.0.0.1 --range 127.0.0.100-127.0.0.199", "scenarios", "TestRealIronicDeploysMetalbedMachine",
		[]string{`"--answer-unknown"`, `"--ipxe-script"`, `"--http-root"`, `"--tftp-root"`}},
	{"", "metalbed up --no-provisioner --nodes 2 --netboot-dhcp", "scenarios", "TestRealIronicDeploysMetalbedMachine", []string{`"--netboot-dhcp"`, `"--netboot-tftp-port"`}},
	{"", "metalbed netboot serve --dhcp-addr 127.0.0.1:6767 --server-ip 127.0.0.1 --range 127.0.0.210-127.0.0.249", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{`"--answer-unknown"`}},
	{"", "metalbed up --no-provisioner --config topology.yaml", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{`"--config"`, `"--timeline-addr"`}},
	{"", "baremetal node create --driver redfish --name vmedia-uefi", "scenarios", "TestRealIronicVirtualMediaDeploy",
		[]string{"redfish_verify_ca=", "redfish_system_id=", "bootloader=file://", "redfish-virtual-media"}},
	{"", "baremetal port create --node", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{`"port", "create"`}},
	{"", "baremetal node manage <node uuid>; baremetal node provide", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{`"provide"`}},
	{"", "baremetal node set <node uuid> --instance-info image_source=http://", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{"image_source="}},
	{"", "baremetal node deploy <node uuid>; baremetal node undeploy", "scenarios", "TestRealIronicVirtualMediaDeploy", []string{`"undeploy"`}},
	{"", "METALBED_CHAP_SECRET=secret12chars metalbed target serve --disk disk.img", "internal/cli", "TestTargetServe", []string{`"METALBED_CHAP_SECRET"`, `"--chap-user"`, `"--iqn"`}},
	{"", "iscsi-readcapacity16 -s iscsi://user%secret12chars@", "internal/cli", "TestTargetServe", []string{`"iscsi-readcapacity16"`}},
	{"", "./metalbed up --backend libvirt --no-provisioner --state-dir /tmp/mb --config topology.yaml --timeline-addr", "scenarios", "TestRealIronicVirtualMediaDeploysVMs",
		[]string{`"--backend", "libvirt"`, `"--timeline-addr"`, `"--config"`}},
	{"", "ip netns exec mb-b1234567 ./metalbed netboot serve --dhcp-addr 0.0.0.0:67 --dhcp-iface", "scenarios", "TestRealIronicVirtualMediaDeploysVMs",
		[]string{`"netns", "exec"`, `"--dhcp-iface"`, `"--answer-unknown"`}},
	{"", "IRONIC_VMEDIA=1 IRONIC_NETNS=mb-b1234567 IRONIC_HOST_IP=10.235.0.1", "scenarios", "TestRealIronicVirtualMediaDeploysVMs",
		[]string{`"IRONIC_NETNS="`, `"IRONIC_HOST_IP="`}},
	{"", "ip netns exec mb-b1234567 env OS_AUTH_TYPE=none", "scenarios", "TestRealIronicVirtualMediaDeploysVMs", []string{`"netns", "exec", ir.NetNS, "baremetal"`}},
	{"", "metalbed up --enroll --metrics-addr 127.0.0.1:9100 --pprof &", "internal/cli", "TestUpMetrics", []string{`"--metrics-addr"`, `"--pprof"`}},
	{"", "curl -s 127.0.0.1:6385/metrics | grep '^metalbed_conductor'", "internal/cli", "TestREADMEQuickstart", nil},
	{"", "go tool pprof http://127.0.0.1:9100/debug/pprof/heap", "internal/cli", "TestUpMetrics", []string{`/debug/pprof/`}},
	{"", "metalbed scenario run --junit results.xml", "internal/cli", "TestScenarioRun", []string{`"--junit"`}},
	{"", "metalbed scenario run features/deploy.feature --tags @deploy --concurrency 4", "internal/cli", "TestScenarioRun", []string{`"--tags"`, `"--concurrency"`}},
	{"", "metalbed scenario run features/faults.feature:27", "internal/cli", "TestScenarioRun", []string{`.feature:11"`}},
	{"", "go build -tags libvirt_dlopen -o metalbed ./cmd/metalbed && bash ci/libvirt/start.sh", "scenarios", "TestLibvirtFeatures", []string{`"-tags", "libvirt_dlopen"`}},
	{"", "./metalbed ramdisk build --out /tmp/mb/ramdisk", "scenarios", "TestLibvirtFeatures", []string{`"ramdisk", "build", "--out"`}},
	{"", "./metalbed up --backend libvirt --state-dir /tmp/mb --nodes 2 --enroll", "scenarios", "TestLibvirtFeatures", []string{`"--backend", "libvirt"`}},
	{"", "./metalbed demo --backend libvirt", "scenarios", "TestLibvirtDemo", []string{`"demo", "--backend", "libvirt"`}},
}

// TestREADMECommandsAreTested: every command line README.md shows has a
// test that runs it (readmeMirrors), and that test exists and spells the
// command's distinctive arguments. A command added to the README without
// a test, or a test renamed, fails here.
func TestREADMECommandsAreTested(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) < 40 {
		t.Fatalf("read %d commands from README.md; the parser lost its blocks", len(cmds))
	}
	used := make([]bool, len(readmeMirrors))
	for _, c := range cmds {
		i := mirrorOf(c)
		if i < 0 {
			t.Errorf("README.md:%d: %q is run by no test: add it to a test and to readmeMirrors", c.line, c.text)
			continue
		}
		used[i] = true
	}
	for i, m := range readmeMirrors {
		if !used[i] {
			t.Errorf("readmeMirrors[%d] %q matches no README command any more", i, m.prefix)
		}
		if m.test == "" {
			run, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
			if err != nil || !strings.Contains(string(run), m.prefix) {
				t.Errorf(".ci/run does not run the README's %q (%v)", m.prefix, err)
			}
			continue
		}
		src := testSources(t, m.pkg)
		if !strings.Contains(src, "func "+m.test+"(t *testing.T)") {
			t.Errorf("README command %q: no %s in %s", m.prefix, m.test, m.pkg)
		}
		for _, n := range m.needles {
			if !strings.Contains(src, n) {
				t.Errorf("README command %q: the tests of %s (%s) never spell %s", m.prefix, m.pkg, m.test, n)
			}
		}
	}
}

// mirrorOf is the index in readmeMirrors of the test that runs c, or -1.
func mirrorOf(c readmeCommand) int {
	best, score := -1, -1
	for i, m := range readmeMirrors {
		if !strings.HasPrefix(c.text, m.prefix) || (m.block != "" && !strings.HasPrefix(c.block, m.block)) {
			continue
		}
		s := len(m.prefix)
		if m.block != "" {
			s += 1 << 16
		}
		if s > score {
			best, score = i, s
		}
	}
	return best
}

// testSources is the text of every Go file of the package in dir
// (relative to the repository root): its tests and the test harness a
// package such as scenarios keeps in non-test files.
func testSources(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("test files of %s: %v", dir, err)
	}
	var b strings.Builder
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(text)
	}
	return b.String()
}

// TestREADMEQuickstart runs the README's first `metalbed up` block as a
// user types it, in a working directory of its own (so `./state` is a new
// state directory): `up` with the README's arguments (and every port free,
// as other testbeds may run on this host), then each following line
// through bash, with only these rewrites: `go run ./cmd/metalbed` and
// `metalbed` run this package's Run, the API's default address becomes the
// one `up` took, /tmp/ is the working directory's tmp/ and <md5> is what
// `image build` printed. What the README's comments promise is checked:
// the node list, the states, the console line, the timeline. The fault
// commands of "Injecting faults" and the metrics line then run against
// the same testbed.
func TestREADMEQuickstart(t *testing.T) {
	testenv.RequireTool(t, "baremetal", "python3-ironicclient")
	cmds := readmeCommands(t)
	block := readmeBlock(t, cmds, "go run ./cmd/metalbed up --nodes 2 --enroll --state-dir ./state")
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(work, "state")
	upArgs := shellWords(t, strings.TrimPrefix(block[0].text, "go run ./cmd/metalbed "))
	for i, a := range upArgs {
		if a == "./state" {
			upArgs[i] = state
		}
	}
	if len(upArgs) == 0 || upArgs[0] != "up" {
		t.Fatalf("README.md:%d is not an up command: %q", block[0].line, block[0].text)
	}
	if testing.Short() {
		t.Skip("deploys a machine as the README does")
	}
	requireBootLoaders(t)
	u := startProvisionedUp(t, state, upArgs[1:]...)
	api := u.inv.API
	apiHostPort := strings.TrimPrefix(api, "http://")
	rewrite := strings.NewReplacer("http://127.0.0.1:6385", api, "127.0.0.1:6385", apiHostPort, "/tmp/", filepath.Join(work, "tmp")+"/")
	var env []string
	md5 := ""
	run := func(c readmeCommand) string {
		t.Helper()
		text := rewrite.Replace(c.text)
		text = strings.ReplaceAll(text, "<md5>", md5)
		for _, prefix := range []string{"go run ./cmd/metalbed ", "metalbed "} {
			if strings.HasPrefix(text, prefix) {
				return runMetalbedLine(t, c, work, strings.TrimPrefix(text, prefix))
			}
		}
		if strings.HasPrefix(text, "export ") {
			env = append(env, shellWords(t, strings.TrimPrefix(text, "export "))...)
			return ""
		}
		cmd := exec.CommandContext(t.Context(), "bash", "-o", "pipefail", "-c", text)
		cmd.Dir, cmd.Env = work, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README.md:%d: %s: %v\n%s", c.line, text, err, out)
		}
		return string(out)
	}
	for _, c := range block[1:] {
		out := run(c)
		switch {
		case strings.HasPrefix(c.text, "baremetal node list"):
			mustContain(t, c.text, out, "node-0", "node-1", "enroll")
		case strings.Contains(c.text, "image build"):
			m := regexp.MustCompile(`(?m)^md5: ([0-9a-f]{32})$`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("README.md:%d: no md5 in %q", c.line, out)
			}
			md5 = m[1]
		case strings.HasPrefix(c.text, "baremetal node manage"):
			mustContain(t, c.text, baremetal(t, api, "node", "show", "node-0", "-f", "value", "-c", "provision_state"), "manageable")
		case strings.HasPrefix(c.text, "baremetal node provide"):
			mustContain(t, c.text, baremetal(t, api, "node", "show", "node-0", "-f", "value", "-c", "provision_state"), "available")
		case strings.HasPrefix(c.text, "baremetal node deploy"):
			// The README shows the states the node passes; the next
			// line looks once it is there.
			waitProvision(t, api, "node-0", "active", 10*time.Minute)
		case strings.Contains(c.text, "-c provision_state"):
			if strings.TrimSpace(out) != "active" {
				t.Errorf("README.md:%d: %q printed %q, want active", c.line, c.text, out)
			}
		case strings.HasPrefix(c.text, "tail "):
			// The comment is what the line shows, up to its "…".
			want, _, _ := strings.Cut(c.comment, "…")
			waitConsole(t, filepath.Join(state, "node-0", "console.log"), want)
		case strings.Contains(c.text, " timeline "):
			mustContain(t, c.text, out, "active")
		}
	}

	// "Injecting faults": the rules, listed and cleared (each command
	// with the README's --state-dir, as its comment says).
	withState := func(c readmeCommand) readmeCommand {
		c.text += " --state-dir ./state"
		return c
	}
	for _, first := range []string{"metalbed fault add --node node-0 --layer ipmi", "metalbed fault add --node node-0 --layer agent"} {
		for _, c := range readmeBlock(t, cmds, first) {
			switch {
			case strings.HasPrefix(c.text, "metalbed fault add"):
				run(withState(c))
			case c.text == "metalbed fault list [--json]":
				for _, v := range []string{"metalbed fault list", "metalbed fault list --json"} {
					out := run(withState(readmeCommand{line: c.line, text: v}))
					mustContain(t, v, out, "ipmi", "iscsi", "refuse-login")
				}
			case c.text == "metalbed fault clear [--node node-0 | ID…]":
				run(withState(readmeCommand{line: c.line, text: "metalbed fault clear --node node-0"}))
			default:
				t.Errorf("README.md:%d: %q: the test does not know this form", c.line, c.text)
			}
		}
	}
	// The ipmi and iscsi rules went with `fault clear --node node-0`; the
	// agent and conductor rules were added after it.
	out := run(withState(readmeCommand{text: "metalbed fault list --json"}))
	mustContain(t, "fault list after the second block", out, "heartbeat-stop", `"kill"`)
	mustNotContain(t, "fault list after fault clear --node node-0", out, "refuse-login")
	run(withState(readmeCommand{text: "metalbed fault clear"}))
	mustNotContain(t, "fault list after fault clear", run(withState(readmeCommand{text: "metalbed fault list --json"})), "heartbeat-stop")
	timeline := readmeBlock(t, cmds, "metalbed timeline node-0 [--json]")[0]
	if timeline.text != "metalbed timeline node-0 [--json] [--state-dir DIR | --url http://127.0.0.1:6386]" {
		t.Errorf("README.md:%d: %q: the test does not know this form", timeline.line, timeline.text)
	}
	for _, v := range []string{"metalbed timeline node-0 --json --state-dir ./state", "metalbed timeline node-0 --url " + u.inv.Timeline} {
		mustContain(t, v, run(readmeCommand{line: timeline.line, text: v}), "conductor.active")
	}
	for _, c := range cmds {
		if strings.HasPrefix(c.text, "curl -s 127.0.0.1:6385/metrics") {
			mustContain(t, c.text, run(c), "metalbed_conductor_transitions_total")
		}
	}
}

// readmeBlock is the block of README commands whose first command starts
// with first.
func readmeBlock(t *testing.T, cmds []readmeCommand, first string) []readmeCommand {
	t.Helper()
	var b []readmeCommand
	for _, c := range cmds {
		if strings.HasPrefix(c.block, first) {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		t.Fatalf("README.md has no block starting with %q", first)
	}
	return b
}

// runMetalbedLine runs a README line's metalbed command (args, as the
// shell splits them) with this package's Run in dir, relative paths made
// absolute against dir.
func runMetalbedLine(t *testing.T, c readmeCommand, dir, args string) string {
	t.Helper()
	words := shellWords(t, args)
	for i, w := range words {
		if strings.HasPrefix(w, "./") {
			words[i] = filepath.Join(dir, w)
		}
	}
	var out, errb testenv.SyncBuffer
	if err := Run(t.Context(), words, &out, &errb); err != nil {
		t.Fatalf("README.md:%d: metalbed %s: %v\n%s%s", c.line, args, err, out.String(), errb.String())
	}
	return out.String()
}

// shellWords splits s as bash does (quotes, escapes), with bash itself.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	out, err := exec.Command("bash", "-c", `printf '%s\0' `+s).Output()
	if err != nil {
		t.Fatalf("splitting %q: %v", s, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}
