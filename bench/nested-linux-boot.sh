#!/bin/bash
# bench/linux-boot.sh inside the QEMU TCG guest of tests/nested/run.sh (a
# real but slow KVM), for hosts with no /dev/kvm. All numbers are "nested
# TCG": compare ratios, not absolutes. QEMU, its firmware and its libraries
# are copied in so QEMU/KVM boots the same kernel in the same guest.
# Usage: bench/nested-linux-boot.sh [RUNS]   (default 3)
# Environment: LINUX_KERNEL (default: tests/linux/fetch-kernel.sh generic),
# NESTED_WORK (run.sh's cache), NESTED_TIMEOUT (s, default 900), BOOT_MEMORY.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/tests/nested/run.sh
runs=${1:-3}
kernel=${LINUX_KERNEL:-$(bash "$top/tests/linux/fetch-kernel.sh" generic "$top/tests/linux/work")} ||
	{ echo "nested-linux-boot: no kernel"; exit 2; }
busybox=${BUSYBOX:-${NESTED_WORK:-$top/tests/nested/work}/busybox/bin/busybox}
files=(--file "$top/vmswitch" --file "$top/bench/linux-boot.sh" --file "$kernel"
	--file "$busybox" --file /bin/bash --file /usr/bin/tail)
. "$top/bench/nested-common.sh"
qemu_files
exec bash "$run" --timeout "${NESTED_TIMEOUT:-900}" --mem 2048 "${files[@]}" -- \
	env LINUX_KERNEL="$kernel" BUSYBOX="$busybox" TAIL=/usr/bin/tail \
	BOOT_MEMORY="${BOOT_MEMORY:-256M}" bash -c \
	'echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
	exec bash "$1" "$2"' linux-boot "$top/bench/linux-boot.sh" "$runs"
