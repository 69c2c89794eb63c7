# Sourced by the benchmarks that run OpenIPMI's ipmi_sim (Debian openipmi)
# as the peer BMC: one BMC per process, as VirtualBMC forks one per BMC.
#
# ipmisim_start DIR NAME: writes DIR/lan.conf (LAN on a free UDP port of
# 127.0.0.1, user admin/password) and DIR/bmc.emu, starts ipmi_sim in the
# background, and sets IPMISIM_PID and IPMISIM_PORT (also in DIR/port).
# The caller stops it by that PID.
ipmisim_start() {
  local d=$1 name=$2 port
  mkdir -p "$d/state"
  port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$port" >"$d/port"
  cat >"$d/lan.conf" <<CONF
name "$name"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "admin" "password" admin 10 none md2 md5 straight
CONF
  printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n' >"$d/bmc.emu"
  ipmi_sim -c "$d/lan.conf" -f "$d/bmc.emu" -s "$d/state" -n >/dev/null 2>&1 &
  IPMISIM_PID=$!
  IPMISIM_PORT=$port
}
