// Command metalbed runs virtual bare-metal machines, their BMCs and a
// provisioner that deploys them. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/metalbed/metalbed/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	args := os.Args[1:]
	if os.Getpid() == 1 && os.Args[0] == "/init" {
		// The kernel started us as /init of the deploy ramdisk (not, say,
		// as a container's entrypoint, which is PID 1 too).
		args = []string{"ramdisk", "init"}
	}
	err := cli.Run(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Exit(err, os.Stderr))
}
