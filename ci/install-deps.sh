#!/usr/bin/env bash
# Installs from Debian every real peer the interop tests need.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root, skipping apt (interop tests will skip or fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Packages such as ironic-api, tftpd-hpa and tgt would start daemons on all
# addresses; the tests start their own on loopback. Deny service starts
# during the install (Debian's policy-rc.d convention), unless one exists.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# IPMI and Redfish peers; iSCSI peers; Ironic's CLI; network boot peers and boot programs;
# disk and filesystem tools the image tests check our bytes with; ISO builders
# (virtual media images: genisoimage is what Ironic runs as mkisofs) and ISOLINUX.
apt-get install -y -qq --no-install-recommends \
  ipmitool python3-pyghmi openipmi python3-sushy redfishtool \
  tgt libiscsi-bin qemu-utils qemu-block-extra \
  python3-ironicclient python3-ironic ironic-api ironic-conductor \
  busybox tftp-hpa tftpd-hpa dnsmasq-base kea-admin curl iproute2 \
  pxelinux syslinux-common ipxe cpio grub-pc-bin grub-efi-amd64-bin \
  fdisk gdisk dosfstools mtools genisoimage binutils e2fsprogs \
  isolinux xorriso \
  >/dev/null
# Real VMs (the libvirt tier, issue 8): QEMU with iPXE ROMs and OVMF, and
# libvirtd; ci/libvirt/start.sh starts the daemons.
apt-get install -y -qq --no-install-recommends \
  qemu-system-x86 qemu-utils ipxe-qemu ovmf \
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
  >/dev/null
# The web dashboard's browser tests (chromedp drives headless chromium).
apt-get install -y -qq --no-install-recommends chromium >/dev/null
