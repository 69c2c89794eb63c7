# Drives a metalbed Redfish service with sushy (Ironic's Redfish library)
# the way Ironic's redfish hardware type does. Run by sushy_test.go with
# Debian's /usr/bin/python3; exits non-zero, saying what failed, on the
# first wrong answer.
import os
import sys
import time

import requests
import sushy
from sushy import auth as sushy_auth
from sushy import exceptions

URL = os.environ["RF_URL"]
CA = os.environ.get("RF_CA") or False
USER = os.environ["RF_USER"]
PASS = os.environ["RF_PASS"]
SYSTEM = os.environ["RF_SYSTEM"]
MACS = os.environ["RF_MACS"].split(",")
DISK = int(os.environ["RF_DISK"])


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def wait(cond, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            check(True, what)
            return
        time.sleep(0.05)
    check(False, what)


print("sushy", sushy.__version__ if hasattr(sushy, "__version__") else "?")

# Wrong credentials: a session login and basic auth both refused.
for auth in (sushy_auth.SessionAuth(USER, "wrong"), sushy_auth.BasicAuth(USER, "wrong")):
    try:
        bad = sushy.Sushy(URL, verify=CA, auth=auth)
        bad.get_system(SYSTEM)
        check(False, "wrong password refused (%s)" % type(auth).__name__)
    except exceptions.AccessError as e:
        check(e.status_code == 401, "wrong password refused with 401 (%s)" % type(auth).__name__)

# Ironic's default auth: a session, basic as the fallback.
auth = sushy_auth.SessionOrBasicAuth(USER, PASS)
root = sushy.Sushy(URL, verify=CA, auth=auth)
check(root.redfish_version >= "1.6.0", "RedfishVersion %s >= 1.6.0" % root.redfish_version)
check(auth.get_session_key() is not None, "session login gave an X-Auth-Token")
check(auth.get_session_resource_id() is not None, "session login gave a Location")

systems = root.get_system_collection()
check(SYSTEM in systems.members_identities, "Systems lists %s" % SYSTEM)
s = root.get_system(SYSTEM)
check(s.uuid and s.uuid in SYSTEM, "System UUID %s" % s.uuid)

# Power.
allowed = s.get_allowed_reset_system_values()
for v in ("On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "PushPowerButton"):
    check(sushy.ResetType(v) in allowed, "ResetType %s allowed" % v)
s.reset_system(sushy.ResetType.ON)
s.refresh()
check(s.power_state == sushy.PowerState.ON, "On powers the machine on")
s.reset_system(sushy.ResetType.FORCE_RESTART)
s.reset_system(sushy.ResetType.NMI)
s.reset_system(sushy.ResetType.FORCE_OFF)
s.refresh()
check(s.power_state == sushy.PowerState.OFF, "ForceOff powers it off")
s.reset_system(sushy.ResetType.PUSH_POWER_BUTTON)
s.refresh()
check(s.power_state == sushy.PowerState.ON, "PushPowerButton powers an off machine on")
s.reset_system(sushy.ResetType.GRACEFUL_SHUTDOWN)
s.refresh()
check(s.power_state == sushy.PowerState.OFF, "GracefulShutdown powers it off")
s.reset_system(sushy.ResetType.ON)
s.reset_system(sushy.ResetType.GRACEFUL_RESTART)
wait(lambda: (s.refresh() or True) and s.power_state == sushy.PowerState.ON, "GracefulRestart brings it back on")
try:
    root._conn.post(SYSTEM + "/Actions/ComputerSystem.Reset", data={"ResetType": "Explode"})
    check(False, "a bad ResetType is refused")
except exceptions.BadRequestError as e:
    check(e.status_code == 400, "a bad ResetType is refused with 400")

# Boot, as Ironic sets it: mode alone, then target + enabled.
s.set_system_boot_options(mode=sushy.BootSourceOverrideMode.UEFI)
s.refresh()
check(s.boot.mode == sushy.BootSourceOverrideMode.UEFI, "boot mode UEFI set alone")
check(sushy.BootSource.UEFI_HTTP in s.get_allowed_system_boot_source_values(), "UefiHttp allowed")
s.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE)
s.refresh()
check(s.boot.target == sushy.BootSource.PXE and s.boot.enabled == sushy.BootSourceOverrideEnabled.ONCE,
      "Once Pxe reads back (%s, %s)" % (s.boot.target, s.boot.enabled))
s.reset_system(sushy.ResetType.FORCE_RESTART)
s.refresh()
check(s.boot.enabled == sushy.BootSourceOverrideEnabled.DISABLED, "Once consumed by the boot: %s" % s.boot.enabled)
s.set_system_boot_options(sushy.BootSource.HDD, enabled=sushy.BootSourceOverrideEnabled.CONTINUOUS)
s.reset_system(sushy.ResetType.FORCE_RESTART)
s.refresh()
check(s.boot.target == sushy.BootSource.HDD and s.boot.enabled == sushy.BootSourceOverrideEnabled.CONTINUOUS,
      "Continuous Hdd survives a boot")
for t in (sushy.BootSource.CD, sushy.BootSource.USB, sushy.BootSource.UEFI_HTTP):
    s.set_system_boot_options(t, enabled=sushy.BootSourceOverrideEnabled.ONCE)
    s.refresh()
    check(s.boot.target == t, "target %s reads back" % t.value)
s.set_system_boot_options(enabled=sushy.BootSourceOverrideEnabled.DISABLED)
s.refresh()
check(s.boot.enabled == sushy.BootSourceOverrideEnabled.DISABLED, "Enabled=Disabled alone accepted")
s.set_system_boot_options(mode=sushy.BootSourceOverrideMode.LEGACY)
s.refresh()
check(s.boot.mode == sushy.BootSourceOverrideMode.LEGACY, "boot mode Legacy set alone")

# ETag: a PATCH with a stale If-Match gets 412; sushy's own PATCH passes.
etag = s._get_etag()
check(etag is not None, "System has an ETag")
s.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE)
r = requests.patch(URL + SYSTEM, json={"Boot": {"BootSourceOverrideEnabled": "Disabled"}},
                   headers={"If-Match": etag}, auth=(USER, PASS), verify=CA)
check(r.status_code == 412 and "error" in r.json(), "a stale ETag is refused with 412: %s" % r.status_code)
# sushy retries a 412 without If-Match, which must be accepted.
root._conn.patch(SYSTEM, data={"Boot": {"BootSourceOverrideEnabled": "Disabled"}}, etag=etag)
s.refresh()
check(s.boot.enabled == sushy.BootSourceOverrideEnabled.DISABLED, "sushy's retry without If-Match accepted")

# Inventory as Ironic's inspection reads it.
nics = s.ethernet_interfaces.summary
check(sorted(m.lower() for m in nics) == sorted(MACS), "EthernetInterfaces MACs %s" % list(nics))
check(all(st == sushy.State.ENABLED for st in nics.values()), "NICs Enabled")
check(s.processors.summary.count >= 1, "processors %s" % (s.processors.summary,))
check(s.memory_summary.size_gib > 0, "memory %s GiB" % s.memory_summary.size_gib)
check(s.simple_storage.max_size_bytes == DISK, "SimpleStorage disk %s bytes" % s.simple_storage.max_size_bytes)
check(s.storage.max_drive_size_bytes == DISK, "Storage drive %s bytes" % s.storage.max_drive_size_bytes)

# Manager, virtual media through System Links.ManagedBy.
check(len(s.managers) == 1, "System ManagedBy one Manager")
m = s.managers[0]
check(m.firmware_version, "Manager FirmwareVersion %s" % m.firmware_version)
check(SYSTEM in [x.path for x in m.systems], "Manager ManagerForServers")
cd = None
for vm in m.virtual_media.get_members():
    if sushy.VirtualMediaType.CD in vm.media_types:
        cd = vm
check(cd is not None, "a virtual media device with MediaTypes CD")
cd.insert_media("http://127.0.0.1:8080/boot.iso")
cd.refresh()
check(cd.inserted and cd.image == "http://127.0.0.1:8080/boot.iso", "InsertMedia: %s %s" % (cd.inserted, cd.image))
cd.eject_media()
cd.refresh()
check(not cd.inserted and not cd.image, "EjectMedia: %s %s" % (cd.inserted, cd.image))

chassis = root.get_chassis_collection().get_members()
check(len(chassis) == 1 and chassis[0].power_state == sushy.PowerState.ON, "Chassis")

# Logout: the token is refused afterwards.
token = auth.get_session_key()
auth.close()
r = requests.get(URL + SYSTEM, headers={"X-Auth-Token": token}, verify=CA)
check(r.status_code == 401, "logged-out token refused: %s" % r.status_code)
print("ALL OK")
