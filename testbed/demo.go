package testbed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/provisioner/boot"
	"github.com/metalbed/metalbed/vms"
)

// DemoNode is one machine of the demo and how it is deployed.
type DemoNode struct {
	Mode   vms.BootMode
	Option string // boot_option
	Deploy string // deploy_interface
	// What says how in a few words (the demo's table shows 24 runes).
	What string
	// Boot is the node's boot interface; "" is the demo's. With
	// redfish-virtual-media the node is enrolled with driver redfish
	// (the testbed needs Config.Redfish).
	Boot string
}

// DemoNodes are the demo's four machines: on simulated machines, three by
// the bash ramdisk over iSCSI, one by the agent (deploy_interface direct)
// booted from Redfish virtual media (driver redfish).
// On real VMs (libvirt) netboot instances boot with the deploy ramdisk's
// initramfs, which mounts the deployed root; local-boot ones through the
// GRUB the ramdisk or agent installed; four VMs are about what 2 cores run
// at once under TCG.
func DemoNodes(libvirt bool) []DemoNode {
	if libvirt {
		return []DemoNode{
			{Mode: vms.BIOS, Option: "netboot", Deploy: "iscsi", What: "iSCSI, netboot, bios, VM"},
			{Mode: vms.UEFI, Option: "local", Deploy: "iscsi", What: "iSCSI, local, uefi, VM"},
			{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "agent, local, bios, VM"},
			{Mode: vms.BIOS, Option: "netboot", Deploy: "direct", What: "agent, netboot, bios, VM"},
		}
	}
	return []DemoNode{
		{Mode: vms.BIOS, Option: "netboot", Deploy: "iscsi", What: "iSCSI, netboot, bios"},
		{Mode: vms.BIOS, Option: "local", Deploy: "iscsi", What: "iSCSI, local, bios"},
		{Mode: vms.UEFI, Option: "local", Deploy: "iscsi", What: "iSCSI, local, uefi"},
		{Mode: vms.BIOS, Option: "local", Deploy: "direct", What: "agent, Redfish CD, bios", Boot: boot.VirtualMediaName},
	}
}

// DemoMachines are the demo's machines node-0 … with MACs of the testbed's
// own (Machine.MACs) and BMCs on free loopback ports: disks of 2 GiB (room for a 1 GiB root partition and the ESP), 4
// GiB on VMs (the agent, as IPA, takes no disk under 4 GiB).
func DemoMachines(nodes []DemoNode, libvirt bool) []Machine {
	size := int64(2 << 30)
	if libvirt {
		size = 4 << 30
	}
	ms := make([]Machine, len(nodes))
	for i, n := range nodes {
		name := fmt.Sprintf("node-%d", i)
		ms[i] = Machine{Name: name, DiskBytes: size, BootMode: n.Mode,
			BMCAddress: "127.0.0.1", Username: "admin", Password: "password"}
	}
	return ms
}

// DemoImage is the instance the demo deploys.
type DemoImage struct {
	Built           *disk.Built
	URL             string // image_source
	Kernel, Ramdisk string // instance kernel and ramdisk, for netboot
}

// BuildDemoImage builds a partition image into the HTTP boot server's
// root (the image cache downloads it from there, as Ironic's does from a
// web server) with an instance kernel and ramdisk for netboot. It needs
// Ready.
func (t *Testbed) BuildDemoImage(ctx context.Context) (*DemoImage, error) {
	b := t.provisioner()
	dir := filepath.Join(b.httpRoot(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	built, err := disk.Build(ctx, disk.BuildConfig{Kind: disk.KindPartition, Out: filepath.Join(dir, "instance.img")})
	if err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	base := b.httpURL() + "/images/"
	img := &DemoImage{Built: built, URL: base + "instance.img", Kernel: base + "instance-vmlinuz", Ramdisk: base + "instance-initrd"}
	if b.vmNet != nil {
		// Real VMs boot the real kernel with an initramfs that mounts
		// root=UUID= (the kernel alone cannot): the deploy ramdisk's,
		// which does so when booted without deploy parameters.
		for src, dst := range map[string]string{b.deployKernel: "instance-vmlinuz", b.deployRamdisk: "instance-initrd"} {
			if err := linkOrCopy(src, filepath.Join(dir, dst)); err != nil {
				return nil, err
			}
		}
		return img, nil
	}
	// The instance's initramfs for simulated machines: an empty one (the
	// simulated kernel reads the root file system from the disk itself).
	var rd bytes.Buffer
	w := cpio.Newc.Writer(&rd)
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "instance-initrd"), rd.Bytes(), 0o644); err != nil {
		return nil, err
	}
	kernel, err := disk.DefaultKernel(ctx)
	if err != nil {
		return nil, err
	}
	if err := linkOrCopy(kernel, filepath.Join(dir, "instance-vmlinuz")); err != nil {
		return nil, err
	}
	return img, nil
}

func linkOrCopy(src, dst string) error {
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// DemoResult is how one node's deploy and undeploy went.
type DemoResult struct {
	Name, UUID  string
	What        string
	DeployStart time.Time
	Active      time.Duration
	Booted      time.Duration
	Err         error
	Undeployed  time.Duration
	Wiped       bool // automated cleaning wiped the disk on undeploy
	UndeployErr error
}

// DeployDemo enrolls the machines (Config.Machines, in the order of
// nodes) with boot interface bootIface and each node's deploy interface,
// and deploys them all at once as a user of the API does: manage, provide,
// instance_info, deploy, then it waits for each instance to announce itself
// on the console. seen, when not nil, is told every provision state a node
// is seen in. One node's failure does not stop the others: it is in its
// result. It needs Ready.
func (t *Testbed) DeployDemo(ctx context.Context, nodes []DemoNode, img *DemoImage, bootIface string, seen func(node, state string)) ([]DemoResult, error) {
	b, f := t.provisioner(), t.fleet
	specs := f.enrollSpecs(b, bootIface, "", nil)
	for i := range specs {
		specs[i].deployInterface = nodes[i].Deploy
		if nodes[i].Boot != "" {
			specs[i].bootInterface = nodes[i].Boot
		}
		if nodes[i].Boot == boot.VirtualMediaName {
			if t.redfish == nil {
				return nil, fmt.Errorf("demo: %s boots from virtual media: the testbed needs Config.Redfish", specs[i].name)
			}
			specs[i].driver, specs[i].redfish = "redfish", t.redfish.nodeInfo(f.nodes[i])
		}
	}
	uuids, err := b.enroll(ctx, specs)
	if err != nil {
		return nil, err
	}
	api := b.client()
	results := make([]DemoResult, len(f.nodes))
	var g errgroup.Group
	for i, n := range f.nodes {
		g.Go(func() error {
			name := n.plan.Name
			results[i] = demoDeploy(ctx, api, b.tl, name, uuids[name], nodes[i], img, seen)
			return nil
		})
	}
	g.Wait()
	return results, nil
}

func (t *Testbed) provisioner() *bed {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bed
}

// demoDeploy walks one node from enroll to active, then waits for its
// instance to announce itself on the console.
func demoDeploy(ctx context.Context, api *Client, tl *events.Timeline, name, uuid string, node DemoNode, img *DemoImage, seen func(node, state string)) DemoResult {
	r := DemoResult{Name: name, UUID: uuid, What: node.What}
	// The instance's boot is an event on the machine; subscribe before
	// deploying so it cannot be missed.
	booted := make(chan events.Entry, 1)
	unsub := tl.Subscribe(func(e events.Entry) {
		if e.Node == name && e.Kind == "instance.booted" {
			select {
			case booted <- e:
			default:
			}
		}
	})
	defer unsub()
	step := func(target, want string) error {
		if err := api.Provision(ctx, uuid, target); err != nil {
			return err
		}
		_, err := api.WaitState(ctx, uuid, want, func(n *Node) {
			if seen != nil {
				seen(name, n.ProvisionState)
			}
		})
		return err
	}
	if r.Err = step("manage", "manageable"); r.Err != nil {
		return r
	}
	if r.Err = step("provide", "available"); r.Err != nil {
		return r
	}
	ii := map[string]any{
		"image_source":   img.URL,
		"image_checksum": img.Built.MD5,
		"root_gb":        "1",
		"capabilities":   map[string]any{"boot_option": node.Option},
	}
	if node.Option == "netboot" {
		ii["kernel"], ii["ramdisk"] = img.Kernel, img.Ramdisk
	}
	if node.Deploy == "direct" {
		// The agent is told the image's kind (Ironic: the image's
		// img_type property, or instance_info image_type).
		ii["image_type"] = "partition"
	}
	// Undeploying cleans the node: its ramdisk boots again and the
	// conductor wipes the disk's partition tables.
	ops := []map[string]any{{"op": "replace", "path": "/automated_clean", "value": true}}
	for k, v := range ii {
		ops = append(ops, map[string]any{"op": "add", "path": "/instance_info/" + k, "value": v})
	}
	if r.Err = api.Patch(ctx, uuid, ops); r.Err != nil {
		return r
	}
	r.DeployStart = time.Now()
	if r.Err = step("active", "active"); r.Err != nil {
		return r
	}
	r.Active = time.Since(r.DeployStart)
	select {
	case <-booted:
		r.Booted = time.Since(r.DeployStart)
	case <-ctx.Done():
		r.Err = fmt.Errorf("active, but the instance did not boot: %w", ctx.Err())
	}
	return r
}

// UndeployDemo undeploys every node of results back to available, all at
// once, and records in each result how long it took and whether
// automated cleaning wiped its disk.
func (t *Testbed) UndeployDemo(ctx context.Context, results []DemoResult) {
	b := t.provisioner()
	api := b.client()
	var g errgroup.Group
	for i := range results {
		r := &results[i]
		g.Go(func() error {
			t0 := time.Now()
			if err := api.Provision(ctx, r.UUID, "deleted"); err != nil {
				r.UndeployErr = err
				return nil
			}
			if _, err := api.WaitState(ctx, r.UUID, "available", nil); err != nil {
				r.UndeployErr = err
				return nil
			}
			r.Undeployed = time.Since(t0)
			for _, e := range b.tl.Node(r.Name) {
				if e.Kind == "conductor.disk_wiped" && !e.Time.Before(t0) {
					r.Wiped = true
				}
			}
			return nil
		})
	}
	g.Wait()
}
