#!/usr/bin/env bash
# iscsi.sh: throughput, CPU and RSS of metalbed's iSCSI target
# (`metalbed target serve`, a separate process) against Debian's tgtd, the
# same 512 MiB written and read by the same initiator (qemu-img over
# libiscsi), ROUNDS times each, alternating targets. Results go to
# ci/bench/results-iscsi.md (section "bench").
#
# CPU is utime+stime of the target process (all threads) from
# /proc/PID/stat; RSS is VmHWM (peak) and VmRSS from /proc/PID/status.
# Needs root (tgtd), tgt, qemu-utils and qemu-block-extra. Everything
# listens on 127.0.0.1 only; both targets are stopped by PID.
#
# Env: ROUNDS (5; each figure is the median of the rounds, with its min–max), SIZE_MB (512), OURS_PORT (13271), TGT_PORT (13270),
# TGT_CONTROL (12: tgtd -C socket number), WORK (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
SIZE_MB=${SIZE_MB:-512}
OURS_PORT=${OURS_PORT:-13271}
TGT_PORT=${TGT_PORT:-13270}
TGT_CONTROL=${TGT_CONTROL:-12}
WORK=${WORK:-$(mktemp -d /tmp/metalbed-iscsi-bench.XXXXXX)}
size=$((SIZE_MB * 1024 * 1024))
tck=$(getconf CLK_TCK)

for tool in qemu-img tgtd tgtadm; do
  command -v "$tool" >/dev/null || { echo "iscsi bench: $tool missing (Debian: qemu-utils qemu-block-extra tgt)" >&2; exit 1; }
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    # tgtd may ignore SIGTERM while it has targets: give it 3 s, then KILL.
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/metalbed" ./cmd/metalbed
head -c "$size" /dev/urandom >"$WORK/src.img"
truncate -s "$size" "$WORK/ours.img" "$WORK/tgt.img" "$WORK/tgt2.img"

"$WORK/metalbed" target serve --disk "$WORK/ours.img" --iqn iqn.2026-11.org.metalbed.bench:ours \
  --addr "127.0.0.1:$OURS_PORT" >"$WORK/ours.log" 2>&1 &
ours_pid=$!
pids+=("$ours_pid")
tgtd -f --iscsi "portal=127.0.0.1:$TGT_PORT" -C "$TGT_CONTROL" >"$WORK/tgtd.log" 2>&1 &
tgt_pid=$!
pids+=("$tgt_pid")
adm() { tgtadm -C "$TGT_CONTROL" --lld iscsi "$@"; }
for _ in $(seq 100); do adm --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
adm --op new --mode target --tid 1 -T iqn.2026-11.org.metalbed.bench:tgtd
adm --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/tgt.img"
adm --op bind --mode target --tid 1 -I ALL
# A second tgtd target tuned to what metalbed negotiates by default (256 KiB
# data segments both ways, unsolicited data), so the comparison is not only
# against tgtd's 8 KiB defaults.
adm --op new --mode target --tid 2 -T iqn.2026-11.org.metalbed.bench:tgtd-tuned
adm --op new --mode logicalunit --tid 2 --lun 1 -b "$WORK/tgt2.img"
adm --op bind --mode target --tid 2 -I ALL
for kv in MaxRecvDataSegmentLength=262144 MaxXmitDataSegmentLength=262144 InitialR2T=No; do
  adm --op update --mode target --tid 2 --name "${kv%%=*}" --value "${kv#*=}"
done
for _ in $(seq 100); do grep -q "serving" "$WORK/ours.log" && break; sleep 0.1; done

url_ours="iscsi://127.0.0.1:$OURS_PORT/iqn.2026-11.org.metalbed.bench:ours/1"
url_tgt="iscsi://127.0.0.1:$TGT_PORT/iqn.2026-11.org.metalbed.bench:tgtd/1"
url_tgt2="iscsi://127.0.0.1:$TGT_PORT/iqn.2026-11.org.metalbed.bench:tgtd-tuned/1"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

raw="$WORK/raw.tsv"
: >"$raw"
for round in $(seq "$ROUNDS"); do
  for t in ours tgt tgt2; do
    case $t in
    ours) pid=$ours_pid url=$url_ours disk=$WORK/ours.img ;;
    tgt) pid=$tgt_pid url=$url_tgt disk=$WORK/tgt.img ;;
    tgt2) pid=$tgt_pid url=$url_tgt2 disk=$WORK/tgt2.img ;;
    esac
    # Blank the backing file (sparse zeros) so every round writes to a
    # fresh disk, as a deploy does, and the check below proves this
    # round's write.
    truncate -s 0 "$disk" && truncate -s "$size" "$disk"
    c0=$(cpu "$pid"); s=$(now)
    qemu-img convert -n -f raw -O raw "$WORK/src.img" "$url"
    e=$(now); c1=$(cpu "$pid")
    qemu-img convert -n -f raw "$url" --target-image-opts "driver=null-co,size=$size"
    e2=$(now); c2=$(cpu "$pid")
    cmp -s -n "$size" "$WORK/src.img" "$disk" || { echo "iscsi bench: $t disk differs from the source after round $round" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" \
      "$(awk -v a="$s" -v b="$e" -v m="$SIZE_MB" 'BEGIN{printf "%.1f", m/(b-a)}')" \
      "$(awk -v a="$c0" -v b="$c1" -v k="$tck" 'BEGIN{printf "%.2f", (b-a)/k}')" \
      "$(awk -v a="$e" -v b="$e2" -v m="$SIZE_MB" 'BEGIN{printf "%.1f", m/(b-a)}')" \
      "$(awk -v a="$c1" -v b="$c2" -v k="$tck" 'BEGIN{printf "%.2f", (b-a)/k}')" \
      "$(rss "$pid" VmHWM)" "$(rss "$pid" VmRSS)" >>"$raw"
  done
done

# Report: every run, then medians and ratios ours/tgtd.
out="$WORK/section.md"
{
  echo "### Throughput: ${SIZE_MB} MiB through qemu-img (libiscsi), ${ROUNDS} rounds ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), shared with other work; loopback; backing files in $(df --output=fstype "$WORK" | tail -1). Write = \`qemu-img convert -n src.img iscsi://…\` onto a freshly blanked (sparse) backing file, checked with cmp afterwards, read = \`qemu-img convert -n iscsi://… null-co\`; CPU = target process utime+stime during the transfer; RSS = target VmHWM/VmRSS after the round."
  echo
  echo "| target | round | write MB/s | write CPU s | read MB/s | read CPU s | VmHWM KiB | VmRSS KiB |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", ($1=="ours"?"metalbed":($1=="tgt"?"tgtd":"tgtd tuned")), $2, $3, $4, $5, $6, $7, $8}' "$raw"
  echo
  awk -F'\t' '
    function sort(arr, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    }
    # stat(t, col): "median (min–max)" of column col over target t'"'"'s rounds.
    function stat(t, col, fmt,   i, a, n) {
      n = cnt[t]; for (i = 1; i <= n; i++) a[i] = v[t, col, i]; sort(a, n)
      med[t, col] = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      return sprintf(fmt " (" fmt "–" fmt ")", med[t, col], a[1], a[n])
    }
    # ratio(t, u, col): median ours/peer ratio of the medians, and the
    # range of the per-round ratios (round i of t against round i of u).
    function ratio(t, u, col,   i, a, n) {
      n = cnt[t]; for (i = 1; i <= n; i++) a[i] = (v[u, col, i] > 0 ? v[t, col, i] / v[u, col, i] : 0); sort(a, n)
      return sprintf("**%.2f×** (%.2f–%.2f)", (med[u, col] > 0 ? med[t, col] / med[u, col] : 0), a[1], a[n])
    }
    { k = ++cnt[$1]; for (c = 3; c <= 6; c++) v[$1, c, k] = $c; if ($7 > hwm[$1]) hwm[$1] = $7 }
    END {
      print "| median (min–max) of " cnt["ours"] " rounds | write MB/s | write CPU s | read MB/s | read CPU s | peak RSS KiB |"
      print "|---|---|---|---|---|---|"
      split("ours tgt tgt2", ts, " ")
      name["ours"] = "metalbed"; name["tgt"] = "tgtd (defaults)"; name["tgt2"] = "tgtd tuned"
      for (i = 1; i <= 3; i++) {
        t = ts[i]
        printf "| %s | %s | %s | %s | %s | %s |\n", name[t], stat(t, 3, "%.1f"), stat(t, 4, "%.2f"), stat(t, 5, "%.1f"), stat(t, 6, "%.2f"), (t == "tgt2" ? "(same process)" : hwm[t])
      }
      printf "| metalbed / tgtd | %s | %s | %s | %s | **%.2f×** |\n", ratio("ours", "tgt", 3), ratio("ours", "tgt", 4), ratio("ours", "tgt", 5), ratio("ours", "tgt", 6), hwm["ours"] / hwm["tgt"]
      printf "| metalbed / tgtd tuned | %s | %s | %s | %s | |\n", ratio("ours", "tgt2", 3), ratio("ours", "tgt2", 4), ratio("ours", "tgt2", 5), ratio("ours", "tgt2", 6)
    }' "$raw"
  echo
  echo "Ratios: of the medians, in brackets the lowest and highest ratio of one round (round i of metalbed against round i of the peer; the targets alternate within a round)."
  echo
  echo "tgtd's defaults are 8 KiB data segments (MaxRecvDataSegmentLength, MaxXmitDataSegmentLength) and InitialR2T=Yes; \"tgtd tuned\" is a second target in the same tgtd with 256 KiB segments and InitialR2T=No, which is what metalbed's target negotiates with libiscsi. Peak RSS of tgtd covers both of its targets."
  echo
  echo "Goal: throughput ≥ 1.0× tgtd at ≤ 1.5× its CPU. CPU seconds per transfer are small (tenths of a second), so one scheduler tick (1/${tck} s) is a visible share of them."
} >"$out"
cat "$out"
ci/bench/iscsi-section.sh ci/bench/results-iscsi.md bench "$out"
