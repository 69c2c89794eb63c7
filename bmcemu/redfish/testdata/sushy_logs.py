# Reads a metalbed Redfish service's sensors and System Event Log with sushy
# (Ironic's Redfish library) and clears the log. sushy 4.3.3 parses Chassis
# Thermal and Power; it has no LogService classes, so the log is read and
# cleared through sushy's own authenticated connector, as an Ironic vendor
# passthru would. Run by sushy_test.go with Debian's /usr/bin/python3;
# prints what sushy parsed as one "RESULT <json>" line for the test to
# compare with ipmitool, and exits non-zero, saying what failed, on the
# first wrong answer.
import json
import os
import sys

import sushy
from sushy import auth as sushy_auth

URL = os.environ["RF_URL"]
CA = os.environ.get("RF_CA") or False
USER = os.environ["RF_USER"]
PASS = os.environ["RF_PASS"]
SYSTEM = os.environ["RF_SYSTEM"]


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def value(v):
    """An enum's value (sushy 4 maps fields to enums), else v."""
    return getattr(v, "value", v)


root = sushy.Sushy(URL, verify=CA, auth=sushy_auth.SessionOrBasicAuth(USER, PASS))
conn = root._conn
s = root.get_system(SYSTEM)
result = {"temperatures": {}, "fans": {}, "supplies": []}

# Sensors, as sushy parses them.
chassis = root.get_chassis(s.json["Links"]["Chassis"][0]["@odata.id"])
thermal = chassis.thermal
check(len(thermal.temperatures) > 0 and len(thermal.fans) > 0, "Thermal has temperatures and fans")
for t in thermal.temperatures:
    result["temperatures"][t.name] = {
        "reading": t.reading_celsius, "number": t.sensor_number,
        "unc": t.upper_threshold_non_critical, "ucr": t.upper_threshold_critical,
        "unr": t.upper_threshold_fatal, "health": value(t.status.health),
    }
for f in thermal.fans:
    result["fans"][f.name] = {
        "reading": f.reading, "units": value(f.reading_units),
        "lnc": f.lower_threshold_non_critical, "lcr": f.lower_threshold_critical,
        "lnr": f.lower_threshold_fatal, "health": value(f.status.health),
    }
for p in chassis.power.power_supplies:
    result["supplies"].append(p.last_power_output_watts)


# The SEL: linked from the System and from its Manager, the same log.
def sel_of(resource_json):
    logs = conn.get(resource_json["LogServices"]["@odata.id"]).json()
    sel = [m["@odata.id"] for m in logs["Members"] if m["@odata.id"].endswith("/Sel")]
    check(len(sel) == 1, "%s lists a Sel LogService" % logs["@odata.id"])
    return conn.get(sel[0]).json()


sel = sel_of(s.json)
mgr = conn.get(s.json["Links"]["ManagedBy"][0]["@odata.id"]).json()
mgr_sel = sel_of(mgr)
check(sel["@odata.type"].startswith("#LogService.") and sel["LogEntryType"] == "SEL", "Sel is a LogService of SEL entries")
check(sel["OverWritePolicy"] == "WrapsWhenFull" and sel["MaxNumberOfRecords"] > 0,
      "Sel wraps when full after %s records" % sel["MaxNumberOfRecords"])


def entries(log):
    return conn.get(log["Entries"]["@odata.id"]).json()["Members"]


listed = entries(sel)
check([e["Id"] for e in listed] == [e["Id"] for e in entries(mgr_sel)], "the System's and the Manager's Sel list the same entries")
result["entries"] = [
    {k: e.get(k) for k in ("Id", "EntryType", "Message", "SensorType", "SensorNumber", "EntryCode", "Severity", "Created")}
    for e in listed
]

# ClearLog through the Manager's Sel, as sushy would post an action.
resp = conn.post(mgr_sel["Actions"]["#LogService.ClearLog"]["target"], data={})
check(resp.status_code in (200, 202, 204), "ClearLog answered %d" % resp.status_code)
result["after_clear"] = len(entries(sel))

print("RESULT " + json.dumps(result), flush=True)
print("ALL OK", flush=True)
