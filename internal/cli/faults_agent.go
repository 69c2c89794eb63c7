package cli

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/metalbed/metalbed/internal/fault"
	"github.com/metalbed/metalbed/provisioner/service"
)

// Conductor faults (layer conductor), action kill: the conductor stops at
// once, as if its process died (tasks in flight are abandoned, nodes keep
// their state and reservation), and a new one starts on the same database
// and API address, recovering the nodes as Ironic's conductor does on
// start (a node left in "deploying" fails with "The deploying state can't
// be resumed by conductor …"; one in "wait call-back" waits on). The op is
// the node's conductor milestone at which to die ("prepare", "power on",
// "write_image", "image written", "bootloader", "power off", "reboot" …),
// or "now" (checked once a second). The restart is recorded in every
// node's timeline as conductor.restart.
const conductorKill = "kill"

// conductorFault asks layer conductor about op for the node with UUID
// uuid and kills the conductor on a hit.
func (b *bed) conductorFault(uuid, op string) {
	name, ok := b.nodeName.Load(uuid)
	if !ok {
		return
	}
	if h, ok := b.fault(name.(string), fault.Conductor, op); ok && h.Action == conductorKill {
		b.killConductor()
	}
}

// killConductor stops the running conductor without waiting (it is called
// from the conductor's own tasks); serveProvisioner restarts it.
func (b *bed) killConductor() {
	b.killMu.Lock()
	kill := b.kill
	b.killMu.Unlock()
	if kill != nil {
		kill()
	}
}

// serveProvisioner runs the provisioner service until ctx ends, starting
// a new one on the same database and API address each time a conductor
// fault kills it.
func (b *bed) serveProvisioner(ctx context.Context) error {
	svc, ln := b.svc, b.apiLn
	for restarts := 0; ; restarts++ {
		sctx, cancel := context.WithCancel(ctx)
		b.killMu.Lock()
		b.kill = cancel
		b.killMu.Unlock()
		err := svc.Serve(sctx, ln)
		killed := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if !killed {
			if err != nil {
				return fmt.Errorf("provisioner: %w", err)
			}
			return nil
		}
		b.cfg.log.Warn("conductor killed by an injected fault; restarting", "event", "conductor.restart")
		addr := ln.Addr().String()
		ln.Close()
		if ln, err = listenAgain(ctx, addr); err != nil {
			return fmt.Errorf("provisioner API after a conductor restart: %w", err)
		}
		if svc, err = service.New(b.serviceConfig()); err != nil {
			ln.Close()
			return err
		}
		b.nodeName.Range(func(uuid, _ any) bool {
			b.tl.Record(uuid.(string), srcConductor, "conductor.restart", fmt.Sprintf("killed by a fault, restarted on the same database (restart %d)", restarts+1))
			return true
		})
	}
}

// listenAgain binds addr again once the killed API has let it go.
func listenAgain(ctx context.Context, addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 50; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp4", addr); err == nil {
			return ln, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, err
}
