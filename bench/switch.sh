#!/bin/bash
# The memory switch under a running guest (issue #3, benches 1-3): for each
# RAM size, the test kernel verifies and rewrites its work area at CPL3 the
# whole time (`forever report=1`) while the monitor socket drives
#   virtualize; devirtualize            (nothing to move)
#   virtualize; scramble (all RAM); devirtualize
# and reads back: each command's own time, pages moved per second, the
# longest stall vmswitch measured (a vCPU pause, a write-protected page, a
# demand fault from when it was read until served, or a chunk's unmapping),
# and the longest gap the guest itself saw between two page iterations
# (rdtsc, reported per round; `stats clear` starts each window), with how
# many of its gaps were 1 ms or more and their sum (the longest alone is one
# sample of a noisy host). A quiet
# sample with no switching first gives the gap floor (host scheduling,
# timer interrupts). The guest must end with PASS: no byte lost.
# Needs /dev/kvm. Usage: bench/switch.sh [SIZES...]   (default 256M 1G 4G)
# Environment: VMSWITCH, GUEST, SWITCH_PAGES (work area, default 16384 =
# 64 MiB), SWITCH_CPUS (default 1), SWITCH_PROTECT (auto|uffd|pause),
# SWITCH_HUGEPAGES (auto|off), SWITCH_DEVIRT (guest-first: the devirtualize
# after the scramble unmaps the chunks the guest touched last),
# SWITCH_SHARE (N: after the scramble, share N pairs of the never-written
# pages at the top of RAM; devirtualize then splits them first),
# SWITCH_TIMEOUT (s per monitor step, default 600), SWITCH_VERBOSE=1 (each
# devirtualize's reply and the pause counters).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
vmswitch=${VMSWITCH:-$top/vmswitch}
guest=${GUEST:-$top/guest/vmswitch-guest}
limit=${SWITCH_TIMEOUT:-600}
pages=${SWITCH_PAGES:-16384}
[ $# -gt 0 ] && sizes=("$@") || sizes=(256M 1G 4G)
name=switch
. "$top/bench/guest-common.sh"
mon() { timeout "$limit" "$vmswitch" --connect "$sock" "$@" 2>"$tmp/mon.err" ||
	die "'$*' failed: $(cat "$tmp/mon.err")"; }
stat() { mon stats | sed -n "s/^$1: //p"; }
# field OUTPUT LABEL: the number after "LABEL: " in a command's reply.
field() { echo "$1" | sed -n "s/^$2: \([0-9.]*\).*/\1/p"; }
# Two more guest rounds: every page passed through the loop since.
two_rounds() {
	local r0; r0=$(stat guest_round)
	local end=$(($(now_us) + limit * 1000000))
	until [ "$(stat guest_round)" -ge $((r0 + 2)) ]; do
		[ "$(now_us)" -lt $end ] || die "the guest stopped making rounds"
		sleep 0.05
	done
}

# share_top N: N pairs of pages at the top of RAM share a frame (the test
# kernel never writes there, so they hold the same zeros).
share_top() {
	[ "$1" -gt 0 ] || return 0
	local end; end=$(mon info memory | sed -n 's/^region [0-9]*: gpa 0x[0-9a-f]*-\(0x[0-9a-f]*\).*/\1/p' | tail -1)
	local top=$((end / 4096))
	for i in $(seq 1 "$1"); do mon share $((top - 2 * i)) $((top - 2 * i + 1)) >/dev/null; done
}

boot() { # SIZE
	rm -f "$sock"
	"$vmswitch" --kernel "$guest" --memory "$1" --cpus "${SWITCH_CPUS:-1}" \
		${SWITCH_PROTECT:+--protect "$SWITCH_PROTECT"} \
		${SWITCH_HUGEPAGES:+--hugepages "$SWITCH_HUGEPAGES"} \
		--append "forever report=1 pages=$pages" --serial "file:$tmp/serial" \
		--monitor "unix:$sock" </dev/null >"$tmp/vmm.log" 2>&1 &
	vmm_pid=$!
	local end=$(($(now_us) + limit * 1000000)) r=
	until r=$("$vmswitch" --connect "$sock" stats 2>/dev/null | sed -n 's/^guest_round: //p') &&
		[ -n "$r" ] && [ "$r" -ge 2 ]; do
		kill -0 $vmm_pid 2>/dev/null || die "vmswitch exited before the guest reported"
		[ "$(now_us)" -lt $end ] || die "no guest report within ${limit}s"
		sleep 0.2
	done
}

printf "%-6s %9s %9s %9s %10s %9s %10s %9s %9s %9s %9s %9s %9s %9s\n" RAM quiet-gap virt-ms \
	devirt0-ms scramble-s moved devirt-s pages/s stall-ms gap-ms huge-s remap-p/s \
	'gaps>1ms' in-ms
for size in "${sizes[@]}"; do
	boot "$size"
	mon stats clear >/dev/null; two_rounds
	quiet=$(stat guest_gap_peak_us)
	v=$(field "$(mon virtualize)" took)
	d0=$(field "$(mon devirtualize)" took)
	mon virtualize >/dev/null
	# Pages devirtualize must bring home: every page off its own frame.
	t0=$(now_us); moved=$(mon scramble 1 | sed -n 's/^remapped pages: \([0-9]*\).*/\1/p')
	t1=$(now_us)
	share_top "${SWITCH_SHARE:-0}"
	two_rounds
	mon stats clear >/dev/null
	out=$(mon devirtualize ${SWITCH_DEVIRT:-})
	two_rounds
	gap=$(stat guest_gap_peak_us) long=$(stat guest_long_gaps) lost=$(stat guest_long_gap_us)
	took=$(field "$out" took); stall=$(field "$out" "longest stall")
	huge=$(field "$out" "restoring them took")
	[ -z "${SWITCH_VERBOSE:-}" ] || { echo "$out"; mon stats | grep -E "^(guest_|pause_|vcpu_)"; }
	guest_finish
	awk -v s="$size" -v q="$quiet" -v v="$v" -v d0="$d0" -v sc=$(((t1 - t0) / 1000)) \
		-v mv="$moved" -v t="$took" -v st="$stall" -v g="$gap" -v h="${huge:-0}" \
		-v n="${long:--}" -v lost="${lost:-0}" 'BEGIN {
		printf "%-6s %9.2f %9.3f %9.3f %10.2f %9d %10.3f %9.0f %9.3f %9.2f %9.3f %9.0f %9s %9.1f\n", s, q / 1e3, v,
			d0, sc / 1e3, mv, t / 1e3, mv / (t / 1e3), st, g / 1e3, h / 1e3, mv / ((t - h) / 1e3),
			n, lost / 1e3 }'
done
echo "(gaps are the guest's own: longest time between two page iterations; quiet = no switching;"
echo " huge-s: the part of devirt-s spent collapsing 2 MiB pages back; remap-p/s: pages/s without it;"
echo " gaps>1ms: how many of the guest's gaps in the devirtualize window were 1 ms or more, in-ms: their sum)"
