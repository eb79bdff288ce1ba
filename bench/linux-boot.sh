#!/bin/bash
# Linux boot time: wall-ms and VMM CPU-ms from exec until the kernel prints
# "Run /init" on its serial console, for Debian's stock kernel booted by
# vmswitch (host decompression, the default), by vmswitch with
# --no-host-decompress, and by QEMU/KVM (-kernel), with the same memory,
# command line and a trivial initramfs. The VMM is killed once the line is
# seen. Also prints vmswitch's emulation fallbacks (stats: exits_int3_fixup,
# exits_fwait_fixup; 0 unless the host is kvm_pvm). Needs /dev/kvm (see
# bench/nested-linux-boot.sh for hosts without one).
# Usage: bench/linux-boot.sh [RUNS]   (default 3; the summary prints medians)
# Environment: LINUX_KERNEL (a bzImage; default Debian's 6.1 from
# tests/linux/fetch-kernel.sh's cache), BUSYBOX (static busybox for the
# initramfs), BOOT_MEMORY (default 256M), BOOT_TIMEOUT (s per boot, default
# 300), VMSWITCH, QEMU (or "none"), TAIL (GNU tail: follows by inotify;
# otherwise the file is polled every 20 ms).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
vmswitch=${VMSWITCH:-$top/vmswitch}
mem=${BOOT_MEMORY:-256M}
limit=${BOOT_TIMEOUT:-300}
append='console=ttyS0 panic=-1'
tail=${TAIL:-tail}
say() { echo "linux-boot: $*"; }

[ -c /dev/kvm ] || { say "SKIP: needs /dev/kvm (absent on this host)"; exit 77; }
kernel=${LINUX_KERNEL:-$(ls "$top"/tests/linux/work/linux-image-*[0-9]-amd64/root/boot/vmlinuz-* \
	"$top"/tests/nested/work/kernel/boot/vmlinuz-* 2>/dev/null | head -n1)}
[ -f "$kernel" ] || { say "no kernel: set LINUX_KERNEL or run tests/linux/fetch-kernel.sh"; exit 2; }
busybox=${BUSYBOX:-$top/tests/nested/work/busybox/bin/busybox}
[ -x "$busybox" ] || busybox=$(command -v busybox) || { say "no static busybox (set BUSYBOX)"; exit 2; }
[ -x "$vmswitch" ] || { say "build $vmswitch first"; exit 2; }
tmp=$(mktemp -d /tmp/linux-boot.XXXXXX) || exit 2
vmm_pid=
cleanup() { [ -z "$vmm_pid" ] || kill -9 "$vmm_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# The initramfs: /init powers off at once (we stop timing at "Run /init").
mkdir -p "$tmp/root/bin"
cp "$busybox" "$tmp/root/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox poweroff -f\n' >"$tmp/root/init"
chmod 755 "$tmp/root/init"
(cd "$tmp/root" && find . | cpio -o -H newc 2>/dev/null) >"$tmp/initrd" &&
	[ -s "$tmp/initrd" ] || { say "cannot build the initramfs (cpio)"; exit 2; }

now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
if "$tail" --version 2>/dev/null | grep -q GNU; then gnu_tail=1; else gnu_tail=0; fi

# wait_line FILE PID: returns 0 once FILE holds "Run /init", 1 if PID died
# or $limit seconds passed.
wait_line() {
	if [ $gnu_tail = 1 ]; then
		# Through a FIFO (busybox guests have no /dev/fd for <(...)): grep
		# alone is waited for, tail is stopped once it has answered.
		local tpid rc
		rm -f "$tmp/fifo" && mkfifo "$tmp/fifo" || return 1
		"$tail" -n +1 -F --pid="$2" "$1" >"$tmp/fifo" 2>/dev/null &
		tpid=$!
		timeout "$limit" grep -m1 -q 'Run /init' <"$tmp/fifo"
		rc=$?
		kill $tpid 2>/dev/null
		return $rc
	fi
	local end=$(($(now_us) + limit * 1000000))
	while [ "$(now_us)" -lt $end ] && kill -0 "$2" 2>/dev/null; do
		grep -q 'Run /init' "$1" 2>/dev/null && return 0
		sleep 0.02
	done
	grep -q 'Run /init' "$1" 2>/dev/null
}

# cpu_ms PID: user+system time of the whole process so far (all threads).
cpu_ms() {
	local f
	read -r -a f <"/proc/$1/stat" || return
	# Fields 14 and 15 (1-based) after a comm without spaces; ticks of 1/100 s.
	echo $(((f[13] + f[14]) * 10))
}

row() { printf "%-24s %10s %10s %12s %8s %8s\n" "$@"; echo "$*" >>"$tmp/res"; }
fail=0

# boot LABEL KIND CMD...: start CMD, wait for the line, record, kill.
boot() {
	local label=$1 kind=$2 t0 t1 cpu ts int3=- fwait=-
	shift 2
	rm -f "$tmp/serial" "$tmp/mon"; : >"$tmp/serial"
	t0=$(now_us)
	"$@" </dev/null >"$tmp/vmm.log" 2>&1 &
	vmm_pid=$!
	if ! wait_line "$tmp/serial" $vmm_pid; then
		say "$label: no 'Run /init' within ${limit}s or the VMM died:"
		tail -n 5 "$tmp/vmm.log" "$tmp/serial"; fail=1
	else
		t1=$(now_us)
		cpu=$(cpu_ms $vmm_pid)
		ts=$(sed -n 's/^\[ *\([0-9.]*\)\] Run \/init.*/\1/p' "$tmp/serial" | head -n1)
		if [ "$kind" = vmswitch ]; then
			"$vmswitch" --connect "$tmp/mon" stats >"$tmp/stats" 2>&1
			int3=$(sed -n 's/^exits_int3_fixup: //p' "$tmp/stats")
			fwait=$(sed -n 's/^exits_fwait_fixup: //p' "$tmp/stats")
		fi
		row "$label" $(((t1 - t0) / 1000)) "$cpu" "${ts:--}" "${int3:--}" "${fwait:--}"
	fi
	kill -9 $vmm_pid 2>/dev/null
	wait $vmm_pid 2>/dev/null
	vmm_pid=
}

say "kernel $kernel, memory $mem, append '$append'"
printf "%-24s %10s %10s %12s %8s %8s\n" run wall-ms CPU-ms kernel-ts-s int3-fix fwait-fix
qemu=${QEMU:-$(command -v qemu-system-x86_64)}
qmem=${mem%[mM]}
for _ in $(seq 1 "$runs"); do
	boot vmswitch vmswitch "$vmswitch" --kernel "$kernel" --initrd "$tmp/initrd" --memory "$mem" \
		--append "$append" --serial "file:$tmp/serial" --monitor "unix:$tmp/mon"
	boot vmswitch-no-host-decomp vmswitch "$vmswitch" --no-host-decompress --kernel "$kernel" \
		--initrd "$tmp/initrd" --memory "$mem" --append "$append" \
		--serial "file:$tmp/serial" --monitor "unix:$tmp/mon"
	if [ -n "$qemu" ] && [ "$qemu" != none ]; then
		boot qemu-kvm qemu "$qemu" -enable-kvm -cpu host -M pc -m "$qmem" -nodefaults \
			-display none -no-reboot -serial "file:$tmp/serial" \
			-kernel "$kernel" -initrd "$tmp/initrd" -append "$append"
	fi
done

echo
echo "medians over $runs runs (wall and CPU relative to qemu-kvm's medians):"
printf "%-24s %10s %10s %12s %10s %10s\n" config wall-ms CPU-ms kernel-ts-s wall/qemu CPU/qemu
awk '
function med(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
  for (c = 2; c <= 4; c++) v[$1, c] = v[$1, c] " " $c }
END {
	qw = ("qemu-kvm" in seen) ? med(v["qemu-kvm", 2]) : 0
	qc = ("qemu-kvm" in seen) ? med(v["qemu-kvm", 3]) : 0
	for (i = 1; i <= k; i++) {
		w = med(v[order[i], 2]); c = med(v[order[i], 3])
		printf "%-24s %10s %10s %12s %10s %10s\n", order[i], w, c, med(v[order[i], 4]),
			qw ? sprintf("%.2f", w / qw) : "-", qc ? sprintf("%.2f", c / qc) : "-"
	}
}' "$tmp/res"
exit $fail
