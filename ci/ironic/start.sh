#!/usr/bin/env bash
# Starts a REAL standalone OpenStack Ironic (Debian 12 packages ironic-api and
# ironic-conductor, 21.4) on loopback only: noauth, sqlite, JSON-RPC between
# the API and the conductor, the ipmi and fake-hardware hardware types.
# Installs nothing (ci/install-deps.sh does); starts no system service.
#
# Usage: ci/ironic/start.sh [DIR]
#   DIR (default: a new temporary directory) receives ironic.conf, the sqlite
#   database, the logs, the TFTP and HTTP roots, and two files:
#     DIR/pids  the PIDs of ironic-conductor and ironic-api, one a line
#               (stop them with ci/ironic/stop.sh DIR/pids)
#     DIR/env   shell assignments: OS_AUTH_TYPE, OS_ENDPOINT, IRONIC_DIR,
#               IRONIC_API_URL, IRONIC_RPC_PORT, IRONIC_TFTP_ROOT,
#               IRONIC_HTTP_ROOT, IRONIC_HTTP_URL, IRONIC_FILES_DIR (for file:// images),
#               IRONIC_PIDFILE, IRONIC_START_SECONDS
#   and prints DIR/env on stdout once `GET /v1` answers and the conductor
#   is registered and alive.
#
# Environment (all optional):
#   IRONIC_API_PORT, IRONIC_RPC_PORT   TCP ports on 127.0.0.1 (default: free ones)
#   IRONIC_HTTP_URL    where the machines fetch Ironic's HTTP boot files, i.e.
#                      metalbed netboot serve's --http-addr (default http://127.0.0.1:8080)
#   IRONIC_HTTP_ROOT, IRONIC_TFTP_ROOT  boot file roots (default DIR/httpboot, DIR/tftpboot)
#   IRONIC_MIN_COMMAND_INTERVAL   [ipmi] min_command_interval (default 1, as in
#                      the reference captures; Ironic's own default is 5)
#   IRONIC_DEPLOY_CALLBACK_TIMEOUT  seconds (default 600)
#   IRONIC_AUTOMATED_CLEAN  [conductor] automated_clean: true or false (default
#                      false); cleaning then runs the agent's
#                      erase_devices_metadata only ([deploy]
#                      erase_devices_priority = 0: no full-disk shred)
#   IRONIC_REDFISH=1   also enable the redfish hardware type (redfish power,
#                      management and inspect interfaces; needs python3-sushy)
#   IRONIC_VMEDIA=1    also enable the redfish-virtual-media boot interface
#                      (implies IRONIC_REDFISH): Ironic builds the deploy ISO
#                      with mkisofs (genisoimage) and ISOLINUX (isolinux,
#                      syslinux-common), publishes it under
#                      http_root/redfish/ ([redfish] use_swift = False) and
#                      has the BMC insert it from http_url/redfish/
#   IRONIC_BOOTLOADER  [conductor] bootloader: the EFI system partition image
#                      (file:// under file_url_allowed_paths, or http://)
#                      Ironic puts on UEFI ISOs; nodes may set driver_info
#                      bootloader instead ("" = none)
#   IRONIC_HEARTBEAT_TIMEOUT  [api] ramdisk_heartbeat_timeout, the agent's
#                      heartbeat period's bound it gets at lookup (default
#                      Ironic's 300: an agent heartbeats every 90-180 s)
#   IRONIC_SYNC_POWER_INTERVAL  [conductor] sync_power_state_interval in
#                      seconds (default 60): the power-state sync period
#   IRONIC_FORCE_POWER_SYNC  [conductor] force_power_state_during_sync: true
#                      (Ironic's default: a node found in another power state
#                      is forced back) or false (the recorded state follows it)
#   IRONIC_WORKERS_POOL  [conductor] workers_pool_size (default 16)
#   IRONIC_SYNC_POWER_WORKERS  [conductor] sync_power_state_workers (default
#                      Ironic's 8; bounded by periodic_max_workers, set alike)
#   IRONIC_START_TIMEOUT  seconds to wait for the services (default 120)
#   IRONIC_WATCH_PID   a PID (e.g. a test process): when it exits without
#                      having stopped Ironic, a watchdog runs stop.sh
#                      (a killed or timed-out test leaves no Ironic behind)
#   IRONIC_SINGLE_PROCESS=1  run Debian's all-in-one `ironic` (API and
#                      conductor in one process, rpc_transport = none) instead
#                      of ironic-api + ironic-conductor over JSON-RPC
#   IRONIC_PXE_LOADERS  [pxe] loader_file_paths: boot loaders the conductor
#                      copies into tftp_root at start (default: PXELINUX's
#                      pxelinux.0 and ldlinux.c32 from Debian's pxelinux and
#                      syslinux-common when installed, for the pxe boot interface)
#   IRONIC_FILE_URL_ALLOWED_PATHS  comma-separated directories whose files may
#                      be file:// image sources, besides DIR/files (Ironic
#                      21.4.4 refuses any other file:// path)
#   IRONIC_NETNS       a network namespace (e.g. the boot network of
#                      `metalbed up --backend libvirt --no-provisioner`,
#                      inventory.json boot_network.namespace): Ironic runs in
#                      it (`ip netns exec`; needs root), on a real lab's
#                      provisioning network, and so do the readiness checks;
#                      drive it with `ip netns exec NS baremetal ...`
#   IRONIC_HOST_IP     the address the API listens on and the agents call
#                      back (my_ip, tftp_server; default 127.0.0.1), e.g.
#                      inventory.json boot_network.address with IRONIC_NETNS
set -euo pipefail

die() { echo "ironic/start.sh: $*" >&2; exit 1; }

single=${IRONIC_SINGLE_PROCESS:-}
for bin in ironic-api ironic-conductor ironic-dbsync ${single:+ironic}; do
  command -v "$bin" >/dev/null || die "$bin not found: apt-get install ironic-api ironic-conductor"
done
command -v baremetal >/dev/null || die "baremetal not found: apt-get install python3-ironicclient"
command -v curl >/dev/null || die "curl not found: apt-get install curl"

dir=${1:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/metalbed-ironic.XXXXXX")
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ -e "$dir/pids" ] && die "$dir/pids exists: Ironic already started there? stop it with ci/ironic/stop.sh $dir/pids"

host_ip=${IRONIC_HOST_IP:-127.0.0.1}
# in_ns runs a command in IRONIC_NETNS (as is without it).
in_ns=()
if [ -n "${IRONIC_NETNS:-}" ]; then
  [ -e "/run/netns/$IRONIC_NETNS" ] || die "network namespace $IRONIC_NETNS not found (ip netns list)"
  in_ns=(ip netns exec "$IRONIC_NETNS")
fi

# A free TCP port on $host_ip (the system's Python, not a pyenv one).
free_port() {
  "${in_ns[@]}" /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$host_ip"
}

api_port=${IRONIC_API_PORT:-$(free_port)}
rpc_port=${IRONIC_RPC_PORT:-$(free_port)}
[ "$api_port" != "$rpc_port" ] || rpc_port=$(free_port)
http_url=${IRONIC_HTTP_URL:-http://127.0.0.1:8080}
http_root=${IRONIC_HTTP_ROOT:-$dir/httpboot}
tftp_root=${IRONIC_TFTP_ROOT:-$dir/tftpboot}
min_interval=${IRONIC_MIN_COMMAND_INTERVAL:-1}
callback_timeout=${IRONIC_DEPLOY_CALLBACK_TIMEOUT:-600}
start_timeout=${IRONIC_START_TIMEOUT:-120}
api_url=http://$host_ip:$api_port
[ -n "${IRONIC_VMEDIA:-}" ] && IRONIC_REDFISH=1
rf=${IRONIC_REDFISH:+,redfish}
vmedia=${IRONIC_VMEDIA:+,redfish-virtual-media}
isolinux_bin=/usr/lib/ISOLINUX/isolinux.bin
ldlinux_c32=/usr/lib/syslinux/modules/bios/ldlinux.c32
if [ -n "$vmedia" ]; then
  # Ironic runs `mkisofs` by name (ironic/common/images.py); Debian's
  # genisoimage provides /usr/bin/mkisofs.
  command -v mkisofs >/dev/null || die "mkisofs not found: apt-get install genisoimage"
  [ -r "$isolinux_bin" ] || die "$isolinux_bin not found: apt-get install isolinux"
  [ -r "$ldlinux_c32" ] || die "$ldlinux_c32 not found: apt-get install syslinux-common"
fi

mkdir -p "$http_root" "$tftp_root" "$tftp_root/master_images" "$dir/master_images" \
  "$dir/images" "$dir/lock" "$dir/tmp" "$dir/files" "$dir/master_iso_images"
allowed=$dir/files${IRONIC_FILE_URL_ALLOWED_PATHS:+,$IRONIC_FILE_URL_ALLOWED_PATHS}
loaders=${IRONIC_PXE_LOADERS:-}
if [ -z "$loaders" ] && [ -r /usr/lib/PXELINUX/pxelinux.0 ] && [ -r /usr/lib/syslinux/modules/bios/ldlinux.c32 ]; then
  loaders=pxelinux.0:/usr/lib/PXELINUX/pxelinux.0,ldlinux.c32:/usr/lib/syslinux/modules/bios/ldlinux.c32
fi

# [DEFAULT] host is the conductor's name AND the address the API's JSON-RPC
# client connects to (http://<host>:<[json_rpc] port>), so it must be the
# loopback address the conductor's JSON-RPC server binds.
cat >"$dir/ironic.conf" <<EOF
[DEFAULT]
host = 127.0.0.1
my_ip = $host_ip
auth_strategy = noauth
rpc_transport = $([ -n "$single" ] && echo none || echo json-rpc)
debug = true
use_stderr = false
state_path = $dir
tempdir = $dir/tmp
hash_ring_reset_interval = 5
enabled_hardware_types = ipmi,fake-hardware$rf
enabled_power_interfaces = ipmitool,fake$rf
enabled_management_interfaces = ipmitool,fake$rf
enabled_boot_interfaces = pxe,ipxe,fake$vmedia
enabled_deploy_interfaces = direct,fake
enabled_console_interfaces = no-console,fake
enabled_inspect_interfaces = no-inspect,fake$rf
enabled_network_interfaces = noop
enabled_raid_interfaces = no-raid,agent,fake
enabled_rescue_interfaces = no-rescue,fake
enabled_storage_interfaces = noop
enabled_vendor_interfaces = ipmitool,no-vendor,fake
enabled_bios_interfaces = no-bios,fake$rf
default_network_interface = noop
# redfish-virtual-media: the ISOLINUX files Ironic copies onto BIOS ISOs
# (its default isolinux_bin, /usr/lib/syslinux/isolinux.bin, is not where
# Debian puts it) and where UEFI ISOs carry GRUB's configuration.
isolinux_bin = $isolinux_bin
ldlinux_c32 = $ldlinux_c32
grub_config_path = EFI/BOOT/grub.cfg

[api]
host_ip = $host_ip
port = $api_port
api_workers = 1
ramdisk_heartbeat_timeout = ${IRONIC_HEARTBEAT_TIMEOUT:-300}

[json_rpc]
auth_strategy = noauth
host_ip = 127.0.0.1
port = $rpc_port

[database]
connection = sqlite:///$dir/ironic.sqlite

[oslo_concurrency]
lock_path = $dir/lock

[service_catalog]
auth_type = none
endpoint_override = $api_url

[conductor]
automated_clean = ${IRONIC_AUTOMATED_CLEAN:-false}
deploy_callback_timeout = $callback_timeout
clean_callback_timeout = $callback_timeout
heartbeat_interval = 2
check_provision_state_interval = 10
sync_power_state_interval = ${IRONIC_SYNC_POWER_INTERVAL:-60}
force_power_state_during_sync = ${IRONIC_FORCE_POWER_SYNC:-true}
power_state_change_timeout = 30
workers_pool_size = ${IRONIC_WORKERS_POOL:-16}
sync_power_state_workers = ${IRONIC_SYNC_POWER_WORKERS:-8}
periodic_max_workers = ${IRONIC_SYNC_POWER_WORKERS:-8}
file_url_allowed_paths = $allowed
${IRONIC_BOOTLOADER:+bootloader = $IRONIC_BOOTLOADER}

[agent]
deploy_logs_collect = never
post_deploy_get_power_state_retry_interval = 2
post_deploy_get_power_state_retries = 15
command_timeout = 60

[ipmi]
min_command_interval = $min_interval
use_ipmitool_retries = false
command_retry_timeout = 30

[dhcp]
dhcp_provider = none

[pxe]
tftp_server = $host_ip
tftp_root = $tftp_root
tftp_master_path = $tftp_root/master_images
images_path = $dir/images
instance_master_path = $dir/master_images
kernel_append_params = console=ttyS0,115200n8 nofb nomodeset vga=normal
loader_file_paths = $loaders

[deploy]
http_url = $http_url
http_root = $http_root
fast_track = false
erase_devices_priority = 0
default_boot_mode = bios
iso_master_path = $dir/master_iso_images

[redfish]
# Virtual media ISOs go to http_root/redfish/ and are inserted from
# http_url/redfish/ (no Swift); this is the deploy ISO's kernel command line.
use_swift = false
kernel_append_params = console=ttyS0,115200n8 nofb nomodeset vga=normal

[oslo_messaging_notifications]
driver = noop
EOF

log() { echo "ironic/start.sh: $*" >&2; }

t0=$(date +%s%N)
since() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf "%d.%03d" $((ms / 1000)) $((ms % 1000)); }
ironic-dbsync --config-file "$dir/ironic.conf" create_schema >"$dir/dbsync.log" 2>&1 ||
  die "ironic-dbsync create_schema failed, see $dir/dbsync.log: $(tail -3 "$dir/dbsync.log")"

# Each service in its own session (setsid), so it outlives this script and
# is stopped by its PID alone.
start() { # program
  setsid "${in_ns[@]}" "$1" --config-file "$dir/ironic.conf" --log-file "$dir/$1.log" \
    </dev/null >"$dir/$1.out" 2>&1 &
  echo $! >>"$dir/pids"
  log "$1 pid $!"
}
: >"$dir/pids"
if [ -n "$single" ]; then
  start ironic
else
  start ironic-conductor
  start ironic-api
fi

if [ -n "${IRONIC_WATCH_PID:-}" ]; then
  # Ends by itself once stop.sh has removed the PID file.
  setsid bash -c 'while [ -e "$1" ] && kill -0 "$0" 2>/dev/null; do sleep 1; done
    [ -e "$1" ] && exec bash "$2" "$1"' "$IRONIC_WATCH_PID" "$dir/pids" "$(dirname "$0")/stop.sh" \
    </dev/null >/dev/null 2>&1 &
fi

export OS_AUTH_TYPE=none OS_ENDPOINT=$api_url
deadline=$(( $(date +%s) + start_timeout ))
alive() {
  while read -r pid; do
    kill -0 "$pid" 2>/dev/null || return 1
  done <"$dir/pids"
}
api_up=
while :; do
  alive || die "a service exited; see $dir/ironic-conductor.log $dir/ironic-api.log $dir/*.out: $(tail -5 "$dir"/*.out "$dir"/*.log 2>/dev/null | tail -20)"
  if [ -z "$api_up" ] && "${in_ns[@]}" curl -fsS -o /dev/null "$api_url/v1" 2>/dev/null; then
    api_up=1
    log "GET /v1 answers after $(since) s"
  fi
  if [ -n "$api_up" ] && "${in_ns[@]}" baremetal conductor list -f value -c Hostname -c Alive 2>/dev/null | grep -q '^127.0.0.1 True$'; then
    break
  fi
  [ "$(date +%s)" -lt "$deadline" ] || die "not ready after ${start_timeout}s; see $dir/*.log"
  sleep 0.5
done
elapsed=$(since)

cat >"$dir/env" <<EOF
OS_AUTH_TYPE=none
OS_ENDPOINT=$api_url
IRONIC_DIR=$dir
IRONIC_API_URL=$api_url
IRONIC_RPC_PORT=$rpc_port
IRONIC_TFTP_ROOT=$tftp_root
IRONIC_HTTP_ROOT=$http_root
IRONIC_HTTP_URL=$http_url
IRONIC_FILES_DIR=$dir/files
IRONIC_PIDFILE=$dir/pids
IRONIC_START_SECONDS=$elapsed
IRONIC_NETNS=${IRONIC_NETNS:-}
EOF
log "ready in ${elapsed}s: conductor 127.0.0.1 alive, API $api_url; stop with ci/ironic/stop.sh $dir/pids"
cat "$dir/env"
