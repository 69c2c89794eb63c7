package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/testenv"
	"github.com/metalbed/metalbed/vms/sim"
)

func mustRange(t *testing.T, s string) addrRange {
	t.Helper()
	r, err := parseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBlockRegistryFourHolders: four testbeds get four blocks; a range
// overlapping a held one is refused with its holder named; a released
// block goes back, to the testbed that had it first.
func TestBlockRegistryFourHolders(t *testing.T) {
	reg := blockRegistry{dir: t.TempDir()}
	claims := make([]*blockClaim, 4)
	for i := range claims {
		c, err := reg.claimFree(nil, fmt.Sprintf("/state/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer c.release()
		if c.rng != blockN(i+1) {
			t.Errorf("holder %d got %s, want %s", i, c.rng, blockN(i+1))
		}
		claims[i] = c
	}
	_, err := reg.claim(mustRange(t, "127.2.5.1-127.2.5.9"), "/state/x")
	if !errors.Is(err, errRangeHeld) || !strings.Contains(err.Error(), "/state/1") || !strings.Contains(err.Error(), fmt.Sprint("pid ", os.Getpid())) {
		t.Errorf("range inside a held block: %v", err)
	}
	own, err := reg.claim(mustRange(t, "127.200.0.10-127.200.0.250"), "/state/x")
	if err != nil {
		t.Fatalf("a range no one holds: %v", err)
	}
	defer own.release()
	if _, err := reg.claim(mustRange(t, "127.199.255.0-127.200.0.10"), "/state/y"); !errors.Is(err, errRangeHeld) {
		t.Errorf("a range overlapping an explicit one: %v", err)
	}

	claims[1].release()
	prefer := blockN(3) // held: the lowest free block instead
	c, err := reg.claimFree(&prefer, "/state/z")
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	if c.rng != blockN(2) {
		t.Errorf("preferring a held block got %s, want the free %s", c.rng, blockN(2))
	}
	c.release()
	prefer = blockN(2)
	again, err := reg.claimFree(&prefer, "/state/1")
	if err != nil || again.rng != blockN(2) {
		t.Fatalf("restart preferring its released block: %v %v", again, err)
	}
	again.release()
}

// TestBlockFreedWhenHolderDies: a block another process holds (flock(1)
// on its claim file, as a testbed's process does) stays taken until that
// process is killed; then the next testbed gets it and the stale file
// goes.
func TestBlockFreedWhenHolderDies(t *testing.T) {
	bin := testenv.RequireTool(t, "flock", "util-linux")
	reg := blockRegistry{dir: t.TempDir()}
	path := filepath.Join(reg.dir, blockN(1).String()+".claim")
	cmd := exec.Command(bin, path, "-c", "echo locked; exec sleep 600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // flock and its child share the lock
	kill := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kill)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("flock: %q %v", line, err)
	}
	c, err := reg.claimFree(nil, "/state/a")
	if err != nil {
		t.Fatal(err)
	}
	if c.rng != blockN(2) {
		t.Errorf("got %s while another process holds %s", c.rng, blockN(1))
	}
	c.release()
	kill()
	// SIGKILL reaches flock's child (which shares the lock) in its own time.
	testenv.Eventually(t, 10*time.Second, func() bool {
		if c, err = reg.claimFree(nil, "/state/a"); err != nil {
			t.Fatal(err)
		}
		defer c.release()
		return c.rng == blockN(1)
	}, "got %s after the holder of %s died", c.rng, blockN(1))
	held, err := reg.held()
	left, _ := filepath.Glob(filepath.Join(reg.dir, "*.claim"))
	if err != nil || len(held) != 0 || len(left) != 0 {
		t.Errorf("nothing is held, yet: %v %v, files %v", held, err, left)
	}
}

func TestParseRange(t *testing.T) {
	for _, bad := range []string{"", "127.1.0.1", "127.1.0.9-127.1.0.1", "a-b", "::1-::2", "127.1.0.1-"} {
		if _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
	r := mustRange(t, " 127.3.0.10 - 127.3.255.250 ")
	if r != blockN(3) || r.String() != "127.3.0.10-127.3.255.250" {
		t.Errorf("parsed %s", r)
	}
}

// TestWithIdentity: derived MACs and UUIDs follow the testbed ID (two IDs,
// two sets; "" the name-only ones of before), steer clear of pinned MACs,
// and pinned MACs stay.
func TestWithIdentity(t *testing.T) {
	pinned := sim.MACIn("a", "node-1", 0, 0) // what node-1 would derive
	ms := []Machine{{Name: "node-0", NICs: 2}, {Name: "node-1"}, {Name: "pinned", MACs: []net.HardwareAddr{pinned}}}
	a, b, legacy := withIdentity(ms, "a"), withIdentity(ms, "b"), withIdentity(ms, "")
	if ms[0].MACs != nil {
		t.Error("withIdentity changed its argument")
	}
	if len(a[0].MACs) != 2 || a[0].MACs[0].String() == a[0].MACs[1].String() {
		t.Errorf("node-0 MACs %v", a[0].MACs)
	}
	if a[1].MACs[0].String() == pinned.String() || a[1].MACs[0].String() != sim.MACIn("a", "node-1", 0, 1).String() {
		t.Errorf("node-1 %v collides with the pinned %s or is not the next salt", a[1].MACs, pinned)
	}
	if a[2].MACs[0].String() != pinned.String() || b[2].MACs[0].String() != pinned.String() {
		t.Errorf("a pinned MAC changed: %v %v", a[2].MACs, b[2].MACs)
	}
	if a[0].MACs[0].String() == b[0].MACs[0].String() || a[0].uuid == b[0].uuid {
		t.Errorf("testbeds a and b share node-0's MAC %s or UUID", a[0].MACs[0])
	}
	if legacy[0].MACs[0].String() != sim.MAC("node-0", 0, 0).String() || legacy[0].uuid != sim.UUIDFor("node-0") {
		t.Errorf("a pre-ID state dir's node-0: %v", legacy[0].MACs)
	}
	for _, m := range a {
		if m.MACs[0][0] != 0x52 || m.MACs[0][1] != 0x54 || m.MACs[0][2] != 0 {
			t.Errorf("%s MAC %s outside 52:54:00", m.Name, m.MACs[0])
		}
	}
}

// TestLoadIdentity: a new state dir gets a random ID, kept; one an earlier
// metalbed used (a machine's disk) keeps the name-only MACs ("").
func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	id, err := loadIdentity(dir)
	if err != nil || len(id.ID) != 16 {
		t.Fatalf("new dir: %+v %v", id, err)
	}
	again, err := loadIdentity(dir)
	if err != nil || again != id {
		t.Errorf("second load %+v %v, want %+v", again, err, id)
	}
	if other, _ := loadIdentity(t.TempDir()); other.ID == id.ID {
		t.Errorf("two state dirs share ID %s", id.ID)
	}
	old := t.TempDir()
	os.Mkdir(filepath.Join(old, "node-0"), 0o755)
	os.WriteFile(filepath.Join(old, "node-0", "disk.img"), nil, 0o644)
	if id, err := loadIdentity(old); err != nil || id.ID != "" {
		t.Errorf("pre-ID state dir: %+v %v", id, err)
	}
	os.WriteFile(filepath.Join(dir, IdentityFile), []byte("{"), 0o644)
	if _, err := loadIdentity(dir); err == nil || !strings.Contains(err.Error(), IdentityFile) {
		t.Errorf("corrupt identity: %v", err)
	}
}

// TestTwoTestbedsSideBySide: two testbeds with the default DHCP range
// lease from blocks of their own, their node-0s have different MACs and
// UUIDs, and both deploy an iSCSI node at once (each ramdisk's target on
// port 3260 of its lease); a third told the first one's range is refused
// naming the Config field; a restart keeps the block, MACs and UUIDs.
func TestTwoTestbedsSideBySide(t *testing.T) {
	if testing.Short() {
		t.Skip("deploys two machines")
	}
	nodes := DemoNodes(false)[:1] // iSCSI deploy, netboot, BIOS
	cfgs := make([]Config, 2)
	tbs := make([]*Testbed, 2)
	stops := make([]func(), 2)
	for i := range cfgs {
		cfgs[i] = Config{StateDir: t.TempDir(), Machines: DemoMachines(nodes, false), Provisioner: free()}
		var err error
		if tbs[i], err = New(cfgs[i]); err != nil {
			t.Fatal(err)
		}
		stops[i] = run(t, tbs[i])
	}
	inv := []Inventory{tbs[0].Inventory(), tbs[1].Inventory()}
	r0, r1 := mustRange(t, inv[0].Boot.DHCPRange), mustRange(t, inv[1].Boot.DHCPRange)
	if r0.overlaps(r1) {
		t.Errorf("both lease from %s and %s", r0, r1)
	}
	n0, n1 := inv[0].Nodes[0], inv[1].Nodes[0]
	if n0.MACs[0] == n1.MACs[0] || n0.UUID == n1.UUID {
		t.Errorf("both node-0s have MAC %s / UUID %s and %s / %s", n0.MACs[0], n0.UUID, n1.MACs[0], n1.UUID)
	}

	errs := make(chan error, 2)
	for _, tb := range tbs {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			img, err := tb.BuildDemoImage(ctx)
			if err != nil {
				errs <- err
				return
			}
			rs, err := tb.DeployDemo(ctx, nodes, img, "", nil)
			if err == nil {
				err = rs[0].Err
			}
			errs <- err
		}()
	}
	for range tbs {
		if err := <-errs; err != nil {
			t.Errorf("deploy beside another testbed: %v", err)
		}
	}
	for i, tb := range tbs {
		kinds, _ := timelineKinds(t, tb.APIURL(), "node-0")
		acks := 0
		for _, e := range tb.Timeline().Node("node-0") {
			if e.Kind != events.DHCPAck {
				continue
			}
			acks++
			a, err := netip.ParseAddr(strings.Fields(e.Detail + " ")[0])
			if r := mustRange(t, inv[i].Boot.DHCPRange); err != nil || !r.overlaps(addrRange{a, a}) {
				t.Errorf("testbed %d leased %q outside its range %s", i, e.Detail, r)
			}
		}
		if acks == 0 || kinds[events.ConductorActive] == 0 {
			t.Errorf("testbed %d: %d DHCP acks, timeline %v", i, acks, kinds)
		}
	}

	third := Config{StateDir: t.TempDir(), Machines: machines(1), Provisioner: free()}
	third.Provisioner.DHCPRange = inv[0].Boot.DHCPRange
	tb, err := New(third)
	if err != nil {
		t.Fatal(err)
	}
	var ae *AddrError
	if err := tb.Serve(t.Context()); !errors.As(err, &ae) || ae.Field != "Provisioner.DHCPRange" || !strings.Contains(err.Error(), cfgs[0].StateDir) {
		t.Errorf("third testbed on the first's range: %v", err)
	}

	stops[0]()
	again, err := New(cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	run(t, again)
	after := again.Inventory()
	if after.Boot.DHCPRange != inv[0].Boot.DHCPRange || after.Nodes[0].MACs[0] != n0.MACs[0] || after.Nodes[0].UUID != n0.UUID {
		t.Errorf("after a restart: range %s MAC %s UUID %s, before %s %s %s",
			after.Boot.DHCPRange, after.Nodes[0].MACs[0], after.Nodes[0].UUID, inv[0].Boot.DHCPRange, n0.MACs[0], n0.UUID)
	}
}
