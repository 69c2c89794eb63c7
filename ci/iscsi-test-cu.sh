#!/usr/bin/env bash
# iscsi-test-cu.sh: runs libiscsi's target test suite (iscsi-test-cu, Debian
# libiscsi-bin) against metalbed's iSCSI target and against Debian's tgtd in
# the same run, fails if metalbed fails any test tgtd passes, and records
# the counts per suite in ci/bench/results-iscsi.md.
#
# Needs root (tgtd), libiscsi-bin and tgt. tgtd listens on 127.0.0.1 only,
# on a free port; its control socket number is METALBED_TGTD_CONTROL
# (default: derived from the test's PID). Both are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
METALBED_INTEROP=required METALBED_TESTCU_REPORT="$report" \
  go test -count=1 -timeout 40m -run '^TestInteropIscsiTestCu$' -v ./iscsitarget/ || status=$?
if [ -s "$report" ]; then
  {
    echo "### iscsi-test-cu: metalbed vs tgtd ($(date -u +%Y-%m-%dT%H:%MZ), $(dpkg-query -W -f='libiscsi-bin ${Version}, tgt ' libiscsi-bin 2>/dev/null)$(dpkg-query -W -f='${Version}' tgt 2>/dev/null))"
    echo
    cat "$report"
  } >"$report.md"
  ci/bench/iscsi-section.sh ci/bench/results-iscsi.md testcu "$report.md"
  rm -f "$report.md"
  echo "iscsi-test-cu: results written to ci/bench/results-iscsi.md"
fi
exit "$status"
