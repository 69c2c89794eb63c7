package testbed

import (
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/vmedia"
)

// mediaBoot is a simulated machine's boot from virtual media: the image
// Redfish inserted is read over HTTP(S) (verified against the system's
// roots) and its kernel runs on the simulated kernel kc configures, as
// after a PXE boot.
func mediaBoot(kc kernel.Config) sim.Firmware {
	return vmedia.Booter{Exec: kernel.Executor(kc)}
}
