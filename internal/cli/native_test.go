package cli

import (
	"context"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/metalbed/metalbed/testbed"
)

// nativeStatus opens a lanplus session with cipher suite 17 using
// go-ipmi's client, reads the chassis status and closes the session.
func nativeStatus(ctx context.Context, n testbed.InventoryNode) error {
	c, err := client.NewClient(n.BMC.Address, n.BMC.Port, n.BMC.Username, n.BMC.Password)
	if err != nil {
		return err
	}
	c.WithInterface(client.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID17).WithTimeout(5 * time.Second).WithRetry(2)
	if err := c.Connect(ctx); err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.GetChassisStatus(ctx)
	return err
}
