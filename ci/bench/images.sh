#!/usr/bin/env bash
# Benchmarks the conductor-side partition-image deploy against dd of the
# same 1 GiB image bytes, in the same run, and writes
# ci/bench/results-images.md. Each round runs both back to back (metalbed,
# then dd) on the same image, so both see the same machine load; the
# reported ratio is the median of the per-round ratios. ROUNDS (3),
# BENCHTIME (3x).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/vs-dd.sh
vs_dd disk BenchmarkPartitionImage1GiB ci/bench/results-images.md \
  "disk: partition-image deploy vs dd" \
  "Workload: a 1 GiB ext4 partition image (900 MiB of random file data) written onto a fresh
sparse 2 GiB file. metalbed: \`DeployPartitionImage\` (wipe 18 KiB at both ends, msdos label,
root partition at 1 MiB, image copied in 4 MiB writes, fsync, root UUID read back).
dd: \`dd if=img of=disk bs=4M conv=notrunc,fsync\` of the same bytes at offset 0." \
  "; below 1 is faster"
