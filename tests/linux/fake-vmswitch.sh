#!/bin/bash
# fake-vmswitch.sh: stands in for vmswitch so check-linux.sh's boot and switch
# logic (phases 4-5) can be run on a host without KVM (LINUX_FAKE=1).
# "Booting" extracts /init from the --initrd and runs it on the host with the
# lw_* words of --append; `--connect SOCK CMD` answers the monitor commands
# check-linux.sh uses, in vmswitch's formats, reading init's status page from
# /proc/PID/mem. FAKE_CORRUPT=1: `scramble` zeroes work-area page 7, as a
# lost copy would, so the self-test can show check-linux.sh fails then.
set -u

STATUS=6291456          # 0x600000, status.h
WORK=$((0x601000))      # .bss of init (init.ld)

connect() { # SOCK CMD...
	local dir pid; dir=$(dirname "$1"); shift
	pid=$(cat "$dir/fake.pid") || { echo "error: no VM" >&2; exit 2; }
	case "$*" in
	"x/8g 0x600000")
		dd if="/proc/$pid/mem" bs=4096 skip=$((STATUS / 4096)) count=1 status=none |
			od -An -tx8 -w16 -N64 |
			awk -v a=$STATUS '{ printf "0x%016x: 0x%s 0x%s\n", a + (NR - 1) * 16, $1, $2 }' ;;
	"info vcpus")
		echo "vcpu 0: running rip=0x400150 cr3=0x2a1b000 cr0=0x80050033 cr4=0x3506f0 efer=0xd01 paging=4-level" ;;
	virtualize) echo virtualized >"$dir/fake.mode"; echo 0 >"$dir/fake.remapped" ;;
	"info mode") echo "mode: $(cat "$dir/fake.mode" 2>/dev/null || echo passthrough)" ;;
	scramble\ *)
		echo 131000 >"$dir/fake.remapped"
		if [ "${FAKE_CORRUPT:-0}" = 1 ]; then
			head -c 4096 /dev/zero |
				dd of="/proc/$pid/mem" bs=4096 seek=$(((WORK + 7 * 4096) / 4096)) conv=notrunc status=none
		fi ;;
	"info p2m 0 1")
		local r; r=$(cat "$dir/fake.remapped" 2>/dev/null || echo 0)
		echo "pfn 0x0 -> mfn 0x0 (identity)"
		echo "summary: 131072 pages, $((131072 - r)) identity, $r remapped, 0 shared frames, 16384 free frames" ;;
	devirtualize) echo passthrough >"$dir/fake.mode"; echo 0 >"$dir/fake.remapped" ;;
	"info memory") echo "mappings: 1"; echo "mode: $(cat "$dir/fake.mode")" ;;
	stats) printf 'skipped: 100\ndirect: 130000\nindirect: 900\nlongest_stall: 0.000\n' ;;
	quit) touch "$dir/fake.quit" ;;
	*) echo "error: fake-vmswitch: unknown command: $*" >&2; exit 1 ;;
	esac
}

boot() {
	local initrd="" append="" serial="" sock=""
	while [ $# -gt 0 ]; do
		case $1 in
		--initrd) initrd=$2; shift ;;
		--append) append=$2; shift ;;
		--serial) serial=${2#file:}; shift ;;
		--monitor) sock=${2#unix:}; shift ;;
		esac
		shift
	done
	local dir; dir=$(dirname "$sock")
	gzip -dc "$initrd" | (cd "$dir" && cpio -i --quiet init) || { echo "fake: no /init in $initrd"; exit 2; }
	local env=() w
	for w in $append; do case $w in lw_*=*) env+=("$w") ;; esac; done
	env -i "${env[@]}" "$dir/init" &
	local ipid=$!
	trap 'kill $ipid 2>/dev/null' EXIT
	echo "$ipid" >"$dir/fake.pid"
	echo "[    0.000000] fake-vmswitch: $append" >"$serial"
	echo "[    1.000000] Run /init as init process" >>"$serial"
	: >"$sock"
	while [ ! -e "$dir/fake.quit" ]; do
		kill -0 "$ipid" 2>/dev/null || exit 125
		sleep 0.2
	done
	exit 0
}

if [ "${1:-}" = --connect ]; then
	shift
	connect "$@"
else
	boot "$@"
fi
