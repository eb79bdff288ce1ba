#!/bin/bash
# bench/guest-speed.sh inside the QEMU TCG guest of tests/nested/run.sh (a
# real but slow KVM), for hosts with no /dev/kvm. The rates measure TCG plus
# emulated nested paging, so only the ratios between modes mean anything.
# Usage: bench/nested-guest-speed.sh [SECONDS [CYCLES]]   (default 10 2)
# Environment: NESTED_WORK (run.sh's cache), NESTED_TIMEOUT (s, default
# 600), SPEED_MEMORY (default 64M: every remap is slow under TCG),
# SPEED_PAGES, SPEED_CPUS.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/tests/nested/run.sh
smp=${SPEED_CPUS:-1}
exec bash "$run" --timeout "${NESTED_TIMEOUT:-600}" --mem 1024 --smp "$smp" \
	--file "$top/vmswitch" --file "$top/guest/vmswitch-guest" \
	--file "$top/bench/guest-speed.sh" --file /bin/bash -- \
	env SPEED_MEMORY="${SPEED_MEMORY:-64M}" SPEED_PAGES="${SPEED_PAGES:-1024}" SPEED_CPUS="$smp" \
	bash -c 'echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
	exec bash "$1" "$2" "$3"' guest-speed "$top/bench/guest-speed.sh" "${1:-10}" "${2:-2}"
