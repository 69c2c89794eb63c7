package iscsi

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/deploy"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/imagecache"
)

func newTestDeploy(t *testing.T) *Deploy {
	t.Helper()
	cache, err := imagecache.New(imagecache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Config: deploy.Config{Images: cache}, ImagesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeTask is node's task on Ironic's fake hardware type.
func fakeTask(t *testing.T, n *provisioner.Node) *drivers.Task {
	t.Helper()
	task, err := drivers.NewFakeHardware().NewTask(n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestValidate(t *testing.T) {
	d := newTestDeploy(t)
	for _, tc := range []struct {
		name     string
		ii       map[string]any
		caps     string
		internal map[string]any
		want     string // "" = valid
	}{
		{"nothing", nil, "", nil, "Cannot validate iSCSI deploy. Some parameters were missing in node's instance_info. Missing are: ['image_source']"},
		{"partition netboot", map[string]any{"image_source": "/i", "image_type": "partition"}, "", nil,
			"Cannot validate iSCSI deploy. Some parameters were missing in node's instance_info. Missing are: ['root_gb', 'ramdisk', 'kernel']"},
		{"partition local", map[string]any{"image_source": "/i", "image_type": "partition"}, "boot_option:local", nil,
			"Cannot validate iSCSI deploy. Some parameters were missing in node's instance_info. Missing are: ['root_gb']"},
		{"partition ok", map[string]any{"image_source": "/i", "kernel": "/k", "ramdisk": "/r", "root_gb": "10"}, "", nil, ""},
		{"unknown kind", map[string]any{"image_source": "/i"}, "", nil, ""},
		{"bad root_gb", map[string]any{"image_source": "/i", "kernel": "/k", "ramdisk": "/r", "root_gb": "ten"}, "", nil,
			"Cannot validate parameter for driver deploy. Invalid parameter root_gb. Reason: ten is not an integer value."},
		{"whole disk swap", map[string]any{"image_source": "/i", "swap_mb": 512}, "", map[string]any{"is_whole_disk_image": true},
			"Cannot deploy whole disk image with swap or ephemeral size set"},
		{"bad boot_option", map[string]any{"image_source": "/i"}, "boot_option:disk", nil,
			"Invalid boot_option parameter 'disk'. Supported values are: ['local', 'netboot']"},
		{"bad boot_mode", map[string]any{"image_source": "/i"}, "boot_mode:legacy", nil,
			"Invalid boot_mode parameter 'legacy'. Supported values are: ['bios', 'uefi']"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &provisioner.Node{UUID: "u", Driver: "fake-hardware", InstanceInfo: tc.ii,
				Properties: map[string]any{"capabilities": tc.caps}, DriverInternalInfo: tc.internal}
			err := d.Validate(context.Background(), fakeTask(t, n))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Validate: %v\nwant %s", err, tc.want)
			case err != nil && !errors.Is(err, drivers.ErrInvalidParameter):
				t.Errorf("%v is not an invalid-parameter error", err)
			}
		})
	}
}

func TestValidateCallback(t *testing.T) {
	d := newTestDeploy(t)
	n := &provisioner.Node{UUID: "u"}
	for _, tc := range []struct {
		method string
		args   map[string]any
		want   string
	}{
		{MethodPassDeployInfo, map[string]any{"address": "127.0.0.2", "iqn": "iqn.x", "key": "K"}, ""},
		{MethodPassDeployInfo, map[string]any{"key": "K"}, "Parameters ['address', 'iqn'] were not passed to ironic for deploy."},
		{MethodPassDeployInfo, map[string]any{"address": "evil.example", "iqn": "iqn.x"}, "Invalid address"},
		{MethodPassBootloaderInfo, map[string]any{"address": "127.0.0.2", "key": "K", "status": "SUCCEEDED"}, ""},
		{MethodPassBootloaderInfo, map[string]any{"address": "127.0.0.2", "key": "K"},
			"Some mandatory input missing in 'pass_bootloader_info' vendor passthru from ramdisk. Missing are: ['status']"},
		{"heartbeat", nil, "Unsupported method (heartbeat) passed through to vendor extension."},
	} {
		err := d.ValidateCallback(context.Background(), n, tc.method, tc.args)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s %v: %v", tc.method, tc.args, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want %s", tc.method, tc.args, err, tc.want)
		}
	}
}

func TestContinueRefusesUnexpectedState(t *testing.T) {
	d := newTestDeploy(t)
	n := &provisioner.Node{UUID: "u", Driver: "fake-hardware", ProvisionState: provisioner.StateCleaning}
	if _, err := d.Continue(context.Background(), fakeTask(t, n), MethodPassBootloaderInfo, map[string]any{"status": "SUCCEEDED"}); err == nil {
		t.Fatal("bootloader callback accepted while cleaning")
	}
}
