#!/usr/bin/env bash
# Issue 15's "four testbeds side by side with default flags": four
# `metalbed demo` runs started at once on this host, each with no flag at
# all, must each boot and undeploy its four machines (each testbed takes an
# address block of its own from the host-wide registry, free ports, its
# own MACs and UUIDs). Prints each run's summary line and wall time; exits
# non-zero if any run failed. Env: DEMOS (4).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${DEMOS:-4}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/metalbed" ./cmd/metalbed
start=$(date +%s)
for i in $(seq "$n"); do
  (cd "$work" && exec ./metalbed demo) >"$work/demo-$i.out" 2>&1 &
  pids+=("$!")
done
fail=0
for i in $(seq "$n"); do
  if ! wait "${pids[$((i - 1))]}"; then
    echo "demo $i: exit status $?" >&2
    fail=1
  fi
  out=$work/demo-$i.out
  if ! grep -q "4 of 4 instances booted" "$out" || [ "$(grep -c 'available again in' "$out")" != 4 ]; then
    echo "demo $i did not boot and undeploy its four machines:" >&2
    tail -40 "$out" >&2
    fail=1
  fi
  echo "demo $i: $(grep -m1 'instances booted' "$out" || echo 'no summary') (first lease: $(grep -m1 -o 'DHCP *127\.[0-9.]*' "$out" | awk '{print $2}'))"
done
pids=()
echo "$n demos side by side: $(( $(date +%s) - start )) s wall, $([ $fail = 0 ] && echo 'all passed' || echo FAILED)"
exit $fail
