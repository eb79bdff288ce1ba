#!/bin/bash
# The test kernel (guest/vmswitch-guest) boots under plain QEMU through
# SeaBIOS and QEMU's linuxboot ROM, i.e. through its 16-bit setup and
# 32-bit entry: proof that the image follows the x86 boot protocol
# independently of our own loader. Checks, with 1 and 2 CPUs:
#   PASS line, exit status 1 (isa-debug-exit: (0 << 1) | 1), and the
#   checksum against guest/pattern-sum (vmswitch/pattern.h on the host);
#   corrupt=1 -> FAIL, status 3; fault=1 -> EXCEPTION vector=14, status 5;
#   forever with stop=N (stands in for the VMM's "finish") -> PASS;
#   vmswitch's DTB (guest/mkdtb, loaded by -device loader, the image's
#   setup_data pointed at it): CPU count from /cpus, hypercall ports open
#   to CPL3 (HC_REPORT reads all-ones from QEMU's empty port: -1).
# Environment (from make check): QEMU, top_builddir. SKIP (77) without QEMU.
set -u

if [ -z "${QEMU:-}" ]; then
	echo "SKIP: QEMU is empty (configure found no qemu-system-x86_64)"
	exit 77
fi
B=${top_builddir:-.}
IMG=$B/guest/vmswitch-guest
SUM=$B/guest/pattern-sum
MKDTB=$B/guest/mkdtb
for f in "$IMG" "$SUM" "$MKDTB"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "FAIL: $f is not built"; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/test_guest_qemu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FIRST_PFN=0x580     # (HIGH_PA + WORK_OFFSET) / 4096, guest/layout.h
failures=0

fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# Little-endian field of the image: offset, size in bytes.
field() {
	od -An -tx1 -j "$1" -N "$2" "$IMG" | tr -d ' \n' |
		sed 's/\(..\)/\1 /g' | awk '{for (i = NF; i > 0; i--) printf "%s", $i; print ""}'
}

check_header() {
	[ "$(field 0x1fe 2)" = aa55 ] || fail "boot_flag is $(field 0x1fe 2)"
	[ "$(field 0x202 4)" = 53726448 ] || fail "no HdrS magic"
	[ "$(field 0x206 2)" = 020f ] || fail "protocol version $(field 0x206 2)"
	[ "$(field 0x236 2)" = 0001 ] || fail "xloadflags $(field 0x236 2) (want XLF_KERNEL_64)"
	[ "$(field 0x258 8)" = 0000000000100000 ] || fail "pref_address $(field 0x258 8)"
	echo "header: setup_sects=$(field 0x1f1 1) syssize=0x$(field 0x1f4 4)" \
	     "init_size=0x$(field 0x260 4) code32_start=0x$(field 0x214 4)"
}

# run NAME CPUS "APPEND" [QEMU ARGS...]: boots once; sets $status and $log.
run() {
	local name=$1 cpus=$2 append=$3
	shift 3
	log=$WORK/$name.log
	timeout 40 "$QEMU" -accel tcg -M pc -m 256 -smp "$cpus" -nographic -no-reboot \
		-serial stdio -monitor none -device isa-debug-exit,iobase=0x508,iosize=1 \
		-kernel "$IMG" -append "$append" "$@" >"$log" 2>&1 </dev/null
	status=$?
	tr -d '\r' <"$log" >"$log.txt" && mv "$log.txt" "$log"
}

show() {
	echo "--- $1 (exit status $status), last lines:"
	tail -n 12 "$log"
}

# expect_pass NAME CPUS "APPEND" SEED PAGES [QEMU ARGS...]: PASS, status 1,
# right checksum.
expect_pass() {
	local line rounds sum want
	run "$1" "$2" "$3" "${@:6}"
	line=$(grep -m1 '^PASS ' "$log")
	if [ "$status" -ne 1 ] || [ -z "$line" ]; then
		fail "$1: want PASS and exit status 1"
		show "$1"
		return
	fi
	rounds=$(sed -n 's/.* rounds=\([0-9]*\) .*/\1/p' <<<"$line")
	sum=$(sed -n 's/.* checksum=\(0x[0-9a-f]*\).*/\1/p' <<<"$line")
	want=$("$SUM" "$4" "$FIRST_PFN" "$5" "$rounds")
	if [ "$sum" != "$want" ]; then
		fail "$1: checksum $sum, pattern.h says $want"
		show "$1"
		return
	fi
	echo "ok: $1: $line (cpus line: $(grep -m1 '^result' "$log"))"
}

# expect_status NAME CPUS "APPEND" STATUS REGEX
expect_status() {
	run "$1" "$2" "$3"
	if [ "$status" -ne "$4" ] || ! grep -q "$5" "$log"; then
		fail "$1: want exit status $4 and /$5/"
		show "$1"
		return
	fi
	echo "ok: $1: $(grep -m1 "$5" "$log")"
}

check_header
expect_pass one-cpu 1 "pages=256 rounds=4 seed=7 report=2" 7 256
expect_pass two-cpus 2 "pages=256 rounds=4 seed=9 report=2 cpus=2" 9 256
expect_pass forever-stop 2 "pages=128 seed=3 cpus=2 forever report=1 stop=3" 3 128
expect_status corrupt 1 "pages=64 rounds=2 corrupt=1" 3 '^FAIL rounds=2 pages=64 mismatches=1 '
expect_status fault 1 "pages=64 rounds=2 fault=1" 5 '^EXCEPTION vector=14 '

# vmswitch's DTB at 3 MiB (between the kernel's init_size and HIGH_PA).
DTB_AT=0x300000
if "$MKDTB" "$DTB_AT" 2 256 "$WORK/dtb.bin"; then
	cp "$IMG" "$WORK/img"
	printf '\x00\x00\x30\x00\x00\x00\x00\x00' |
		dd of="$WORK/img" bs=1 seek=$((0x250)) conv=notrunc status=none
	IMG=$WORK/img expect_pass dtb 2 "pages=96 rounds=3 seed=5 report=1" 5 96 \
		-device loader,file="$WORK/dtb.bin",addr=$DTB_AT,force-raw=on
	for want in '^dtb: vmswitch=1 hcall-port=0x500 cpus=2 ' ' cpus=2 forever' \
		    '^cpu1 up' '^HC_REPORT failed: -1'; do
		grep -q -- "$want" "$log" || { fail "dtb: no /$want/"; show dtb; }
	done
else
	fail "mkdtb failed"
fi
if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all checks passed"
