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
// reset and power cycle are a destroy and a start, and a guest-initiated
// reboot is turned into the same. A one-time override is consumed by the
// start it applies to, as on hardware. The boot flags live in the domain's
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
// 10.233.N.1/24). The provisioner's DHCP, TFTP, HTTP and iSCSI sockets are
// opened inside that namespace by Network.ListenPacket and Network.Listen
// (a thread locked to the namespace while the socket is created; a socket
// keeps its namespace for life), so one metalbed process serves the
// loopback BMCs and the boot network at once. Network.Close removes all of
// it; CreateNetwork first removes what a crashed run with the same name
// left behind.
package libvirt
