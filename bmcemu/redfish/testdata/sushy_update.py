# Drives a metalbed Redfish service's UpdateService and TaskService with
# sushy as Ironic 21.4's redfish firmware update does (simple_update, then
# polling the task monitor by its URI), and
# checks Resets under layer redfish's power-on-conflict fault. Run by
# sushy_update_test.go with Debian's /usr/bin/python3; exits non-zero,
# saying what failed, on the first wrong answer.
#
#   sushy_update.py update IMAGE_URL WANT_VERSION   the update succeeds
#   sushy_update.py fail IMAGE_URL WHY              the task ends in Exception
#   sushy_update.py conflict                        On after ForceOff: 409
#   sushy_update.py session                         an expired session: sushy
#                                                   logs in again
import os
import sys
import time

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions
from sushy import taskmonitor

URL = os.environ["RF_URL"]
CA = os.environ.get("RF_CA") or False
USER = os.environ["RF_USER"]
PASS = os.environ["RF_PASS"]
SYSTEM = os.environ["RF_SYSTEM"]
MANAGER = os.environ["RF_MANAGER"]


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def connect():
    return sushy.Sushy(URL, verify=CA, auth=sushy_auth.SessionOrBasicAuth(USER, PASS))


def inventory(update_service):
    inv = update_service.firmware_inventory
    inv.refresh(force=True)
    return {m.identity: m.version for m in inv.get_members()}


def poll(root, uri, timeout=30):
    """Polls the task monitor as Ironic's periodic does: a new TaskMonitor
    by URI each time, until it is no longer processing. Returns the last
    monitor; an HTTPError of the monitor's final answer propagates.

    Ironic calls Sushy.get_task_monitor; Debian's python3-sushy 4.3.3 lacks
    sushy/standard_registries/, which that method loads (eagerly, through
    Sushy.registries), so it raises FileNotFoundError before any request
    (and the deprecated UpdateService.get_task_monitor passes TaskMonitor a
    root= it does not take). This builds the TaskMonitor as
    Sushy.get_task_monitor does, with the lazy registries."""
    deadline = time.time() + timeout
    while True:
        tm = taskmonitor.TaskMonitor(root._conn, uri, redfish_version=root.redfish_version,
                                     registries=root.lazy_registries)
        if not tm.is_processing:
            return tm
        check(tm.task is not None and tm.task.task_state in
              (sushy.TASK_STATE_NEW, sushy.TASK_STATE_RUNNING),
              "monitor answers 202 with the Task (%s, %s%%)" % (
                  tm.task.task_state if tm.task else None,
                  tm.task.percent_complete if tm.task else None))
        if time.time() > deadline:
            check(False, "task monitor %s finished within %ds" % (uri, timeout))
        # sushy's sleep_for hands back Retry-After as a string.
        time.sleep(min(float(tm.sleep_for), 0.2))


def update(image, want):
    root = connect()
    us = root.get_update_service()
    check(us.service_enabled, "UpdateService enabled")
    before = inventory(us)
    mgr = root.get_manager(MANAGER)
    system = root.get_system(SYSTEM)
    bmc_id = [k for k in before if k.startswith("BMC-")]
    bios_id = [k for k in before if k.startswith("BIOS-")]
    check(len(bmc_id) == 1 and len(bios_id) == 1, "FirmwareInventory has a BMC and a BIOS entry: %s" % before)
    check(before[bmc_id[0]] == mgr.firmware_version,
          "inventory BMC version %s is the Manager's FirmwareVersion %s" % (before[bmc_id[0]], mgr.firmware_version))
    check(before[bios_id[0]] == system.bios_version,
          "inventory BIOS version %s is the System's BiosVersion %s" % (before[bios_id[0]], system.bios_version))

    # What Ironic's _apply_firmware_update sends.
    tm = us.simple_update(image, transfer_protocol=sushy.UPDATE_PROTOCOL_HTTP)
    uri = tm.task_monitor_uri
    check(uri and "/TaskService/TaskMonitors/" in uri, "simple_update gave a task monitor %s" % uri)
    tm = poll(root, uri)
    check(tm.response.status_code == 200, "monitor's final answer is 200")
    # Ironic reads the Task from the monitor once it is done.
    task = tm.get_task()
    check(task.task_state == sushy.TASK_STATE_COMPLETED, "task Completed (%s)" % task.task_state)
    check(task.task_status == sushy.HEALTH_OK, "task status OK (%s)" % task.task_status)
    check(task.percent_complete == 100, "PercentComplete 100")
    check(task.messages and task.messages[-1].message_id.endswith("UpdateSuccessful"),
          "last message UpdateSuccessful: %s" % [m.message_id for m in task.messages])
    mgr.refresh()
    check(mgr.firmware_version == want, "Manager FirmwareVersion now %s (%s)" % (want, mgr.firmware_version))
    check(inventory(us)[bmc_id[0]] == want, "inventory BMC version now %s" % want)
    # The task stays in the TaskService.
    tasks = root.get_task_service().tasks
    check(any(t.task_monitor == uri and t.task_state == sushy.TASK_STATE_COMPLETED for t in tasks.get_members()),
          "TaskService lists the Completed task")


def fail(image, why):
    root = connect()
    us = root.get_update_service()
    mgr = root.get_manager(MANAGER)
    old = mgr.firmware_version
    # The monitor's final answer of a failed task is 200 with the Task in
    # Exception, as iDRAC and OpenBMC answer: what Ironic's firmware update
    # check reads (it catches no other error from the monitor).
    tm = us.simple_update(image, transfer_protocol=sushy.UPDATE_PROTOCOL_HTTP)
    uri = tm.task_monitor_uri
    tm = poll(root, uri)
    check(tm.response.status_code == 200, "the monitor's final answer is 200")
    task = tm.get_task()
    check(task.task_state == sushy.TASK_STATE_EXCEPTION, "the monitor's Task is in Exception (%s)" % task.task_state)
    tasks = root.get_task_service().tasks
    failed = [t for t in tasks.get_members() if t.task_state == sushy.TASK_STATE_EXCEPTION]
    check(len(failed) == 1, "TaskService lists one task in Exception")
    task = failed[0]
    check(uri is None or task.task_monitor == uri, "it is the task of %s" % uri)
    text = " ".join(m.message or "" for m in task.messages)
    check(why in text, "task messages say %r: %s" % (why, text))
    check(any(m.message_id.endswith("TransferFailed") for m in task.messages), "a TransferFailed message")
    mgr.refresh()
    check(mgr.firmware_version == old, "FirmwareVersion unchanged (%s)" % mgr.firmware_version)


def conflict():
    root = connect()
    system = root.get_system(SYSTEM)
    system.reset_system(sushy.RESET_ON)
    check(True, "On before any power-off")
    system.reset_system(sushy.RESET_FORCE_OFF)
    check(True, "ForceOff")
    try:
        system.reset_system(sushy.RESET_ON)
        check(False, "On right after ForceOff refused")
    except exceptions.HTTPError as e:
        check(e.status_code == 409, "On right after ForceOff: sushy raised %s with status %s" % (type(e).__name__, e.status_code))
        check("powering off" in str(e), "the error says the server is powering off: %s" % e)
    system.refresh()
    check(system.power_state == sushy.SYSTEM_POWER_STATE_OFF, "still off (%s)" % system.power_state)


def session():
    auth = sushy_auth.SessionOrBasicAuth(USER, PASS)
    root = sushy.Sushy(URL, verify=CA, auth=auth)
    first = auth.get_session_key()
    check(first is not None, "logged in with a session")
    # The fault expires the session at this request: the 401 makes sushy
    # log in again and repeat it.
    system = root.get_system(SYSTEM)
    check(system.identity, "the system read despite the expired session")
    check(auth.get_session_key() not in (None, first), "sushy logged in again with a new session")
    system.refresh()
    check(True, "the new session works")


print("sushy", getattr(sushy, "__version__", "?"))
mode = sys.argv[1]
if mode == "update":
    update(sys.argv[2], sys.argv[3])
elif mode == "fail":
    fail(sys.argv[2], sys.argv[3])
elif mode == "conflict":
    conflict()
elif mode == "session":
    session()
else:
    check(False, "mode %s" % mode)
print("ALL OK", flush=True)
