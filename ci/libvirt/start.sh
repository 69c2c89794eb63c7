#!/usr/bin/env bash
# Starts libvirtd and virtlogd for the real-VM tier (Debian 12 has no
# virtqemud and, in a container, no systemd): the log directory, the
# libvirt-qemu user and group QEMU runs as, virtlogd -d, libvirtd -d, then
# polls `virsh version` until the daemon answers. Idempotent: a daemon that
# already runs is left alone and not recorded. The PIDs this script started
# go to $METALBED_LIBVIRT_PIDFILE (default /run/metalbed-libvirt.pids) for
# ci/libvirt/stop.sh, which stops only those.
set -euo pipefail
pidfile=${METALBED_LIBVIRT_PIDFILE:-/run/metalbed-libvirt.pids}
if [ "$(id -u)" != 0 ]; then
  echo "libvirt/start: needs root" >&2
  exit 1
fi
for tool in libvirtd virtlogd virsh; do
  if ! command -v "$tool" >/dev/null; then
    echo "libvirt/start: $tool missing: apt-get install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients" >&2
    exit 1
  fi
done
mkdir -p /var/log/libvirt /var/log/libvirt/qemu /run/libvirt
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home --shell /usr/sbin/nologin libvirt-qemu
getent group kvm >/dev/null && usermod -a -G kvm libvirt-qemu || true

# running PROG prints the PID of a running PROG, if any.
running() { pgrep -x "$1" | head -n1; }

touch "$pidfile"
if [ -z "$(running virtlogd)" ]; then
  virtlogd -d
  for _ in $(seq 50); do
    pid=$(running virtlogd) && [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "${pid:-}" ] || { echo "libvirt/start: virtlogd did not start" >&2; exit 1; }
  echo "virtlogd $pid" >>"$pidfile"
fi
pid=
if [ -z "$(running libvirtd)" ]; then
  libvirtd -d
  for _ in $(seq 50); do
    pid=$(running libvirtd) && [ -n "$pid" ] && break
    sleep 0.1
  done
  [ -n "${pid:-}" ] || { echo "libvirt/start: libvirtd did not start" >&2; exit 1; }
  echo "libvirtd $pid" >>"$pidfile"
fi
for _ in $(seq 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    virsh -c qemu:///system version
    exit 0
  fi
  sleep 0.2
done
echo "libvirt/start: virsh version did not answer within 20 s" >&2
exit 1
