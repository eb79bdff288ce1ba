#!/bin/bash
# Start-up cost: wall-ms and CPU-ms from exec to the guest's first instruction
# and to the test kernel's PASS, for 256 MiB and 4 GiB; then the same test
# kernel under QEMU/KVM (Debian's qemu-system-x86_64 -enable-kvm -kernel) for
# the ratio. Needs /dev/kvm. Usage: bench/startup.sh [RUNS]
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
[ -c /dev/kvm ] || { echo "startup: needs /dev/kvm (absent on this host)"; exit 77; }
args="pages=256 rounds=2"
printf "%-28s %12s %12s %12s\n" run first-insn-ms first-CPU-ms to-PASS-ms
for mem in 256M 4G; do
	for i in $(seq 1 "$runs"); do
		t0=$(date +%s%N)
		out=$("$top/vmswitch" -v --kernel "$top/guest/vmswitch-guest" --memory $mem --append "$args" --serial file:/dev/null 2>&1 </dev/null)
		t1=$(date +%s%N)
		first=$(echo "$out" | sed -n 's/.*first guest entry: \([0-9.]*\) ms wall, \([0-9.]*\) CPU-ms.*/\1 \2/p')
		printf "%-28s %12s %12s %12.1f\n" "vmswitch $mem #$i" $first $(echo "($t1 - $t0) / 1000000" | bc -l)
	done
done
qemu=$(command -v qemu-system-x86_64) || exit 0
for i in $(seq 1 "$runs"); do
	t0=$(date +%s%N)
	timeout 60 "$qemu" -enable-kvm -M pc -m 256 -nographic -no-reboot -monitor none -serial null \
		-device isa-debug-exit,iobase=0x508,iosize=1 -kernel "$top/guest/vmswitch-guest" -append "$args" </dev/null
	t1=$(date +%s%N)
	printf "%-28s %12s %12s %12.1f\n" "qemu-kvm 256M #$i" - - $(echo "($t1 - $t0) / 1000000" | bc -l)
done
