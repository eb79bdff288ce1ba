#!/bin/bash
# bench/startup.sh inside the QEMU TCG guest of tests/nested/run.sh (a real
# but slow KVM), for hosts with no /dev/kvm. All numbers are "nested TCG":
# compare ratios, not absolutes. QEMU, its firmware and its libraries are
# copied in so QEMU/KVM runs beside vmswitch in the same guest.
# Usage: bench/nested-startup.sh [RUNS]   (default 5)
# Environment: NESTED_WORK (run.sh's cache), NESTED_TIMEOUT (s, default 600).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/tests/nested/run.sh
runs=${1:-5}
files=(--file "$top/vmswitch" --file "$top/guest/vmswitch-guest" --file "$top/bench/startup.sh"
	--file /bin/bash)
. "$top/bench/nested-common.sh"
qemu_files
# 4 GiB guests are sparse, but vmswitch refuses more RAM than the host has.
# THP for shmem as vmswitch recommends (-v says so otherwise); guest-only.
exec bash "$run" --timeout "${NESTED_TIMEOUT:-600}" --mem 4608 "${files[@]}" -- \
	bash -c 'echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
		exec bash "$1" "$2"' startup "$top/bench/startup.sh" "$runs"
