#!/bin/bash
# Start-up cost of vmswitch: wall-ms and CPU-ms from exec to the guest's
# first instruction (vmswitch -v reports it) and to the test kernel's exit
# after PASS, for 256 MiB and 4 GiB of guest RAM; then the same test kernel
# under QEMU/KVM (-enable-kvm -M pc -kernel) for the ratio. Needs /dev/kvm
# (see bench/nested-startup.sh for hosts without one).
# Usage: bench/startup.sh [RUNS]   (default 5; the summary prints medians)
# Environment: VMSWITCH, GUEST (test kernel), QEMU (qemu-system-x86_64 or
# "none"), STARTUP_MEMS (default "256M 4G"), STARTUP_APPEND.
# Only bash is needed besides the VMMs (busybox userlands work): times come
# from bash's EPOCHREALTIME and its `time` keyword (wall, user+sys of child).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
vmswitch=${VMSWITCH:-$top/vmswitch}
guest=${GUEST:-$top/guest/vmswitch-guest}
mems=${STARTUP_MEMS:-256M 4G}
args=${STARTUP_APPEND:-pages=256 rounds=2}
[ -c /dev/kvm ] || { echo "startup: SKIP: needs /dev/kvm (absent on this host)"; exit 77; }
[ -x "$vmswitch" ] && [ -f "$guest" ] || { echo "startup: build $vmswitch and $guest first"; exit 2; }
tmp=$(mktemp -d /tmp/startup.XXXXXX) || exit 2
trap 'rm -rf "$tmp"' EXIT
fail=0

# timed CMD...: runs CMD (output to $tmp/out), sets t_wall / t_cpu in ms.
timed() {
	local TIMEFORMAT='%3R %3U %3S' r u s
	{ time "$@" >"$tmp/out" 2>&1 </dev/null; } 2>"$tmp/time"
	read -r r u s <"$tmp/time"
	t_wall=$(awk -v r="$r" 'BEGIN { printf "%.1f", r * 1000 }')
	t_cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.1f", (u + s) * 1000 }')
}

# Results: one line per run in $tmp/res: LABEL FIRST-WALL FIRST-CPU WALL CPU.
printf "%-20s %14s %14s %14s %14s\n" run first-entry-ms first-CPU-ms to-exit-ms to-exit-CPU-ms
row() { printf "%-20s %14s %14s %14s %14s\n" "$@"; echo "$*" >>"$tmp/res"; }

for mem in $mems; do
	for i in $(seq 0 "$runs"); do # run 0 warms the caches, not counted
		timed "$vmswitch" -v --kernel "$guest" --memory "$mem" --append "$args" \
			--serial "file:$tmp/serial"
		first=$(sed -n 's/.*first guest entry: \([0-9.]*\) ms wall, \([0-9.]*\) CPU-ms.*/\1 \2/p' "$tmp/out")
		if ! grep -q '^PASS' "$tmp/serial" || [ -z "$first" ]; then
			echo "startup: vmswitch $mem run $i did not PASS:"; tail -n 5 "$tmp/out" "$tmp/serial"
			fail=1; continue
		fi
		# shellcheck disable=SC2086 # $first holds two columns
		[ "$i" = 0 ] || row "vmswitch-$mem" $first "$t_wall" "$t_cpu"
	done
done

qemu=${QEMU:-$(command -v qemu-system-x86_64)}
if [ -n "$qemu" ] && [ "$qemu" != none ]; then
	for mem in $mems; do
		for i in $(seq 0 "$runs"); do # run 0 warms the caches, not counted
			# isa-debug-exit turns the guest's exit 0 into QEMU's status 1.
			timed timeout 120 "$qemu" -enable-kvm -M pc -m "$mem" -nodefaults -display none \
				-no-reboot -serial "file:$tmp/serial" \
				-device isa-debug-exit,iobase=0x508,iosize=1 -kernel "$guest" -append "$args"
			if ! grep -q '^PASS' "$tmp/serial"; then
				echo "startup: qemu $mem run $i did not PASS:"; tail -n 5 "$tmp/out" "$tmp/serial"
				fail=1; continue
			fi
			[ "$i" = 0 ] || row "qemu-kvm-$mem" - - "$t_wall" "$t_cpu"
		done
	done
fi

echo
echo "medians over $runs runs (ms):"
printf "%-20s %14s %14s %14s %14s\n" config first-entry-ms first-CPU-ms to-exit-ms to-exit-CPU-ms
awk '
function med(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	if (a[1] == "-") return "-"
	return n % 2 ? a[(n + 1) / 2] : sprintf("%.1f", (a[n / 2] + a[n / 2 + 1]) / 2)
}
{ if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
  for (c = 2; c <= 5; c++) v[$1, c] = v[$1, c] " " $c }
END { for (i = 1; i <= k; i++) printf "%-20s %14s %14s %14s %14s\n", order[i],
	med(v[order[i], 2]), med(v[order[i], 3]), med(v[order[i], 4]), med(v[order[i], 5]) }
' "$tmp/res"
exit $fail
