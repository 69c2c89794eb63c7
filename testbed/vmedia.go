package testbed

import (
	"github.com/metalbed/metalbed/vms/sim"
	"github.com/metalbed/metalbed/vms/sim/kernel"
	"github.com/metalbed/metalbed/vms/sim/vmedia"
)

// mediaBoot is a simulated machine's boot from virtual media: the image
// Redfish inserted is read over HTTP(S) (verified against the system's
// roots) and its kernel runs on the simulated kernel kc configures, as
// after a PXE boot. kc's Faults can eject the medium mid-boot.
func mediaBoot(kc kernel.Config) sim.Firmware {
	return vmedia.Booter{Exec: kernel.Executor(kc), Faults: kc.Faults}
}

// httpBoot is a simulated UEFI machine's HTTP boot (Redfish UefiHttp): the
// URI is fetched over HTTP(S); an ISO boots as virtual media does, iPXE's
// EFI binary continues as ipxe (the NIC's ROM: nil when the machine has no
// boot network), GRUB loads its kernel from the server.
func httpBoot(kc kernel.Config, ipxe sim.Firmware) sim.Firmware {
	return vmedia.HTTPBooter{Media: vmedia.Booter{Exec: kernel.Executor(kc)}, IPXE: ipxe}
}
