#!/bin/bash
# Guest speed under each memory mode (issue #3, bench 4: after devirtualize
# within 1% of never-virtualized). Boots the test kernel with `forever
# report=1` and, over the monitor socket, samples its verify+rewrite rounds
# per second (stats: guest_round) for SECONDS in each mode:
#   never-virtualized (pass-through from boot, CYCLES samples), virtualized (identity P2M,
#   after `virtualize`), scrambled (after `scramble SEED`: every page moved),
#   devirtualized (after `devirtualize`: pass-through again),
# the last three repeated for CYCLES; prints how long each switch took and
# each mode's median rate relative to never-virtualized, per second of wall
# time and per second the vCPU thread ran (its schedstat: what the host's
# other load takes from the guest drops out, so smaller differences show). The guest must then
# finish with PASS (no page lost). Needs /dev/kvm (see
# bench/nested-guest-speed.sh for hosts without one).
# Usage: bench/guest-speed.sh [SECONDS [CYCLES]]   (default 10 2)
# Environment: VMSWITCH, GUEST, SPEED_MEMORY (default 128M), SPEED_PAGES
# (work area, default 1024), SPEED_CPUS (default 1), SPEED_TIMEOUT (s per
# monitor step, default 300), SPEED_MARKS (see mark()), SPEED_CHASE=1 (the
# latency-bound pointer chase instead of the streaming verify+rewrite).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
cycles=${2:-2}
vmswitch=${VMSWITCH:-$top/vmswitch}
guest=${GUEST:-$top/guest/vmswitch-guest}
limit=${SPEED_TIMEOUT:-300}
name=guest-speed
. "$top/bench/guest-common.sh"

# mon CMD...: one monitor command, reply on stdout; fails on an error reply.
mon() { timeout "$limit" "$vmswitch" --connect "$sock" "$@" 2>"$tmp/mon.err"; }
round() { mon stats | sed -n 's/^guest_round: //p'; }

"$vmswitch" --kernel "$guest" --memory "${SPEED_MEMORY:-128M}" --cpus "${SPEED_CPUS:-1}" \
	--append "forever report=1 pages=${SPEED_PAGES:-1024}${SPEED_CHASE:+ chase=1}" \
	--serial "file:$tmp/serial" --monitor "unix:$sock" </dev/null >"$tmp/vmm.log" 2>&1 &
vmm_pid=$!

# Wait for the first report (the socket and the guest both need to be up).
end=$(($(now_us) + limit * 1000000))
until r=$(round 2>/dev/null) && [ -n "$r" ]; do
	kill -0 $vmm_pid 2>/dev/null || die "vmswitch exited before the guest reported"
	[ "$(now_us)" -lt $end ] || die "no guest report within ${limit}s"
	sleep 0.2
done

# The vCPU thread (named vcpu0): its time on a CPU, in ns.
vcpu_stat=
for t in /proc/$vmm_pid/task/*; do
	[ "$(cat "$t/comm" 2>/dev/null)" = vcpu0 ] && vcpu_stat=$t/schedstat
done
[ -n "$vcpu_stat" ] || die "no vcpu0 thread in vmswitch"
cpu_ns() { cut -d' ' -f1 "$vcpu_stat"; }

printf "%-20s %10s %10s %12s %12s %10s\n" phase rounds seconds rounds/s rounds/cpu-s switch-ms
# With SPEED_MARKS set, sample boundaries are also printed as @@mark ...@@
# lines for bench/nested-guest-speed.sh, which reads the outer QEMU's CPU
# time at each: rounds per host CPU-second do not depend on the host's load.
mark() { [ -z "${SPEED_MARKS:-}" ] || echo "@@mark $*@@"; }
# sample LABEL SWITCH-MS: rounds per second over $secs seconds.
sample() {
	local r0 r1 t0 t1 c0 c1
	r0=$(round) && t0=$(now_us) && c0=$(cpu_ns) || die "stats failed: $(cat "$tmp/mon.err")"
	mark begin "$1"
	sleep "$secs"
	r1=$(round) && t1=$(now_us) && c1=$(cpu_ns) || die "stats failed: $(cat "$tmp/mon.err")"
	mark end "$1" $((r1 - r0))
	awk -v l="$1" -v r=$((r1 - r0)) -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v s="$2" \
		'BEGIN { printf "%-20s %10d %10.2f %12.2f %12.2f %10s\n", l, r, t / 1e6, r / (t / 1e6), r / (c / 1e9), s }'
	awk -v l="$1" -v r=$((r1 - r0)) -v t=$((t1 - t0)) -v c=$((c1 - c0)) \
		'BEGIN { print l, r / (t / 1e6), r / (c / 1e9) }' >>"$tmp/res"
}
# switch CMD...: run a monitor command, print its wall time in ms.
switch() {
	local t0 t1
	t0=$(now_us)
	mon "$@" >/dev/null || die "'$*' failed: $(cat "$tmp/mon.err")"
	t1=$(now_us)
	echo $(((t1 - t0) / 1000))
}

# As many baseline samples as later ones per mode: the host's load drifts.
for _ in $(seq 1 "$cycles"); do sample never-virtualized -; done
for c in $(seq 1 "$cycles"); do
	ms=$(switch virtualize) || exit 1; sample virtualized "$ms"
	ms=$(switch scramble "$c") || exit 1; sample scrambled "$ms"
	ms=$(switch devirtualize) || exit 1; sample devirtualized "$ms"
done
mon info mode | sed -n 's/^mode: /final mode: /p'
mon stats | grep -E '^(guest_max_gap_tsc|exits_int3_fixup|exits_fwait_fixup):'

# Finish: the guest parks, checks every page and must say PASS.
guest_finish
grep '^PASS' "$tmp/serial"

for col in 2 3; do
[ $col = 2 ] && what="rounds/s" || what="rounds per vCPU-second"
echo
echo "median $what per mode over $secs s samples (min-max), relative to never-virtualized:"
awk -v col=$col '
function med(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } v[$1] = v[$1] " " $col }
function lo(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
END { base = med(v["never-virtualized"])
	for (i = 1; i <= k; i++) { m = med(v[order[i]])
		printf "%-20s %10.2f (%.2f-%.2f) %8.3f (%+.1f%%)\n", order[i], m, lo(v[order[i]]),
			hi(v[order[i]]), m / base, (m / base - 1) * 100 } }
' "$tmp/res"
done
