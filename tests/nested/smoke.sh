#!/bin/bash
# Smoke test of the nested KVM: boot the TCG guest once (run.sh) and run
#  - kvm_tiny: a real-mode vCPU doing `mov $0x42,%al; out %al,$0x10; hlt`;
#    its KVM_EXIT_IO must arrive;
#  - kvm_probe: a 64-bit vCPU; dirty logging, userfaultfd-wp on memfd and the
#    CPL0 instructions kvm_pvm cannot run must work (timings are printed only).
# Exit 0 on success, 1 on failure, 77 when this host cannot try.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${NESTED_WORK:-$here/work}
mkdir -p "$work"
# Static, so the guest needs no libraries.
for p in kvm_tiny kvm_probe; do
	if ! ${CC:-gcc} -static -O2 -Wall -Wextra -Werror -pthread \
		-o "$work/$p" "$here/$p.c"; then
		echo "smoke: SKIP: cannot build a static $p (libc6-dev with libc.a needed)" >&2
		exit 77
	fi
done
rc=0
# shellcheck disable=SC2016 # the inner sh expands $1, $2 and $?
out=$("$here/run.sh" --timeout "${NESTED_TIMEOUT:-180}" \
	--file "$work/kvm_tiny" --file "$work/kvm_probe" -- \
	sh -c '"$1"; echo "kvm_tiny exit $?"; "$2"; echo "kvm_probe exit $?"' \
	sh "$work/kvm_tiny" "$work/kvm_probe") || rc=$?
printf '%s\n' "$out"
[ $rc = 77 ] && exit 77
ok=1
has() { printf '%s\n' "$out" | grep -qx "$1"; }
if ! has 'KVM_EXIT_IO port=0x10 val=0x42' || ! has 'kvm_tiny exit 0'; then
	echo "smoke: FAIL: kvm_tiny: no KVM_EXIT_IO port=0x10 val=0x42 (run.sh status $rc)" >&2; ok=0
fi
has 'kvm_probe exit 0' || { echo "smoke: FAIL: kvm_probe (run.sh status $rc)" >&2; ok=0; }
[ $rc = 0 ] || { echo "smoke: FAIL: run.sh exit status $rc" >&2; ok=0; }
[ $ok = 1 ] || exit 1
echo "smoke: PASS: nested KVM runs real-mode and 64-bit vCPUs"
