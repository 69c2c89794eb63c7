package scenarios

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cucumber/godog"
)

// deployTimeout bounds one deploy or undeploy: a PXE/iSCSI deploy takes
// some 15 s on the simulated machines, most of it Ironic's pacing.
const deployTimeout = 4 * time.Minute

// timelineEntry is one record of GET /v1/nodes/NODE/timeline.
type timelineEntry struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

func (w *world) registerDeploySteps(sc *godog.ScenarioContext) {
	sc.Given(`^a metalbed testbed with (\d+) (bios|uefi) machines?(?: with (\d+) GiB disks?)?$`, func(ctx context.Context, n int, mode, disk string) error {
		spec := envSpec{Machines: n, BootMode: mode}
		if disk != "" {
			spec.DiskSize = disk + "GiB"
		}
		return w.startTestbed(ctx, spec)
	})
	sc.Step(`^node "([^"]*)" has instance_info for (?:a|an) "(partition|whole-disk)" image(?: with root_gb (\d+))?$`,
		func(ctx context.Context, name, kind, rootGB string) error {
			if err := w.needEnv(); err != nil {
				return err
			}
			m, err := w.env.machineNamed(name)
			if err != nil {
				return err
			}
			img, err := w.s.images.image(ctx, kind, m.BootMode)
			if err != nil {
				return err
			}
			w.image = img
			src := img.url
			if w.s.backend == "libvirt" {
				// Real VMs reach only their boot network: the conductor
				// reads the file, and publishes it for the agent on its
				// HTTP boot server there.
				src = "file://" + img.path
			}
			info := map[string]any{
				"image_source":   src,
				"image_checksum": img.md5,
				"root_gb":        "1",
				"capabilities":   map[string]any{"boot_option": "local"},
			}
			// The agent is told the image's kind (Ironic: the image's
			// img_type, or instance_info image_type); the iscsi deploy
			// finds it out from the image itself.
			var n apiNode
			if _, err := w.getNode(ctx, name, &n); err != nil {
				return err
			}
			if n.DeployInterface == "direct" {
				info["image_type"] = kind
			}
			if rootGB != "" {
				info["root_gb"] = rootGB
			}
			return w.patchInstanceInfo(ctx, name, info)
		})
	sc.Step(`^node "([^"]*)" has instance_info for a partition image booted from the network$`, func(ctx context.Context, name string) error {
		if err := w.needEnv(); err != nil {
			return err
		}
		if w.s.backend != "libvirt" {
			return fmt.Errorf("a network-booted instance needs the libvirt backend: its kernel and initramfs are the real ones of `metalbed ramdisk build`")
		}
		img, err := w.s.images.image(ctx, "partition", "bios")
		if err != nil {
			return err
		}
		w.image = img
		// The deploy ramdisk's initramfs is also the instance's: booted
		// with root=UUID= and no deploy parameters, it mounts the deployed
		// root and starts its /sbin/init, as a distribution's would.
		info := map[string]any{
			"image_source":   "file://" + img.path,
			"image_checksum": img.md5,
			"root_gb":        "1",
			"kernel":         "file://" + filepath.Join(w.s.ramdiskDir, "vmlinuz"),
			"ramdisk":        "file://" + filepath.Join(w.s.ramdiskDir, "initramfs"),
			"capabilities":   map[string]any{"boot_option": "netboot"},
		}
		var n apiNode
		if _, err := w.getNode(ctx, name, &n); err != nil {
			return err
		}
		if n.DeployInterface == "direct" {
			info["image_type"] = "partition"
		}
		return w.patchInstanceInfo(ctx, name, info)
	})
	sc.Step(`^machine "([^"]*)" boots its instance from (its disk|the network)$`, func(ctx context.Context, name, from string) error {
		// The VM's console log starts afresh with each power-on: the
		// instance's announcement is in the last boot's log.
		if err := w.consoleShowsWithin(ctx, name, "metalbed-instance: booted", 1, 3*time.Minute); err != nil {
			return err
		}
		want := "disk"
		if from == "the network" {
			want = "pxe"
		}
		// The host reads the serial log a few times a second: the
		// timeline follows the console shortly.
		return poll(ctx, 10*time.Second, fmt.Sprintf("the timeline of %s to show instance.booted after a boot from %s", name, want), func() (bool, string, error) {
			tl, err := w.timeline(ctx, name)
			if err != nil {
				return false, "", err
			}
			var last string
			booted := false
			for _, e := range tl {
				switch e.Kind {
				case "machine.boot":
					last, booted = e.Detail, false
				case "instance.booted":
					booted = true
				}
			}
			return booted && last == want, fmt.Sprintf("last boot from %q, instance.booted after it: %v", last, booted), nil
		})
	})
	sc.Step(`^node "([^"]*)" uses the (iscsi|direct|agent) deploy interface$`, func(ctx context.Context, name, iface string) error {
		if iface == "agent" {
			iface = "direct"
		}
		id, err := w.nodeID(name)
		if err != nil {
			return err
		}
		// The agent boots the same deploy kernel and ramdisk `metalbed up
		// --enroll` gave the node: the ramdisk runs as the agent when the
		// deploy interface is direct.
		_, err = w.must(ctx, http.StatusOK, "PATCH", "/v1/nodes/"+id,
			[]map[string]any{{"op": "replace", "path": "/deploy_interface", "value": iface}})
		return err
	})
	sc.Step(`^node "([^"]*)" has automated cleaning on$`, func(ctx context.Context, name string) error {
		id, err := w.nodeID(name)
		if err != nil {
			return err
		}
		_, err = w.must(ctx, http.StatusOK, "PATCH", "/v1/nodes/"+id,
			[]map[string]any{{"op": "replace", "path": "/automated_clean", "value": true}})
		return err
	})
	sc.Step(`^the disk of machine "([^"]*)" holds no partition table$`, func(name string) error {
		return w.diskWiped(name)
	})
	sc.Step(`^I deploy node "([^"]*)"$`, func(ctx context.Context, name string) error {
		return w.provisionRequest(ctx, name, "active")
	})
	sc.Step(`^I undeploy node "([^"]*)"$`, func(ctx context.Context, name string) error {
		return w.provisionRequest(ctx, name, "deleted")
	})
	sc.Step(`^node "([^"]*)" is active$`, func(ctx context.Context, name string) error {
		return w.waitStable(ctx, name, "active")
	})
	sc.Step(`^node "([^"]*)" ends in provision state "([^"]*)"$`, w.waitStable)
	sc.Step(`^the disk of machine "([^"]*)" holds the image$`, func(name string) error {
		return w.diskHoldsImage(name)
	})
	sc.Step(`^machine "([^"]*)" boots from its disk in (bios|uefi) mode(?: (\d+) times)?$`, func(ctx context.Context, name, mode, times string) error {
		want := "Booting from hard disk (legacy BIOS)"
		if mode == "uefi" {
			want = "Booting from hard disk (UEFI)"
		}
		n := 1
		if times != "" {
			fmt.Sscan(times, &n)
		}
		if err := w.consoleShows(ctx, name, want, n); err != nil {
			return err
		}
		return w.consoleShows(ctx, name, "metalbed-instance: booted", n)
	})
	sc.Step(`^the timeline of node "([^"]*)" shows "([^"]*)"$`, func(ctx context.Context, name, kind string) error {
		return poll(ctx, 30*time.Second, fmt.Sprintf("the timeline of %s to show %q", name, kind), func() (bool, string, error) {
			tl, err := w.timeline(ctx, name)
			if err != nil {
				return false, "", err
			}
			for _, e := range tl {
				if e.Kind == kind {
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("%d entries", len(tl)), nil
		})
	})
	sc.Step(`^the timeline of node "([^"]*)" shows "([^"]*)" naming "([^"]*)"$`, func(ctx context.Context, name, kind, text string) error {
		return poll(ctx, 30*time.Second, fmt.Sprintf("the timeline of %s to show %q naming %q", name, kind, text), func() (bool, string, error) {
			tl, err := w.timeline(ctx, name)
			if err != nil {
				return false, "", err
			}
			var details []string
			for _, e := range tl {
				if e.Kind == kind && strings.Contains(e.Detail, text) {
					return true, "", nil
				}
				if e.Kind == kind {
					details = append(details, e.Detail)
				}
			}
			return false, fmt.Sprintf("%s details %q", kind, details), nil
		})
	})
	sc.Step(`^the timeline of node "([^"]*)" shows "([^"]*)" (\d+) times$`, func(ctx context.Context, name, kind string, want int) error {
		return poll(ctx, deployTimeout, fmt.Sprintf("the timeline of %s to show %q %d times", name, kind, want), func() (bool, string, error) {
			tl, err := w.timeline(ctx, name)
			if err != nil {
				return false, "", err
			}
			n := 0
			for _, e := range tl {
				if e.Kind == kind {
					n++
				}
			}
			if n > want {
				return false, "", fmt.Errorf("the timeline of %s shows %q %d times, want %d", name, kind, n, want)
			}
			return n == want, fmt.Sprintf("%d times in %d entries", n, len(tl)), nil
		})
	})
	sc.Step(`^the timeline of node "([^"]*)" shows "([^"]*)" before "([^"]*)"$`, func(ctx context.Context, name, first, then string) error {
		tl, err := w.timeline(ctx, name)
		if err != nil {
			return err
		}
		iFirst, iThen := -1, -1
		for i, e := range tl {
			if e.Kind == first && iFirst < 0 {
				iFirst = i
			}
			if e.Kind == then {
				iThen = i
			}
		}
		if iFirst < 0 || iThen < 0 || iFirst > iThen {
			return fmt.Errorf("want %q before %q in the timeline of %s (positions %d, %d of %d)", first, then, name, iFirst, iThen, len(tl))
		}
		return nil
	})
}

func (w *world) provisionRequest(ctx context.Context, name, verb string) error {
	id, err := w.nodeID(name)
	if err != nil {
		return err
	}
	_, err = w.must(ctx, http.StatusAccepted, "PUT", "/v1/nodes/"+id+"/states/provision", map[string]any{"target": verb})
	return err
}

// waitStable waits for a node to reach want with nothing in flight, and
// fails at once if it settles in a failure state instead.
func (w *world) waitStable(ctx context.Context, name, want string) error {
	return poll(ctx, deployTimeout, fmt.Sprintf("node %s to reach provision state %q", name, want), func() (bool, string, error) {
		var n apiNode
		if _, err := w.getNode(ctx, name, &n); err != nil {
			return false, "", err
		}
		status := fmt.Sprintf("provision_state %q target %v last_error %v", n.ProvisionState, n.TargetProvisionState, n.LastError)
		// A failure state keeps its target (deploy failed → active), as in Ironic.
		if n.ProvisionState == want && (n.TargetProvisionState == nil || strings.HasSuffix(want, " failed")) {
			return true, status, nil
		}
		if strings.HasSuffix(n.ProvisionState, " failed") && n.ProvisionState != want {
			return false, status, fmt.Errorf("node %s ended in %q, want %q: last_error %v", name, n.ProvisionState, want, n.LastError)
		}
		return false, status, nil
	})
}

func (w *world) patchInstanceInfo(ctx context.Context, name string, info map[string]any) error {
	id, err := w.nodeID(name)
	if err != nil {
		return err
	}
	var ops []map[string]any
	for k, v := range info {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	_, err = w.must(ctx, http.StatusOK, "PATCH", "/v1/nodes/"+id, ops)
	return err
}

func (w *world) timeline(ctx context.Context, name string) ([]timelineEntry, error) {
	if w.env == nil || w.env.timelineURL == "" {
		return nil, pending(missingTL)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "GET", w.env.timelineURL+"/v1/nodes/"+name+"/timeline", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("timeline of %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("timeline of %s: HTTP %d: %s", name, resp.StatusCode, b)
	}
	var tl struct {
		Entries []timelineEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &tl); err != nil {
		return nil, fmt.Errorf("timeline of %s: %w", name, err)
	}
	return tl.Entries, nil
}

// diskHoldsImage checks the machine's disk file: a whole-disk image is its
// first bytes; a partition image is the content of one of its partitions
// (MBR or GPT, as Ironic lays them out).
func (w *world) diskHoldsImage(name string) error {
	if w.image == nil {
		return fmt.Errorf("no image was chosen in this scenario")
	}
	m, err := w.env.machineNamed(name)
	if err != nil {
		return err
	}
	img, err := os.ReadFile(w.image.path)
	if err != nil {
		return err
	}
	disk, err := os.Open(m.Disk.Path)
	if err != nil {
		return fmt.Errorf("disk of %s: %w", name, err)
	}
	defer disk.Close()
	starts, err := partitionStarts(disk)
	if err != nil {
		return fmt.Errorf("disk of %s: %w", name, err)
	}
	got := make([]byte, len(img))
	for _, off := range append([]int64{0}, starts...) {
		if _, err := disk.ReadAt(got, off); err != nil && err != io.EOF {
			continue
		}
		if bytes.Equal(got, img) {
			return nil
		}
	}
	return fmt.Errorf("the disk of %s (%s) does not hold %s at its start or at any partition (%d partitions, byte offsets %v)",
		name, m.Disk.Path, w.image.url, len(starts), starts)
}

// diskWiped checks that a machine's disk has neither an MBR signature nor
// a GPT header, primary or backup: what cleaning's erase_devices_metadata
// leaves.
func (w *world) diskWiped(name string) error {
	m, err := w.env.machineNamed(name)
	if err != nil {
		return err
	}
	disk, err := os.Open(m.Disk.Path)
	if err != nil {
		return fmt.Errorf("disk of %s: %w", name, err)
	}
	defer disk.Close()
	fi, err := disk.Stat()
	if err != nil {
		return err
	}
	sector := make([]byte, 512)
	for _, c := range []struct {
		off  int64
		what string
		bad  func([]byte) bool
	}{
		{0, "an MBR boot signature", func(b []byte) bool { return b[510] == 0x55 && b[511] == 0xaa }},
		{512, "a GPT header", func(b []byte) bool { return string(b[:8]) == "EFI PART" }},
		{fi.Size() - 512, "a backup GPT header", func(b []byte) bool { return string(b[:8]) == "EFI PART" }},
	} {
		if _, err := disk.ReadAt(sector, c.off); err != nil {
			return fmt.Errorf("disk of %s at byte %d: %w", name, c.off, err)
		}
		if c.bad(sector) {
			return fmt.Errorf("the disk of %s (%s) still holds %s at byte %d", name, m.Disk.Path, c.what, c.off)
		}
	}
	return nil
}

// partitionStarts returns the byte offsets of the partitions of an MBR or
// GPT disk (512-byte sectors).
func partitionStarts(disk io.ReaderAt) ([]int64, error) {
	mbr := make([]byte, 512)
	if _, err := disk.ReadAt(mbr, 0); err != nil {
		return nil, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, nil
	}
	var starts []int64
	if mbr[446+4] != 0xee {
		for i := range 4 {
			e := mbr[446+16*i:]
			if lba := binary.LittleEndian.Uint32(e[8:]); e[4] != 0 && lba != 0 {
				starts = append(starts, int64(lba)*512)
			}
		}
		return starts, nil
	}
	hdr := make([]byte, 92)
	if _, err := disk.ReadAt(hdr, 512); err != nil {
		return nil, err
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("protective MBR without a GPT header")
	}
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	count := min(binary.LittleEndian.Uint32(hdr[80:]), 128)
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || size > 4096 {
		return nil, fmt.Errorf("GPT entry size %d", size)
	}
	ents := make([]byte, int(count)*int(size))
	if _, err := disk.ReadAt(ents, entriesLBA*512); err != nil {
		return nil, err
	}
	for i := range int(count) {
		e := ents[i*int(size):]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		starts = append(starts, int64(binary.LittleEndian.Uint64(e[32:]))*512)
	}
	return starts, nil
}

// startTestbed starts a deploy testbed (`metalbed up --enroll`, every port
// ephemeral, a DHCP range of its own) and records the node --enroll
// created for each machine, named after it.
func (w *world) startTestbed(ctx context.Context, spec envSpec) error {
	if !w.s.canDeploy {
		return pending(missingDeploy)
	}
	spec.Deploy = true
	if w.s.backend == "libvirt" {
		spec.RamdiskDir = w.s.ramdiskDir
	}
	if err := w.start(ctx, spec); err != nil {
		return err
	}
	for name := range w.env.machine {
		r, err := w.must(ctx, http.StatusOK, "GET", "/v1/nodes/"+name, nil)
		if err != nil {
			return fmt.Errorf("node enrolled for %s: %w", name, err)
		}
		var node apiNode
		if err := json.Unmarshal(r.body, &node); err != nil {
			return err
		}
		w.nodes[name] = node.UUID
	}
	return nil
}
