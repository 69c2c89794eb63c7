package iscsi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"io"
	"math/big"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/metalbed/metalbed/disk"
	"github.com/metalbed/metalbed/iscsitarget/initiator"
	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
)

// CallbackMethods lists pass_deploy_info and pass_bootloader_install_info
// as Ironic's iSCSI VendorPassthru lists them.
func (d *Deploy) CallbackMethods() []drivers.VendorMethod {
	return []drivers.VendorMethod{
		{Name: MethodPassBootloaderInfo, HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true,
			Description: "Accepts the results of bootloader installation."},
		{Name: MethodPassDeployInfo, HTTPMethods: []string{"POST"}, Async: true, RequireExclusiveLock: true,
			Description: "Continues the deployment of baremetal node over iSCSI."},
	}
}

// ValidateCallback checks the arguments as Ironic's get_deploy_info and
// validate_pass_bootloader_info_input do (the deploy key is checked by the
// API before this).
func (d *Deploy) ValidateCallback(_ context.Context, _ *provisioner.Node, method string, args map[string]any) error {
	str := func(k string) string { s, _ := args[k].(string); return s }
	switch method {
	case MethodPassDeployInfo:
		var missing []string
		for _, k := range []string{"address", "iqn"} {
			if str(k) == "" {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return &drivers.ParameterError{Msg: fmt.Sprintf("Parameters %s were not passed to ironic for deploy.", drivers.PyList(missing))}
		}
	case MethodPassBootloaderInfo:
		var missing []string
		for _, k := range []string{"address", "key", "status"} {
			if str(k) == "" {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return &drivers.ParameterError{Msg: fmt.Sprintf("Some mandatory input missing in 'pass_bootloader_info' vendor passthru from ramdisk. Missing are: %s", drivers.PyList(missing))}
		}
	default:
		return &drivers.ParameterError{Msg: fmt.Sprintf("Unsupported method (%s) passed through to vendor extension.", method)}
	}
	if ip := net.ParseIP(str("address")); ip == nil {
		return &drivers.ParameterError{Msg: fmt.Sprintf("Invalid address %q sent by the deploy ramdisk: want an IP address.", str("address"))}
	}
	return nil
}

// Continue handles the ramdisk's call for a node the conductor resumed.
func (d *Deploy) Continue(ctx context.Context, t *drivers.Task, method string, args map[string]any) (drivers.Step, error) {
	str := func(k string) string { s, _ := args[k].(string); return s }
	node := t.Node
	d.log.Warn("The node is using the bash deploy ramdisk for its deployment. This deploy ramdisk has been deprecated. Please use the ironic-python-agent (IPA) ramdisk instead.", "node", node.UUID)
	switch {
	case method == MethodPassDeployInfo && node.ProvisionState == provisioner.StateCleaning:
		return d.continueCleaning(ctx, t, str("address"), str("iqn"), str("error"))
	case method == MethodPassDeployInfo:
		return d.continueDeploy(ctx, t, str("address"), str("iqn"), str("error"))
	case method == MethodPassBootloaderInfo && node.ProvisionState == provisioner.StateDeploying:
		return d.bootloaderInstalled(ctx, t, str("address"), str("status"), str("error"))
	}
	return 0, fmt.Errorf("%s is not expected while node %s is %s", method, node.UUID, node.ProvisionState)
}

// fail is the deploy core's Fail with Ironic's message made of format and
// args (the cause is usually the last argument too).
func (d *Deploy) fail(ctx context.Context, t *drivers.Task, cause error, format string, args ...any) (drivers.Step, error) {
	return 0, d.core.Fail(ctx, t, cause, fmt.Sprintf(format, args...))
}

// login opens the ramdisk's target.
func (d *Deploy) login(ctx context.Context, node *provisioner.Node, address, iqn string) (*initiator.Session, error) {
	portal := net.JoinHostPort(address, strconv.Itoa(d.cfg.ISCSIPort))
	s, err := initiator.Dial(ctx, initiator.Config{
		Addr: portal, TargetIQN: iqn, LUN: 1, InitiatorIQN: d.cfg.InitiatorIQN, Logger: d.log,
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) { return d.core.Dial(ctx, "tcp", addr) },
	})
	if err != nil {
		return nil, fmt.Errorf("iSCSI login to %s %s: %w", portal, iqn, err)
	}
	d.core.Record(node, events.Event{Kind: events.ConductorISCSILogin, Detail: fmt.Sprintf("%s %s, LUN 1, %d bytes", portal, iqn, s.Size()), Who: events.Who{IQN: iqn}})
	return s, nil
}

// logout flushes the target's cache and ends the session.
func (d *Deploy) logout(ctx context.Context, node *provisioner.Node, s *initiator.Session) error {
	serr := s.Sync(ctx)
	cerr := s.Close()
	if serr != nil {
		return fmt.Errorf("SYNCHRONIZE CACHE: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("iSCSI logout: %w", cerr)
	}
	d.core.Milestone(node, events.ConductorISCSILogout, "")
	return nil
}

// continueDeploy is pass_deploy_info for a deploy: continue_deploy, then
// boot the instance or let the ramdisk install the bootloader.
func (d *Deploy) continueDeploy(ctx context.Context, t *drivers.Task, address, iqn, ramdiskErr string) (drivers.Step, error) {
	node := t.Node
	d.core.Milestone(node, events.ConductorPassDeployInfo, "from "+address)
	if ramdiskErr != "" {
		d.destroyImages(node)
		return d.fail(ctx, t, errors.New(ramdiskErr), "Error returned from deploy ramdisk: %s", ramdiskErr)
	}
	res, err := d.writeImage(ctx, node, address, iqn)
	if err != nil {
		d.destroyImages(node)
		return d.fail(ctx, t, err, "Deploy failed for instance %s. Error: %s", deploy.InstanceName(node), err)
	}
	id := res.RootUUIDOrDiskID()
	if id == "" {
		d.destroyImages(node)
		return d.fail(ctx, t, nil, "Couldn't determine the UUID of the root partition or the disk identifier after deploying node %s", node.UUID)
	}
	node.DriverInternalInfo["root_uuid_or_disk_id"] = id
	if res.ESPUUID != "" {
		node.DriverInternalInfo["efi_system_partition_uuid"] = res.ESPUUID
	}
	d.destroyImages(node)

	whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	if d.core.BootOption(node) == disk.BootOptionLocal && !whole {
		if err := d.notify(ctx, node, address); err != nil {
			return d.fail(ctx, t, err, "Failed to continue iSCSI deployment. Error: %s", err)
		}
		return drivers.StepWait, nil
	}
	if err := t.Boot.PrepareInstance(ctx, t); err != nil {
		return d.fail(ctx, t, err, "Failed to continue iSCSI deployment. Error: %s", err)
	}
	return d.finish(ctx, t, address)
}

// writeImage logs in, lays the image down and logs out.
func (d *Deploy) writeImage(ctx context.Context, node *provisioner.Node, address, iqn string) (*disk.Result, error) {
	img, err := os.Open(d.imagePath(node))
	if err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	defer img.Close()
	st, err := img.Stat()
	if err != nil {
		return nil, fmt.Errorf("instance image: %w", err)
	}
	whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	var pp disk.PartitionParams
	if !whole {
		in, err := d.instanceInfo(node, &whole)
		if err != nil {
			return nil, err
		}
		pp = disk.PartitionParams{
			BootMode: d.core.BootMode(node), BootOption: d.core.BootOption(node),
			DiskLabel: provisioner.Capability(node.InstanceInfo["capabilities"], "disk_label"),
			RootMB:    in.RootMB, SwapMB: in.SwapMB, EphemeralMB: in.EphemeralMB,
			EphemeralFormat: in.EphFormat, ConfigDrive: []byte(in.ConfigDrive),
		}
		if pp.DiskLabel == "" {
			pp.DiskLabel = provisioner.Capability(node.Properties["capabilities"], "disk_label")
		}
	}
	s, err := d.login(ctx, node, address, iqn)
	if err != nil {
		return nil, err
	}
	queued := time.Now()
	select {
	case d.writes <- struct{}{}:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	defer func() { <-d.writes }()
	if w := time.Since(queued); w > time.Second {
		d.log.Info("image write waited its turn", "node", node.UUID, "waited", w.Round(time.Millisecond), "max_writes", d.cfg.MaxWrites)
	}
	start := d.core.Now()
	var res *disk.Result
	if whole {
		res, err = disk.DeployWholeDiskImage(ctx, s, s.Size(), img, st.Size())
	} else {
		res, err = disk.DeployPartitionImage(ctx, s, s.Size(), img, st.Size(), pp)
	}
	if err != nil {
		s.Close()
		if targetLost(err) {
			// Whether the reader sees the reset or an EOF after the writer
			// took the reset is timing; the cause is not.
			err = fmt.Errorf("lost the connection to the iSCSI target %s: %w", iqn, err)
		}
		return nil, err
	}
	secs := d.core.Since(start).Seconds()
	if err := d.logout(ctx, node, s); err != nil {
		return nil, err
	}
	kind := "partition image, " + pp.BootMode + " " + pp.BootOption
	if whole {
		kind = "whole-disk image"
	}
	d.core.Milestone(node, events.ConductorImageWritten, fmt.Sprintf("%d bytes in %.2fs (%.1f MiB/s), %s, root %s",
		st.Size(), secs, float64(st.Size())/(1<<20)/max(secs, 1e-9), kind, res.RootUUIDOrDiskID()))
	return res, nil
}

// finish is Ironic's finish_deploy, plus the reboot through the power
// interface: notify "done", reboot, active.
func (d *Deploy) finish(ctx context.Context, t *drivers.Task, address string) (drivers.Step, error) {
	if err := d.notify(ctx, t.Node, address); err != nil {
		return d.fail(ctx, t, err, "Failed to notify ramdisk to reboot after bootloader installation. Error: %s", err)
	}
	if err := d.core.Reboot(ctx, t); err != nil {
		return d.fail(ctx, t, err, "Failed to reboot node %s into its instance. Error: %s", t.Node.UUID, err)
	}
	d.core.Milestone(t.Node, events.ConductorReboot, "into the instance")
	return drivers.StepDone, nil
}

// bootloaderInstalled is pass_bootloader_install_info.
func (d *Deploy) bootloaderInstalled(ctx context.Context, t *drivers.Task, address, status, ramdiskErr string) (drivers.Step, error) {
	d.core.Milestone(t.Node, events.ConductorBootloader, "status "+status)
	if status != "SUCCEEDED" {
		return d.fail(ctx, t, errors.New(ramdiskErr), "Failed to install bootloader on node %s. Error: %s.", t.Node.UUID, ramdiskErr)
	}
	if err := t.Boot.PrepareInstance(ctx, t); err != nil {
		return d.fail(ctx, t, err, "Failed to continue iSCSI deployment. Error: %s", err)
	}
	return d.finish(ctx, t, address)
}

// continueCleaning is pass_deploy_info during cleaning: wipe the partition
// tables (erase_devices_metadata), notify, power off.
func (d *Deploy) continueCleaning(ctx context.Context, t *drivers.Task, address, iqn, ramdiskErr string) (drivers.Step, error) {
	node := t.Node
	d.core.Milestone(node, events.ConductorPassDeployInfo, "from "+address+" (cleaning)")
	if ramdiskErr != "" {
		return d.fail(ctx, t, errors.New(ramdiskErr), "Error returned from deploy ramdisk: %s", ramdiskErr)
	}
	if err := d.wipe(ctx, node, address, iqn); err != nil {
		return d.fail(ctx, t, err, "Failed to clean node %s. Error: %s", node.UUID, err)
	}
	step, err := d.core.FinishCleaning(ctx, t)
	if err == nil {
		delete(node.DriverInternalInfo, "deploy_key")
	}
	return step, err
}

// wipe logs in, destroys the partition tables, logs out and tells the
// ramdisk it is done.
func (d *Deploy) wipe(ctx context.Context, node *provisioner.Node, address, iqn string) error {
	s, err := d.login(ctx, node, address, iqn)
	if err != nil {
		return err
	}
	if err := disk.DestroyDiskMetadata(s, s.Size()); err != nil {
		s.Close()
		return err
	}
	if err := d.logout(ctx, node, s); err != nil {
		return err
	}
	d.core.Milestone(node, events.ConductorDiskWiped, "partition tables destroyed")
	return d.notify(ctx, node, address)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomAlnum is Ironic's utils.random_alnum (upper case and digits).
func randomAlnum(n int) (string, error) {
	b := make([]byte, n)
	limit := big.NewInt(int64(len(alnum)))
	for i := range b {
		v, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return "", fmt.Errorf("deploy key: %w", err)
		}
		b[i] = alnum[v.Int64()]
	}
	return string(b), nil
}

// targetLost reports whether err says the target went away mid-write: a
// reset, a broken pipe, or an EOF where a response was due.
func targetLost(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
