#!/bin/bash
# Boot our test kernel on KVM: 1 and 2 vCPUs, 64/256/1024 MiB, expect PASS
# and exit status 0; a deliberately corrupting run must report FAIL, status 1.
set -u
. "$(dirname "$0")/kvm_common.sh"
need_kvm 900 2048
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fails=0 passes=0
check() { # NAME WANT_STATUS PATTERN ARGS...
	local name=$1 want=$2 pat=$3; shift 3
	run_guest "$work/log" "$@"; local rc=$?
	if [ $rc -eq "$want" ] && grep -Eq "$pat" "$work/log"; then
		passes=$((passes+1)); echo "ok   $name ($(grep -Eo "$pat.*" "$work/log" | head -1))"
	else
		fails=$((fails+1)); echo "FAIL $name: status $rc"; tail -20 "$work/log"
	fi
}
for cpus in 1 2; do
	for mem in 64M 256M 1024M; do
		check "cpus=$cpus mem=$mem" 0 "PASS" --cpus $cpus --memory $mem --append "pages=2048 rounds=5 cpus=$cpus"
	done
done
check "corrupt=1 fails" 1 "FAIL" --append "pages=256 rounds=3 corrupt=1"
check "exception reported" 2 "EXCEPTION vector=14" --append "pages=256 fault=1"
# A triple fault is one clear line plus a register dump, status 125.
check "triple fault" 125 "triple-faulted on vCPU 0" --append "pages=256 fault=3"
grep -q "vCPU 0 registers" "$work/log" || { fails=$((fails+1)); echo "FAIL triple fault: no register dump"; }
echo "boot guest: $passes passed, $fails failed"
[ $fails -eq 0 ]
