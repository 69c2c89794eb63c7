package cli

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalbed/metalbed/vms"
)

func TestTopologyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error, which names file and line
	}{
		{"bad yaml", "nodes: 1\nmachines:\n  - name: a\n  name: b\n\tx: [\n", "topo.yaml: line "},
		{"unknown top-level field", "nodes: 2\nnodez: 3\n", "line 2: field nodez not found"},
		{"unknown machine field", "machines:\n  - name: a\n    disk: 10GiB\n", "line 3: field disk not found"},
		{"wrong type", "nodes: many\n", "line 1"},
		{"bad size", "machines:\n  - name: a\n    disk_size: lots\n", `line 3: size "lots"`},
		{"bad duration", "defaults:\n  power_delay: soon\n", `line 2: duration "soon"`},
		{"defaults with a port", "defaults:\n  bmc: {port: 7000}\n", "defaults may not set"},
		{"duplicate name", "machines:\n  - name: a\n  - name: b\n  - name: a\n", "topo.yaml:4: duplicate machine name \"a\""},
		{"duplicate port", "machines:\n  - name: a\n    bmc: {port: 7000}\n  - name: b\n    bmc: {port: 7000}\n", "topo.yaml:4: machine b: BMC address 127.0.0.1:7000 is also machine a's"},
		{"bad mac", "machines:\n  - name: a\n    macs: [\"52:54:00:zz:00:01\"]\n", "topo.yaml:2: machine a: \"52:54:00:zz:00:01\" is not a MAC"},
		{"multicast mac", "machines:\n  - name: a\n    macs: [\"01:00:5e:00:00:01\"]\n", "multicast"},
		{"duplicate mac", "machines:\n  - name: a\n    macs: [\"52:54:00:00:00:01\"]\n  - name: b\n    macs: [\"52:54:00:00:00:01\"]\n", "topo.yaml:4: machine b: MAC 52:54:00:00:00:01 is also machine a's"},
		{"bad boot mode", "machines:\n  - name: a\n    boot_mode: coreboot\n", "boot_mode \"coreboot\""},
		{"bad address", "machines:\n  - name: a\n    bmc: {address: localhost}\n", "not an IP address"},
		{"nameless", "machines:\n  - macs: []\n", "topo.yaml:2: machine without a name"},
		{"long password", "defaults:\n  bmc: {password: 012345678901234567890}\n", "password 1 to 20"},
		{"nics and macs disagree", "machines:\n  - name: a\n    nics: 2\n    macs: [\"52:54:00:00:00:01\"]\n", "nics 2 but 1 macs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "topo.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			topo, err := loadTopology(path)
			if err == nil {
				st, _, rerr := resolveUp(map[string]bool{}, topo, testFlags())
				if rerr != nil {
					err = rerr
				} else {
					_, err = plan(st, topo)
				}
			}
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) && !strings.Contains(tt.want, "topo.yaml") {
				t.Errorf("error %q\nwant it to contain %q and name the file", err, tt.want)
			}
			if ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2 (usage)", ExitCode(err))
			}
		})
	}
}

func testFlags() upFlags {
	return upFlags{nodes: 1, basePort: defaultBasePort, stateDir: "state", bmcAddr: defaultBMCAddress,
		user: defaultUsername, pass: defaultPassword, diskSize: "10GiB", bootMode: "bios"}
}

func TestTopologyPlan(t *testing.T) {
	yaml := `
nodes: 4
bmc_base_port: 7000
defaults:
  disk_size: 2GiB
  boot_mode: uefi
  power_delay: 150ms
  nics: 2
  bmc: {username: root, password: calvin}
machines:
  - name: db-1
    macs: ["52:54:00:aa:bb:01"]
    disk_size: 128MB
    boot_mode: bios
    bmc: {port: 7100, password: other}
  - name: node-1
  - name: web
    bmc: {port: 7002}
`
	topo, err := parseTopology("topo.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := resolveUp(map[string]bool{}, topo, testFlags())
	if err != nil {
		t.Fatal(err)
	}
	plans, err := plan(st, topo)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plans {
		names = append(names, p.name)
	}
	if got := strings.Join(names, ","); got != "db-1,node-1,web,node-0" {
		t.Errorf("machines %s", got)
	}
	db := plans[0]
	if db.port != 7100 || db.username != "root" || db.password != "other" || db.bootMode != vms.BIOS ||
		db.diskBytes != 128e6 || len(db.macs) != 1 || db.macs[0].String() != "52:54:00:aa:bb:01" || db.powerDelay != 150*time.Millisecond {
		t.Errorf("db-1 %+v", db)
	}
	n0 := plans[3]
	if n0.port != 7001 || plans[1].port != 7000 || n0.username != "root" || n0.password != "calvin" || n0.bootMode != vms.UEFI ||
		n0.diskBytes != 2<<30 || len(n0.macs) != 0 || n0.nics != 2 || n0.addr != "127.0.0.1" {
		t.Errorf("node-0 %+v", n0)
	}
	if plans[2].port != 7002 {
		t.Errorf("web port %d, want its own 7002", plans[2].port)
	}
	seen := map[string]bool{}
	for _, p := range plans {
		for _, m := range p.macs {
			if seen[m.String()] {
				t.Errorf("MAC %s twice", m)
			}
			seen[m.String()] = true
		}
	}
}

// TestPrecedence checks flag > env > file > default through the real flag
// parsing of `metalbed up`.
func TestPrecedence(t *testing.T) {
	topo, err := parseTopology("topo.yaml", []byte("nodes: 5\nbmc_base_port: 7000\nbmc_address: 127.0.0.2\ndefaults:\n  boot_mode: uefi\n"))
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(args ...string) upSettings {
		t.Helper()
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := testFlags()
		fs.IntVar(&f.nodes, "nodes", f.nodes, "")
		fs.IntVar(&f.basePort, "bmc-base-port", f.basePort, "")
		fs.StringVar(&f.bmcAddr, "bmc-address", f.bmcAddr, "")
		fs.StringVar(&f.bootMode, "boot-mode", f.bootMode, "")
		if err := parseFlags(fs, args); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		st, _, err := resolveUp(set, topo, f)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := resolve()
	if st.nodes != 5 || st.basePort != 7000 || st.bmcAddress != "127.0.0.2" || st.bootMode != vms.UEFI {
		t.Errorf("file over default: %+v", st)
	}
	t.Setenv("METALBED_NODES", "7")
	t.Setenv("METALBED_BOOT_MODE", "bios")
	st = resolve()
	if st.nodes != 7 || st.bootMode != vms.BIOS || st.basePort != 7000 {
		t.Errorf("env over file: %+v", st)
	}
	st = resolve("--nodes", "2", "--bmc-base-port", "0")
	if st.nodes != 2 || st.basePort != 0 || st.bootMode != vms.BIOS {
		t.Errorf("flag over env: %+v", st)
	}
	t.Setenv("METALBED_NODES", "lots")
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("nodes", 1, "")
	if err := parseFlags(fs, nil); err == nil || !strings.Contains(err.Error(), "METALBED_NODES") {
		t.Errorf("bad env value: %v", err)
	}
}

func TestPerIPAddress(t *testing.T) {
	for i, want := range map[int]string{0: "127.0.1.1", 1: "127.0.1.2", 254: "127.0.1.255", 255: "127.0.2.0", 9999: "127.0.40.16"} {
		if got := perIPAddress(i); got != want {
			t.Errorf("perIPAddress(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "10GiB": 10 << 30, "1G": 1 << 30, "100MB": 100e6, "4 KiB": 4096} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "1.5G", "GiB", "9999999999TiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
}

func TestDefaultStateDir(t *testing.T) {
	x := t.TempDir()
	t.Setenv("XDG_STATE_HOME", x)
	f := testFlags()
	f.stateDir = ""
	_, dir, err := resolveUp(map[string]bool{}, nil, f)
	if err != nil || dir != filepath.Join(x, "metalbed") {
		t.Errorf("default state dir %q, %v", dir, err)
	}
	topo, err := parseTopology("topo.yaml", []byte("state_dir: /srv/metalbed\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, dir, _ := resolveUp(map[string]bool{}, topo, f); dir != "/srv/metalbed" {
		t.Errorf("file state dir ignored: %q", dir)
	}
	f.stateDir = "flagdir"
	if _, dir, _ := resolveUp(map[string]bool{"state-dir": true}, topo, f); !strings.HasSuffix(dir, "/flagdir") {
		t.Errorf("flag state dir lost to the file: %q", dir)
	}
}
