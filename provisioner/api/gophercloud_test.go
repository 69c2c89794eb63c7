package api_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/metalbed/metalbed/provisioner"
)

// TestGophercloud drives the provisioner with gophercloud's baremetal v1
// client, as metal3 and other Go users do.
func TestGophercloud(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := t.Context()
	client, err := noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: s.url + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	client.Microversion = "1.78"

	n, err := nodes.Create(ctx, client, nodes.CreateOpts{
		Driver: "fake-hardware", Name: "gc0",
		DriverInfo: map[string]any{"deploy_kernel": "http://127.0.0.1/k", "secret_password": "hunter2"},
		Properties: map[string]any{"cpus": 4},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if n.ProvisionState != string(nodes.Enroll) || n.DriverInfo["secret_password"] != "******" || n.PowerInterface != "fake" {
		t.Fatalf("created: %+v", n)
	}
	if _, err := ports.Create(ctx, client, ports.CreateOpts{NodeUUID: n.UUID, Address: "52:54:00:aa:bb:cc"}).Extract(); err != nil {
		t.Fatal(err)
	}
	_, err = ports.Create(ctx, client, ports.CreateOpts{NodeUUID: n.UUID, Address: "52:54:00:aa:bb:cc"}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Fatalf("duplicate MAC: %v", err)
	}

	wait := func(state nodes.ProvisionState) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := nodes.WaitForProvisionState(wctx, client, n.UUID, state); err != nil {
			t.Fatalf("waiting for %s: %v", state, err)
		}
	}
	if err := nodes.ChangeProvisionState(ctx, client, n.UUID, nodes.ProvisionStateOpts{Target: nodes.TargetManage}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wait(nodes.Manageable)

	v, err := nodes.Validate(ctx, client, n.UUID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if !v.Power.Result || !v.Management.Result || !v.Deploy.Result {
		t.Errorf("validate: %+v", v)
	}

	if err := nodes.ChangePowerState(ctx, client, n.UUID, nodes.PowerStateOpts{Target: nodes.PowerOn}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	s.waitNode(t, n.UUID, "power on", func(n2 *provisioner.Node) bool { return n2.PowerState == "power on" && n2.TargetPowerState == "" })

	persistent := true
	if err := nodes.SetBootDevice(ctx, client, n.UUID, nodes.BootDeviceOpts{BootDevice: "pxe", Persistent: persistent}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	bd, err := nodes.GetBootDevice(ctx, client, n.UUID).Extract()
	if err != nil || bd.BootDevice != "pxe" || !bd.Persistent {
		t.Fatalf("boot device: %+v %v", bd, err)
	}
	sup, err := nodes.GetSupportedBootDevices(ctx, client, n.UUID).Extract()
	if err != nil || len(sup) == 0 {
		t.Fatalf("supported boot devices: %v %v", sup, err)
	}

	upd, err := nodes.Update(ctx, client, n.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/extra/rack", Value: "r1"},
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/properties/cpus", Value: 8},
	}).Extract()
	if err != nil || upd.Extra["rack"] != "r1" || upd.Properties["cpus"] != float64(8) {
		t.Fatalf("update: %+v %v", upd, err)
	}
	_, err = nodes.Update(ctx, client, n.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/provision_state", Value: "active"},
	}).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Fatalf("patching provision_state: %v", err)
	}

	if err := nodes.ChangeProvisionState(ctx, client, n.UUID, nodes.ProvisionStateOpts{Target: nodes.TargetProvide}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wait(nodes.Available)
	if err := nodes.SetMaintenance(ctx, client, n.UUID, nodes.MaintenanceOpts{Reason: "gophercloud"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	var seen []nodes.Node
	err = nodes.ListDetail(client, nodes.ListOpts{Maintenance: true}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		page, err := nodes.ExtractNodes(p)
		seen = append(seen, page...)
		return true, err
	})
	if err != nil || len(seen) != 1 || seen[0].MaintenanceReason != "gophercloud" {
		t.Fatalf("list maintenance: %+v %v", seen, err)
	}
	if err := nodes.UnsetMaintenance(ctx, client, n.UUID).ExtractErr(); err != nil {
		t.Fatal(err)
	}

	// Bad transition: Ironic's 400 with its text.
	err = nodes.ChangeProvisionState(ctx, client, n.UUID, nodes.ProvisionStateOpts{Target: nodes.TargetProvide}).ExtractErr()
	var e gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &e) || e.Actual != http.StatusBadRequest {
		t.Fatalf("provide from available: %v", err)
	}

	var portList []ports.Port
	err = ports.List(client, ports.ListOpts{NodeUUID: n.UUID}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		page, err := ports.ExtractPorts(p)
		portList = append(portList, page...)
		return true, err
	})
	if err != nil || len(portList) != 1 || portList[0].Address != "52:54:00:aa:bb:cc" {
		t.Fatalf("ports: %+v %v", portList, err)
	}
	if err := nodes.Delete(ctx, client, n.UUID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Get(ctx, client, n.UUID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
}
