#!/usr/bin/env bash
# Runs the real-VM tier: starts libvirtd/virtlogd (ci/libvirt/start.sh),
# runs the libvirt_dlopen-tagged tests (vms/libvirt, then the @libvirt
# scenarios) with METALBED_LIBVIRT=required (a
# missing daemon or tool fails instead of skipping), then stops only the
# daemons start.sh started. Needs root, gcc, qemu-system-x86, ovmf,
# ipxe-qemu, libvirt (ci/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
ci/libvirt/start.sh >/dev/null
trap 'ci/libvirt/stop.sh' EXIT
METALBED_LIBVIRT=required go test -race -count=1 -timeout 30m -tags libvirt_dlopen ./vms/libvirt/... "$@"
# The boot network of `metalbed up --backend libvirt --no-provisioner`
# (inventory, Redfish inside it); no VM boots.
METALBED_LIBVIRT=required go test -race -count=1 -tags libvirt_dlopen -run TestBootNetworkWithoutProvisioner ./testbed/
# The @libvirt scenarios: `metalbed up --backend libvirt` testbeds deployed
# through the conductor (iscsi and direct), one VM at a time; the README's
# `metalbed demo --backend libvirt`; then a real Ironic 21.4 deploys a BIOS
# and a UEFI VM through Redfish virtual media
# (TestRealIronicVirtualMediaDeploysVMs, with METALBED_INTEROP=required: a
# missing Ironic fails too).
METALBED_LIBVIRT=required METALBED_INTEROP=required go test -count=1 -timeout 40m -tags libvirt_dlopen \
  -run 'TestLibvirtFeatures|TestLibvirtDemo|TestRealIronicVirtualMediaDeploysVMs' ./scenarios/
