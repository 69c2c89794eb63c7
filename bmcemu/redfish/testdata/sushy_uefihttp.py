# Drives a UefiHttp boot override with sushy: set_system_boot_options as
# Ironic's redfish management interface calls it (target, enabled, mode in
# one PATCH), the HttpBootUri PATCHed through sushy's own connector (sushy
# 4.3.3 has no http_boot_uri parameter), the override read back, Legacy
# refused with 400, and the machine powered on to consume it. Run by
# sushy_uefihttp_test.go with Debian's /usr/bin/python3 against a legacy
# BIOS machine that starts powered off; RF_HTTP_URI is the URI. Exits
# non-zero, saying what failed, on the first wrong answer.
import os
import sys

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions

URL = os.environ["RF_URL"]
CA = os.environ.get("RF_CA") or False
USER = os.environ["RF_USER"]
PASS = os.environ["RF_PASS"]
SYSTEM = os.environ["RF_SYSTEM"]
URI = os.environ["RF_HTTP_URI"]


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


root = sushy.Sushy(URL, verify=CA, auth=sushy_auth.SessionOrBasicAuth(USER, PASS))


def system():
    return root.get_system(SYSTEM)


s = system()
check(sushy.BOOT_SOURCE_TARGET_UEFI_HTTP in s.get_allowed_system_boot_source_values(),
      "UefiHttp among the allowed targets")

# A legacy BIOS machine has no HTTP boot.
try:
    s.set_system_boot_options(target=sushy.BOOT_SOURCE_TARGET_UEFI_HTTP,
                              enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
    check(False, "UefiHttp in Legacy mode refused")
except exceptions.BadRequestError as e:
    check(e.status_code == 400 and "PropertyValueConflict" in str(e),
          "UefiHttp in Legacy mode refused: %s" % e)

s = system()
s.set_system_boot_options(target=sushy.BOOT_SOURCE_TARGET_UEFI_HTTP,
                          enabled=sushy.BOOT_SOURCE_ENABLED_ONCE,
                          mode=sushy.BOOT_SOURCE_MODE_UEFI)
s = system()
s._conn.patch(s.path, data={"Boot": {"HttpBootUri": URI}})
try:
    s._conn.patch(s.path, data={"Boot": {"HttpBootUri": "tftp://127.0.0.1/ipxe.efi"}})
    check(False, "a tftp HttpBootUri refused")
except exceptions.BadRequestError as e:
    check(e.status_code == 400 and "PropertyValueFormatError" in str(e),
          "a tftp HttpBootUri refused: %s" % e)

s = system()
check(s.boot.target == sushy.BOOT_SOURCE_TARGET_UEFI_HTTP, "target %s" % s.boot.target)
check(s.boot.enabled == sushy.BOOT_SOURCE_ENABLED_ONCE, "enabled %s" % s.boot.enabled)
check(s.boot.mode == sushy.BOOT_SOURCE_MODE_UEFI, "mode %s" % s.boot.mode)
check(s.json["Boot"].get("HttpBootUri") == URI, "HttpBootUri %s" % s.json["Boot"].get("HttpBootUri"))

s.reset_system(sushy.RESET_ON)
s = system()
check(s.power_state == sushy.POWER_STATE_ON, "powered on")
check(s.boot.enabled == sushy.BOOT_SOURCE_ENABLED_DISABLED, "Once consumed: %s" % s.boot.enabled)
print("ALL OK")
