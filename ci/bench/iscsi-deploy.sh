#!/usr/bin/env bash
# Benchmarks the whole iSCSI deploy of a partition image (provisioner API and
# conductor, pxe boot interface, the real deploy ramdisk exporting a sparse
# disk with metalbed's iSCSI target, the conductor's initiator writing the
# image, notify, reboot to active) against dd of the same image bytes into
# the same kind of disk file, in the same run, and writes
# ci/bench/results-iscsi-deploy.md. The ratio is the median of per-round
# ratios. IMAGE_MB (default 256), ROUNDS (3), BENCHTIME (3x).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/vs-dd.sh
export METALBED_BENCH_IMAGE_MB=${IMAGE_MB:-256}
vs_dd provisioner/deploy BenchmarkISCSIDeploy ci/bench/results-iscsi-deploy.md \
  "provisioner/deploy/iscsi: whole iSCSI deploy vs dd" \
  "Workload: a $METALBED_BENCH_IMAGE_MB MiB ext4 partition image (images.Build), netboot, bios. metalbed: \`PUT .../states/provision\`
(active, then rebuild) polled until active: image cache and checksum, PXE config, power on, the real
deploy ramdisk exporting a sparse 2 GiB file with metalbed's iSCSI target on 127.x, pass_deploy_info, the
pure-Go initiator partitioning and writing the image, SYNCHRONIZE CACHE, logout, PXE switch, notify, reboot.
dd: \`dd if=img of=disk bs=4M seek=1MiB conv=notrunc,fsync\` of the same bytes into a sparse 2 GiB file."
