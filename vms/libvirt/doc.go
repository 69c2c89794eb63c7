// Package libvirt runs metalbed machines as real virtual machines under
// libvirt (QEMU: SeaBIOS or OVMF, iPXE, a real kernel), behind the same
// vms.Machine interface the BMCs drive for simulated machines.
//
// # Build
//
// The libvirt binding (libvirt.org/go/libvirt) is compiled only with the
// build tag libvirt_dlopen: the binding then loads libvirt.so.0 with
// dlopen at run time and needs neither libvirt-dev headers nor libvirt at
// link time, only a C compiler. Without the tag (the default build) Open
// returns ErrNotBuilt, so `go build ./...` and `metalbed demo` work on a
// machine without libvirt or cgo.
//
//	go test -tags libvirt_dlopen ./vms/libvirt/...
//
// # Domains
//
// Each machine is a persistent domain named after it: 256 MiB, one vCPU,
// type kvm when the CPU shows vmx or svm and /dev/kvm answers, else qemu
// (TCG); a q35 machine with a virtio disk (qcow2 or raw), a virtio NIC with
// a fixed MAC on the boot bridge, and the serial console logged to a file.
// UEFI machines use OVMF picked by libvirt's firmware autoselection with the
// secure-boot and enrolled-keys features disabled. QEMU runs as root (a
// per-domain DAC label) so files under any test directory need no
// relabelling.
//
// Firmware reads its boot order once, when QEMU starts, so the domain is
// re-defined with the order the BMC's boot flags ask for before every start;
// reset and power cycle (from the BMC) are a destroy and a start. A one-time
// override is consumed by the start it applies to, as on hardware. (A reboot
// the guest itself asks for restarts QEMU in place and keeps the order of
// the last start: not yet turned into a destroy and start.) The boot flags live in the domain's
// metadata, so a restarted metalbed loses nothing.
//
// # Networking
//
// Tests and beds use only loopback or network namespaces metalbed creates.
// libvirtd and QEMU run in the root namespace, and a tap device must join a
// bridge in its own namespace, so a Network is: a bridge in the root
// namespace with no address and IPv6 disabled (nothing on the host can
// talk on it, nothing is routed, no NAT), the VMs' taps as its ports, and
// a veth pair whose one end is also a port and whose other end lives in a
// namespace metalbed creates, holding the provisioner's address (e.g.
// 10.233.N.1/24). Addresses may repeat between networks: each namespace and
// bridge is its own world.
//
// The provisioner's servers run inside the namespace: Network.Command
// starts a program there (`ip netns exec`), which is how `metalbed netboot
// serve` runs in the PXE test. Network.ListenPacket and Network.Listen open
// a single socket there from this process (a thread locked to the
// namespace while the socket is created; a socket keeps its namespace for
// life) — enough for DHCP, HTTP and iSCSI listeners, NOT for TFTP, whose
// server opens a new socket per transfer on whatever thread runs it.
//
// iPXE configures IPv6 beside DHCPv4 and, hearing no router, solicits for
// about 16 s before it boots (measured here: DHCP ack 14:51:47, TFTP
// request 14:52:03). Network.ServeRA answers from the namespace with a
// router advertisement that says "no IPv6 here" (lifetime 0, no prefix, no
// DHCPv6); with it iPXE asks for its script 30-60 ms after the DHCP ack.
//
// Network.Close removes all of it; CreateNetwork first removes what a
// crashed run with the same name left behind.
package libvirt
