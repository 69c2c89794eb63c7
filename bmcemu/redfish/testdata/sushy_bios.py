# Drives a metalbed Redfish service's Bios, attribute registry and
# SecureBoot with sushy, the way Ironic's redfish bios and management
# interfaces do (apply_configuration, factory_reset, cache_bios_settings,
# set_secure_boot_state, reset_secure_boot_keys_to_default). Run by
# sushy_bios_test.go with Debian's /usr/bin/python3 against a UEFI machine
# that starts powered off; exits non-zero, saying what failed, on the first
# wrong answer.
import os
import sys

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions
from sushy.resources import settings

URL = os.environ["RF_URL"]
CA = os.environ.get("RF_CA") or False
USER = os.environ["RF_USER"]
PASS = os.environ["RF_PASS"]
SYSTEM = os.environ["RF_SYSTEM"]

# Debian's python3-sushy 4.3.3 does not ship sushy/standard_registries (the
# DMTF message registries sushy merges with the service's), so
# Sushy.registries raises FileNotFoundError and no attribute registry can
# be read. Stand in with none: the service's registries are still fetched
# and parsed by sushy's own code.
if not os.path.isdir(os.path.join(os.path.dirname(sushy.__file__), "standard_registries")):
    print("note: sushy has no standard_registries; using none")
    sushy.Sushy._get_standard_message_registry_collection = lambda self: []


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


root = sushy.Sushy(URL, verify=CA, auth=sushy_auth.SessionOrBasicAuth(USER, PASS))


def system():
    """A fresh System, as each Ironic task gets one."""
    return root.get_system(SYSTEM)


s = system()
bios = s.bios
attrs = bios.attributes
check(attrs.get("BootMode") == "Uefi", "BootMode %s on a UEFI machine" % attrs.get("BootMode"))
check(attrs.get("ProcTurboMode") == "Enabled", "ProcTurboMode %s" % attrs.get("ProcTurboMode"))
defaults = dict(attrs)
check(sushy.APPLY_TIME_ON_RESET in bios.supported_apply_times,
      "supported apply times %s hold OnReset" % bios.supported_apply_times)
check(bios.update_status.status == settings.NO_UPDATES, "no update applied yet")

# cache_bios_settings: the registry describes every attribute.
reg = bios.get_attribute_registry()
check(reg is not None, "attribute registry %s found" % bios._attribute_registry)
entries = {a.name: a for a in reg.registry_entries.attributes}
check(set(entries) == set(attrs), "registry attributes %s match Bios %s" % (sorted(entries), sorted(attrs)))
check(entries["BootMode"].read_only, "BootMode is read-only")
turbo = entries["ProcTurboMode"]
check(turbo.attribute_type == "Enumeration"
      and [v["ValueName"] for v in turbo.allowable_values] == ["Enabled", "Disabled"],
      "ProcTurboMode is an Enumeration of Enabled, Disabled")
pxe = entries["PxeRetryCount"]
check(pxe.attribute_type == "Integer" and pxe.lower_bound == 0 and pxe.upper_bound == 10,
      "PxeRetryCount is an Integer in [0, 10]")
check(entries["AssetTag"].max_length == 32, "AssetTag at most 32 characters")

# apply_configuration: staged with ApplyTime OnReset, applied at the reboot.
want = {"ProcTurboMode": "Disabled", "PxeRetryCount": 5, "OsWatchdogTimer": True, "AssetTag": "rack-7"}
bios.set_attributes(want, apply_time=sushy.APPLY_TIME_ON_RESET)
check(bios.pending_attributes == want, "pending attributes %s" % bios.pending_attributes)
check(bios.apply_time_settings.apply_time == "OnReset", "pending apply time OnReset")
bios.refresh()
check(bios.attributes["ProcTurboMode"] == "Enabled", "nothing applied before the reboot")

for bad, what in (({"ProcTurboMode": "Sometimes"}, "a value not in the list"),
                  ({"BootMode": "Bios"}, "a read-only attribute"),
                  ({"PxeRetryCount": "5"}, "an integer as a string"),
                  ({"NoSuchSetting": 1}, "an unknown attribute")):
    name = list(bad)[0]
    try:
        bios.set_attributes(bad)
        check(False, "%s refused" % what)
    except exceptions.BadRequestError as e:
        check(e.status_code == 400 and name in str(e), "%s refused with 400 naming %s" % (what, name))
check(system().bios.pending_attributes == want, "refused settings staged nothing")

s.reset_system(sushy.ResetType.ON)
bios = system().bios
for k, v in want.items():
    check(bios.attributes.get(k) == v, "after power-on %s = %s" % (k, bios.attributes.get(k)))
check(bios.pending_attributes == {}, "nothing pending after the boot")
check(bios.update_status.status == settings.UPDATE_SUCCESS, "update status success")

# factory_reset: ResetBios, then the reboot restores the defaults.
bios.reset_bios()
pending = system().bios.pending_attributes
check(pending.get("ProcTurboMode") == "Enabled" and "BootMode" not in pending,
      "ResetBios staged the writable defaults")
s.reset_system(sushy.ResetType.FORCE_RESTART)
check(system().bios.attributes == defaults, "defaults after ResetBios and a restart")

# set_secure_boot_state: SecureBootEnable, then the reboot.
sb = system().secure_boot
check(sb.enabled is False and sb.current_boot == sushy.SecureBootCurrentBoot.DISABLED,
      "secure boot off at first")
check(sb.mode == sushy.SecureBootMode.USER, "factory keys: UserMode")
sb.set_enabled(True)
sb.refresh()
check(sb.enabled is True, "SecureBootEnable reads back true")
check(sb.current_boot == sushy.SecureBootCurrentBoot.DISABLED, "the running boot is not secure yet")
s.reset_system(sushy.ResetType.FORCE_RESTART)
sb = system().secure_boot
check(sb.current_boot == sushy.SecureBootCurrentBoot.ENABLED, "secure boot in effect after the restart")

check(sb.get_allowed_reset_keys_values() == set(sushy.SecureBootResetKeysType),
      "all ResetKeysType values allowed")
sb.reset_keys(sushy.SECURE_BOOT_RESET_KEYS_DELETE_ALL)
sb.refresh()
check(sb.mode == sushy.SecureBootMode.SETUP, "DeleteAllKeys: SetupMode")
s.reset_system(sushy.ResetType.FORCE_RESTART)
sb = system().secure_boot
check(sb.current_boot == sushy.SecureBootCurrentBoot.DISABLED, "no keys: not secure after the restart")
sb.reset_keys(sushy.SECURE_BOOT_RESET_KEYS_TO_DEFAULT)
sb.refresh()
check(sb.mode == sushy.SecureBootMode.USER, "ResetAllKeysToDefault: UserMode")
sb.set_enabled(False)
sb.refresh()
check(sb.enabled is False, "SecureBootEnable reads back false")

print("ALL OK", flush=True)
