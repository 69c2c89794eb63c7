package scenarios

import (
	"context"
	"fmt"

	"github.com/cucumber/godog"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
)

// gophercloud is the Go client operators' programs (metal3, Terraform
// providers) use against Ironic.
func (w *world) gophercloud() (*gophercloud.ServiceClient, error) {
	if err := w.needEnv(); err != nil {
		return nil, err
	}
	c, err := noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: w.env.apiURL + "/v1/"})
	if err != nil {
		return nil, fmt.Errorf("gophercloud client: %w", err)
	}
	c.Microversion = apiVersion
	return c, nil
}

func (w *world) registerGophercloudSteps(sc *godog.ScenarioContext) {
	sc.Step(`^gophercloud asks for "([^"]*)" on node "([^"]*)"$`, func(ctx context.Context, target, name string) error {
		c, err := w.gophercloud()
		if err != nil {
			return err
		}
		id, err := w.nodeID(name)
		if err != nil {
			return err
		}
		return nodes.ChangePowerState(ctx, c, id, nodes.PowerStateOpts{Target: nodes.TargetPowerState(target)}).ExtractErr()
	})
	sc.Step(`^gophercloud sets the boot device of node "([^"]*)" to "([^"]*)" persistently$`, func(ctx context.Context, name, dev string) error {
		c, err := w.gophercloud()
		if err != nil {
			return err
		}
		id, err := w.nodeID(name)
		if err != nil {
			return err
		}
		return nodes.SetBootDevice(ctx, c, id, nodes.BootDeviceOpts{BootDevice: dev, Persistent: true}).ExtractErr()
	})
	sc.Step(`^gophercloud reads node "([^"]*)" as "([^"]*)" with power "([^"]*)"$`, func(ctx context.Context, name, prov, power string) error {
		c, err := w.gophercloud()
		if err != nil {
			return err
		}
		id, err := w.nodeID(name)
		if err != nil {
			return err
		}
		n, err := nodes.Get(ctx, c, id).Extract()
		if err != nil {
			return err
		}
		if n.ProvisionState != prov || n.PowerState != power || n.Name != name {
			return fmt.Errorf("gophercloud reads name %q provision_state %q power_state %q, want %q %q %q",
				n.Name, n.ProvisionState, n.PowerState, name, prov, power)
		}
		return nil
	})
}
