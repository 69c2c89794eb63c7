#!/usr/bin/env bash
# Installs from Debian every real peer the interop tests need.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root, skipping apt (interop tests will skip or fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ipmitool python3-pyghmi openipmi \
  tgt libiscsi-bin qemu-utils qemu-block-extra \
  python3-ironicclient cpio \
  busybox tftp-hpa tftpd-hpa dnsmasq kea-admin curl iproute2 \
  pxelinux syslinux-common ipxe \
  >/dev/null
