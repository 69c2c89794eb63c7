package conductor

import (
	"context"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// console returns n's console interface, or Ironic's "does not support
// console" refusal for no-console.
func (c *Conductor) console(ctx context.Context, n *provisioner.Node) (drivers.ConsoleInterface, error) {
	h, err := c.hardware(n)
	if err != nil {
		return nil, err
	}
	con, err := h.ConsoleFor(n)
	if err != nil {
		return nil, refuse(KindInvalid, "%s", unsupported(n.Driver, drivers.RoleConsole))
	}
	if err := con.Validate(ctx, n); err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: cause(err, n, drivers.RoleConsole)}
	}
	return con, nil
}

// ConsoleInfo is GET /v1/nodes/{node}/states/console: whether the
// console is enabled and, while it is served, its console_info.
func (c *Conductor) ConsoleInfo(ctx context.Context, ident string) (enabled bool, info map[string]any, err error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return false, nil, err
	}
	con, err := c.console(ctx, n)
	if err != nil {
		return false, nil, err
	}
	if n.ConsoleEnabled {
		info = con.Info(n)
	}
	return n.ConsoleEnabled, info, nil
}

// SetConsole starts or stops the node's console under its lock and
// records console_enabled, as Ironic's set_console_mode; a failure to
// start is the node's last_error and leaves it disabled.
func (c *Conductor) SetConsole(ctx context.Context, ident string, enabled bool) error {
	n, err := c.acquire(ctx, ident)
	if err != nil {
		return err
	}
	defer c.release(ctx, n.UUID)
	con, err := c.console(ctx, n)
	if err != nil {
		return err
	}
	if enabled {
		_, err = con.Start(ctx, n)
	} else {
		err = con.Stop(ctx, n)
	}
	n.LastError = ""
	if err != nil {
		n.LastError = "Failed to " + map[bool]string{true: "start", false: "stop"}[enabled] + " console for node " + n.UUID + ": " + err.Error()
		c.log.Error("console", "node", n.UUID, "enabled", enabled, "err", err)
	} else {
		n.ConsoleEnabled = enabled
		c.log.Info("console", "node", n.UUID, "enabled", enabled)
	}
	n.UpdatedAt = c.now()
	if uerr := c.st.UpdateNode(ctx, n); uerr != nil {
		return uerr
	}
	return driverFailureOrNil(err)
}

func driverFailureOrNil(err error) error {
	if err == nil {
		return nil
	}
	return driverFailure(err)
}

// startConsoles serves again the consoles of nodes left console_enabled
// (Ironic's conductor does so when it starts).
func (c *Conductor) startConsoles(ctx context.Context) {
	nodes, err := c.st.Nodes(ctx, store.NodeFilter{})
	if err != nil {
		return
	}
	for _, n := range nodes {
		if !n.ConsoleEnabled {
			continue
		}
		con, err := c.console(ctx, n)
		if err == nil {
			_, err = con.Start(ctx, n)
		}
		if err != nil {
			c.log.Warn("restart console", "node", n.UUID, "err", err)
		}
	}
}

// stopConsoles closes every console port this conductor serves, when it
// stops.
func (c *Conductor) stopConsoles(ctx context.Context) {
	nodes, err := c.st.Nodes(context.WithoutCancel(ctx), store.NodeFilter{})
	if err != nil {
		return
	}
	for _, n := range nodes {
		h, err := c.hardware(n)
		if err != nil {
			continue
		}
		if con, err := h.ConsoleFor(n); err == nil {
			con.Stop(ctx, n)
		}
	}
}
