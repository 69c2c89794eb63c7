package iscsi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
func (d *Deploy) Continue(ctx context.Context, node *provisioner.Node, method string, args map[string]any) (provisioner.ProvisionState, error) {
	str := func(k string) string { s, _ := args[k].(string); return s }
	d.log.Warn("The node is using the bash deploy ramdisk for its deployment. This deploy ramdisk has been deprecated. Please use the ironic-python-agent (IPA) ramdisk instead.", "node", node.UUID)
	switch {
	case method == MethodPassDeployInfo && node.ProvisionState == provisioner.StateCleaning:
		return d.continueCleaning(ctx, node, str("address"), str("iqn"), str("error"))
	case method == MethodPassDeployInfo:
		return d.continueDeploy(ctx, node, str("address"), str("iqn"), str("error"))
	case method == MethodPassBootloaderInfo && node.ProvisionState == provisioner.StateDeploying:
		return d.bootloaderInstalled(ctx, node, str("address"), str("status"), str("error"))
	}
	return "", fmt.Errorf("%s is not expected while node %s is %s", method, node.UUID, node.ProvisionState)
}

// failed powers the node off (Ironic's set_failed_state) and returns msg
// as the error that fails it.
func (d *Deploy) failed(ctx context.Context, node *provisioner.Node, msg string) error {
	if err := d.powerOff(ctx, node); err != nil {
		msg += fmt.Sprintf(" Also failed to power off node %s. Error: %s", node.UUID, err)
	}
	d.log.Error("deploy failed", "node", node.UUID, "err", msg)
	return fmt.Errorf("%s", msg)
}

func instanceName(node *provisioner.Node) string {
	if node.InstanceUUID == "" {
		return "None"
	}
	return node.InstanceUUID
}

// login opens the ramdisk's target.
func (d *Deploy) login(ctx context.Context, node *provisioner.Node, address, iqn string) (*initiator.Session, error) {
	portal := net.JoinHostPort(address, strconv.Itoa(d.cfg.ISCSIPort))
	s, err := initiator.Dial(ctx, initiator.Config{
		Addr: portal, TargetIQN: iqn, LUN: 1, InitiatorIQN: d.cfg.InitiatorIQN, Logger: d.log,
		DialContext: func(ctx context.Context, addr string) (net.Conn, error) { return d.dial(ctx, "tcp", addr) },
	})
	if err != nil {
		return nil, fmt.Errorf("iSCSI login to %s %s: %w", portal, iqn, err)
	}
	d.milestone(node, "iscsi login", fmt.Sprintf("%s %s, LUN 1, %d bytes", portal, iqn, s.Size()))
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
	d.milestone(node, "iscsi logout", "")
	return nil
}

// continueDeploy is pass_deploy_info for a deploy: continue_deploy, then
// boot the instance or let the ramdisk install the bootloader.
func (d *Deploy) continueDeploy(ctx context.Context, node *provisioner.Node, address, iqn, ramdiskErr string) (provisioner.ProvisionState, error) {
	d.milestone(node, "pass_deploy_info", "from "+address)
	if ramdiskErr != "" {
		d.destroyImages(node)
		return "", d.failed(ctx, node, "Error returned from deploy ramdisk: "+ramdiskErr)
	}
	res, err := d.writeImage(ctx, node, address, iqn)
	if err != nil {
		d.destroyImages(node)
		return "", d.failed(ctx, node, fmt.Sprintf("Deploy failed for instance %s. Error: %s", instanceName(node), err))
	}
	id := res.RootUUIDOrDiskID()
	if id == "" {
		d.destroyImages(node)
		return "", d.failed(ctx, node, fmt.Sprintf("Couldn't determine the UUID of the root partition or the disk identifier after deploying node %s", node.UUID))
	}
	node.DriverInternalInfo["root_uuid_or_disk_id"] = id
	if res.ESPUUID != "" {
		node.DriverInternalInfo["efi_system_partition_uuid"] = res.ESPUUID
	}
	d.destroyImages(node)

	whole, _ := node.DriverInternalInfo["is_whole_disk_image"].(bool)
	if d.bootOption(node) == disk.BootOptionLocal && !whole {
		if err := d.notify(ctx, node, address); err != nil {
			return "", d.failed(ctx, node, fmt.Sprintf("Failed to continue iSCSI deployment. Error: %s", err))
		}
		return provisioner.StateWaitCallback, nil
	}
	_, boot, err := d.interfaces(node)
	if err == nil {
		err = boot.PrepareInstance(ctx, node)
	}
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to continue iSCSI deployment. Error: %s", err))
	}
	return d.finish(ctx, node, address)
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
			BootMode: d.bootMode(node), BootOption: d.bootOption(node),
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
	start := time.Now()
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
	secs := time.Since(start).Seconds()
	if err := d.logout(ctx, node, s); err != nil {
		return nil, err
	}
	kind := "partition image, " + pp.BootMode + " " + pp.BootOption
	if whole {
		kind = "whole-disk image"
	}
	d.milestone(node, "image written", fmt.Sprintf("%d bytes in %.2fs (%.1f MiB/s), %s, root %s",
		st.Size(), secs, float64(st.Size())/(1<<20)/max(secs, 1e-9), kind, res.RootUUIDOrDiskID()))
	return res, nil
}

// finish is Ironic's finish_deploy, plus the reboot through the power
// interface: notify "done", reboot, active.
func (d *Deploy) finish(ctx context.Context, node *provisioner.Node, address string) (provisioner.ProvisionState, error) {
	if err := d.notify(ctx, node, address); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to notify ramdisk to reboot after bootloader installation. Error: %s", err))
	}
	power, _, err := d.interfaces(node)
	if err == nil {
		err = power.Reboot(ctx, node, false)
	}
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to reboot node %s into its instance. Error: %s", node.UUID, err))
	}
	node.PowerState = provisioner.PowerOn
	d.milestone(node, "reboot", "into the instance")
	return provisioner.StateActive, nil
}

// bootloaderInstalled is pass_bootloader_install_info.
func (d *Deploy) bootloaderInstalled(ctx context.Context, node *provisioner.Node, address, status, ramdiskErr string) (provisioner.ProvisionState, error) {
	d.milestone(node, "bootloader", "status "+status)
	if status != "SUCCEEDED" {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to install bootloader on node %s. Error: %s.", node.UUID, ramdiskErr))
	}
	_, boot, err := d.interfaces(node)
	if err == nil {
		err = boot.PrepareInstance(ctx, node)
	}
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to continue iSCSI deployment. Error: %s", err))
	}
	return d.finish(ctx, node, address)
}

// continueCleaning is pass_deploy_info during cleaning: wipe the partition
// tables (erase_devices_metadata), notify, power off.
func (d *Deploy) continueCleaning(ctx context.Context, node *provisioner.Node, address, iqn, ramdiskErr string) (provisioner.ProvisionState, error) {
	d.milestone(node, "pass_deploy_info", "from "+address+" (cleaning)")
	if ramdiskErr != "" {
		return "", d.failed(ctx, node, "Error returned from deploy ramdisk: "+ramdiskErr)
	}
	s, err := d.login(ctx, node, address, iqn)
	if err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
	}
	if err := disk.DestroyDiskMetadata(s, s.Size()); err != nil {
		s.Close()
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
	}
	if err := d.logout(ctx, node, s); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
	}
	d.milestone(node, "disk wiped", "partition tables destroyed")
	if err := d.notify(ctx, node, address); err != nil {
		return "", d.failed(ctx, node, fmt.Sprintf("Failed to clean node %s. Error: %s", node.UUID, err))
	}
	if err := d.powerOff(ctx, node); err != nil {
		return "", fmt.Errorf("Failed to tear down cleaning on node %s. Error: %s", node.UUID, err)
	}
	_, boot, err := d.interfaces(node)
	if err == nil {
		err = boot.CleanUpRamdisk(ctx, node)
	}
	if err != nil {
		return "", fmt.Errorf("Failed to tear down cleaning on node %s. Error: %s", node.UUID, err)
	}
	delete(node.DriverInternalInfo, "deploy_key")
	return provisioner.StateAvailable, nil
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
