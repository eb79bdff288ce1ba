#!/bin/bash
# bench/guest-speed.sh inside the QEMU TCG guest of tests/nested/run.sh (a
# real but slow KVM), for hosts with no /dev/kvm. The rates measure TCG plus
# emulated nested paging, so only the ratios between modes mean anything.
# Other work on the host slows TCG by tens of percent from one sample to the
# next, so besides the guest's rounds per (wall) second this also prints
# rounds per CPU-second of the outer QEMU: the inner script marks each
# sample's start and end on stdout and we read QEMU's utime+stime then (the
# marks arrive through run.sh's relay, some tens of ms late at each end).
# Usage: bench/nested-guest-speed.sh [SECONDS [CYCLES]]   (default 10 2)
# Environment: NESTED_WORK (run.sh's cache), NESTED_TIMEOUT (s, default
# 600), SPEED_MEMORY (default 64M: every remap is slow under TCG),
# SPEED_PAGES, SPEED_CPUS.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
run=$top/tests/nested/run.sh
smp=${SPEED_CPUS:-1}
tmp=$(mktemp -d /tmp/nested-speed.XXXXXX) || exit 2
rpid=
cleanup() { [ -z "$rpid" ] || kill "$rpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkfifo "$tmp/out" || exit 2

bash "$run" --timeout "${NESTED_TIMEOUT:-600}" --mem 1024 --smp "$smp" \
	--file "$top/vmswitch" --file "$top/guest/vmswitch-guest" \
	--file "$top/bench/guest-speed.sh" --file "$top/bench/guest-common.sh" --file /bin/bash -- \
	env SPEED_MEMORY="${SPEED_MEMORY:-64M}" SPEED_PAGES="${SPEED_PAGES:-1024}" SPEED_CPUS="$smp" \
	SPEED_MARKS=1 bash -c 'echo advise >/sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
	exec bash "$1" "$2" "$3"' guest-speed "$top/bench/guest-speed.sh" "${1:-10}" "${2:-2}" \
	>"$tmp/out" &
rpid=$!

# The outer QEMU: the descendant of run.sh named qemu-system-*.
find_qemu() {
	local p pp comm
	for p in /proc/[0-9]*; do
		read -r _ comm _ pp _ <"$p/stat" 2>/dev/null || continue
		case $comm in "(qemu-system"*) ;; *) continue ;; esac
		while [ "$pp" -gt 1 ]; do
			[ "$pp" = "$rpid" ] && { echo "${p#/proc/}"; return; }
			read -r _ _ _ pp _ <"/proc/$pp/stat" 2>/dev/null || break
		done
	done
}
qpid=
cpu_ticks() { local f; read -r -a f <"/proc/$qpid/stat" && echo $((f[13] + f[14])); }

hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
while IFS= read -r line; do
	case $line in
	"@@mark begin "*)
		[ -n "$qpid" ] || qpid=$(find_qemu)
		c0=$(cpu_ticks) ;;
	"@@mark end "*)
		c1=$(cpu_ticks)
		read -r _ _ label rounds <<<"${line//@@/}"
		echo "$label $rounds $(((c1 - c0) * 1000 / hz))" >>"$tmp/cpu" ;;
	*) printf '%s\n' "$line" ;;
	esac
done <"$tmp/out"
wait $rpid; rc=$?
rpid=

[ -s "$tmp/cpu" ] || exit $rc
echo
echo "rounds per CPU-second of the outer QEMU (nested TCG), per sample:"
awk '{ printf "%-20s %8d rounds %8.2f CPU-s %10.2f rounds/CPU-s\n", $1, $2, $3 / 1000, $2 / ($3 / 1000) }' "$tmp/cpu"
echo "median per mode (min-max), relative to never-virtualized:"
awk '
function med(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
{ if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } v[$1] = v[$1] " " $2 / ($3 / 1000) }
END { base = med(v["never-virtualized"])
	for (i = 1; i <= k; i++) { m = med(v[order[i]])
		printf "%-20s %10.2f (%.2f-%.2f) %8.3f (%+.1f%%)\n", order[i], m, lo(v[order[i]]),
			hi(v[order[i]]), m / base, (m / base - 1) * 100 } }
' "$tmp/cpu"
exit $rc
