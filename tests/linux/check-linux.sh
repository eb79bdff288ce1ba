#!/bin/bash
# make check-linux: Debian's stock kernel under vmswitch, with memory
# virtualization attached and detached live under a Linux workload.
#
# Before booting (runs on any host, KVM or not):
#   1. tests/linux/init has no instruction that enters the kernel (syscall,
#      int N, ...) and its status page is at 0x600000;
#   2. it runs on this host (it needs no syscall) and its status page, read
#      from /proc/PID/mem, shows rounds advancing, 0 mismatches, the checksum
#      guest/pattern-sum computes, and a mismatch once we corrupt a page;
#   3. the initramfs builds and `cpio -t` lists it, /init intact.
# Then, only where /dev/kvm is usable (else exit 77, SKIP):
#   4. fetch-kernel.sh (apt-get download) and boot it with that initramfs;
#   5. wait for init's status page through the monitor (`x/8g`, composed
#      translation with vCPU 0's CR3), LINUX_ROUNDS rounds of virtualize,
#      scramble, devirtualize; each round must see the guest's round advance
#      by two full passes while scrambled and again after, mismatches 0,
#      P2M identity and one mapping after devirtualize; quit.
# Knobs: LINUX_FLAVOUR=generic|cloud LINUX_ROUNDS=5 LINUX_PAGES=2000
# LINUX_SEED=11 LINUX_MEMORY=512M LINUX_BOOT_TIMEOUT (s; 900 on kvm_pvm, 180
# elsewhere) LINUX_APPEND (extra kernel options) LINUX_KERNEL (a bzImage to
# use instead of Debian's). Logs of the last boot: tests/linux/work/last-run/.
# LINUX_FAKE=1: self-test of phases 4-5 without KVM, fake-vmswitch.sh playing
# vmswitch with init running on this host (`make check-linux-selftest`).
set -u
shopt -s lastpipe   # parse_words sets S at the end of pipelines
here=$(cd "$(dirname "$0")" && pwd)
top=${top_builddir:-$(cd "$here/../.." && pwd)}
vms=$top/vmswitch
fake=${LINUX_FAKE:-0}
[ "$fake" = 1 ] && vms=$here/fake-vmswitch.sh
init=$top/tests/linux/init
psum=$top/guest/pattern-sum
work=${LINUX_WORK:-$top/tests/linux/work}
STATUS=0x600000                      # status.h: LW_STATUS_ADDR
MAGIC=0x314b52574c4d5356             # status.h: LW_MAGIC
ROUNDS=${LINUX_ROUNDS:-5} PAGES=${LINUX_PAGES:-2000} SEED=${LINUX_SEED:-11}
ulimit -c 0

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
run=
fail() { echo "FAIL: $*"; [ -z "$run" ] || echo "logs: $run"; exit 1; }
say() { echo "check-linux: $*"; }

# ---- 1. syscall-free init ------------------------------------------------
# Anything that traps into the guest kernel: it would kill pid 1 on kvm_pvm
# hosts (or, for hlt/in/out/cli/sti at CPL3, anywhere).
KERNEL_ENTRY='^[[:space:]]*[0-9a-f]+:[[:space:]]+(syscall|sysenter|sysexit|sysret[lq]?|int|int1|int3|into|icebp|ud0|ud1|ud2|hlt|in|out|ins[bwl]?|outs[bwl]?|cli|sti|iret[lqw]?|lcall|ljmp)([[:space:]]|$)'

check_init_binary() {
	[ -x "$init" ] || fail "$init missing (make tests/linux/init)"
	[ -x "$psum" ] || fail "$psum missing (make guest/pattern-sum)"
	command -v objdump >/dev/null || fail "objdump not found (binutils)"
	# The filter must catch what it looks for, or this check proves nothing.
	printf '  401000:\tsyscall\n  401002:\tint    $0x80\n  401004:\tint3\n  401005:\tmov    %%eax,%%ebx\n' |
		grep -cE "$KERNEL_ENTRY" | grep -qx 3 || fail "the syscall filter does not match its own samples"
	local dis syms phdrs bad n
	dis=$(objdump -d --no-show-raw-insn "$init") || fail "objdump -d $init failed"
	phdrs=$(readelf -l "$init") || fail "readelf -l $init failed"
	syms=$(nm "$init") || fail "nm $init failed"
	n=$(echo "$dis" | grep -cE '^[[:space:]]*[0-9a-f]+:')
	[ "$n" -gt 100 ] || fail "objdump shows only $n instructions in $init"
	bad=$(echo "$dis" | grep -E "$KERNEL_ENTRY")
	[ -z "$bad" ] || fail "init has instructions that enter the kernel:
$bad"
	echo "$phdrs" | grep -q INTERP && fail "init is dynamically linked"
	echo "$syms" | grep -qi "^0*600000 [dDbB] lw_status$" ||
		fail "lw_status is not at $STATUS: $(echo "$syms" | grep lw_status)"
	say "init: $n instructions, none enters the kernel; status page at $STATUS"
}

# ---- 2. init on this host ------------------------------------------------
# S[0..7] <- the status page (status.h), from whatever read_status_cmd prints
# as hex words; returns 1 when unreadable.
S=()
parse_words() {
	local words; words=$(awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^0x[0-9a-f]+$/) printf "%s ", $i }')
	read -r -a S <<<"$words"
	[ ${#S[@]} -eq 8 ]
}
proc_status() { # PID
	dd if="/proc/$1/mem" bs=4096 skip=$((STATUS / 4096)) count=1 status=none 2>/dev/null |
		od -An -tx8 -w64 -N64 | awk '{ printf "-"; for (i = 1; i <= NF; i++) printf " 0x%s", $i; print "" }' |
		parse_words
}

# check_sample LABEL: the sample in S is sane; a torn one (round != round_end)
# is not checked for its checksum. Sets CHECKED when the checksum was compared.
CHECKED=0
check_sample() {
	[ "${S[0]}" = "$MAGIC" ] || fail "$1: status magic ${S[0]}, want $MAGIC"
	[ $((S[2])) -eq "$2" ] || fail "$1: status says $((S[2])) pages, want $2"
	[ $((S[6])) -eq "$3" ] || fail "$1: status says seed $((S[6])), want $3"
	[ $((S[3])) -eq 0 ] || fail "$1: $((S[3])) mismatched words, last in page $((S[5])) (round $((S[1])))"
	CHECKED=0
	if [ "${S[1]}" = "${S[7]}" ] && [ $((S[1])) -ge 1 ]; then
		local want; want=$("$psum" "$3" 0 "$2" $((S[1] - 1)))
		[ "$want" = "${S[4]}" ] ||
			fail "$1: checksum ${S[4]} after round $((S[1])), pattern-sum says $want"
		CHECKED=1
	fi
}

check_init_on_host() {
	if [ "$(uname -m)" != x86_64 ]; then say "init on this host: skipped (not x86-64)"; return; fi
	local pages=64 seed=5 pid r0 sum=0
	env -i lw_pages=$pages lw_seed=$seed "$init" & pid=$!
	pids+=("$pid")
	for _ in $(seq 1 100); do proc_status "$pid" && [ $((S[1])) -ge 3 ] && break; sleep 0.05; done
	proc_status "$pid" || fail "cannot read init's status page from /proc/$pid/mem"
	for _ in $(seq 1 20); do
		proc_status "$pid" || fail "status page unreadable"
		check_sample "init on host" $pages $seed
		sum=$((sum + CHECKED))
	done
	[ $sum -gt 0 ] || fail "init on host: no consistent status sample in 20 reads"
	r0=$((S[1]))
	# Corrupt page 5 of the work area (.bss at 0x601000): the next pass must see it.
	head -c 4096 /dev/zero | dd of="/proc/$pid/mem" bs=4096 seek=$(((0x601000 + 5 * 4096) / 4096)) \
		conv=notrunc status=none 2>/dev/null ||
		fail "cannot write /proc/$pid/mem to corrupt a page"
	sleep 0.2
	proc_status "$pid" || fail "status page unreadable after corruption"
	[ $((S[3])) -gt 0 ] && [ $((S[5])) -eq 5 ] ||
		fail "init did not notice a zeroed page: mismatches $((S[3])), last_bad $((S[5]))"
	say "init on host: $pages pages, round $r0 after 20 reads, $sum of them" \
		"checksum-verified; a zeroed page 5 gave $((S[3])) mismatches in page $((S[5]))"
	kill "$pid"; wait "$pid" 2>/dev/null
}

# ---- 3. initramfs --------------------------------------------------------
check_initramfs() { # OUT
	bash "$here/mkinitramfs.sh" "$init" "$1" || fail "mkinitramfs.sh failed"
	local list; list=$(gzip -dc "$1" | cpio -t --quiet) || fail "cpio -t cannot read $1"
	echo "$list" | grep -qx init || fail "no /init in $1: $list"
	gzip -dc "$1" | cpio -i --quiet --to-stdout init | cmp -s - "$init" ||
		fail "/init in $1 differs from $init"
	HAVE_BB=no
	echo "$list" | grep -qx bb-init && echo "$list" | grep -qx bin/busybox && HAVE_BB=yes
	say "initramfs: $(echo $list) ($(stat -c %s "$1") bytes); busybox variant: $HAVE_BB"
}

check_init_binary
check_init_on_host
mkdir -p "$work" || fail "cannot create $work"
initrd=$work/initramfs.gz
check_initramfs "$initrd"

# ---- 4. boot -------------------------------------------------------------
if [ "$fake" != 1 ] && { [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ] ||
	! (exec 3<>/dev/kvm) 2>/dev/null; }; then
	echo "SKIP: /dev/kvm is not usable on this host: Linux cannot be booted here (checks 1-3 passed)"
	exit 77
fi
[ -x "$vms" ] || fail "$vms missing (make vmswitch)"
pvm=no; [ -d /sys/module/kvm_pvm ] && pvm=yes
BOOT_TIMEOUT=${LINUX_BOOT_TIMEOUT:-$([ $pvm = yes ] && echo 900 || echo 180)}

t=$(now)
[ "$fake" = 1 ] && LINUX_KERNEL=${LINUX_KERNEL:-$initrd}
kernel=${LINUX_KERNEL:-$(bash "$here/fetch-kernel.sh" "${LINUX_FLAVOUR:-generic}" "$work")} ||
	fail "no kernel"
say "kernel: $kernel (fetch ${LINUX_KERNEL:+skipped, }$(secs "$t") s)"

run=$work/last-run
rm -rf "$run"; mkdir -p "$run"
sock=$run/monitor.sock serial=$run/serial.log
append="console=ttyS0 panic=-1 lw_pages=$PAGES lw_seed=$SEED ${LINUX_APPEND:-}"
bb=no
if [ $HAVE_BB = yes ] && [ $pvm = no ]; then append="$append rdinit=/bb-init"; bb=yes; fi
say "host kvm_pvm: $pvm; boot timeout ${BOOT_TIMEOUT} s; append: $append"

t_boot=$(now)
timeout $((BOOT_TIMEOUT + 600 + ROUNDS * 300)) "$vms" --kernel "$kernel" --initrd "$initrd" \
	--append "$append" --memory "${LINUX_MEMORY:-512M}" --cpus 1 \
	--monitor "unix:$sock" --serial "file:$serial" </dev/null >"$run/vmswitch.log" 2>&1 &
vpid=$!
pids+=("$vpid")

died() {
	wait "$vpid"; local rc=$?
	echo "--- last serial lines ($serial):"; tail -n 25 "$serial" 2>/dev/null
	echo "--- vmswitch output:"; tail -n 15 "$run/vmswitch.log"
	fail "vmswitch exited with status $rc $1"
}
alive() { kill -0 "$vpid" 2>/dev/null; }
mon() { "$vms" --connect "$sock" "$@"; }
read_status() { local out; out=$(mon x/8g $STATUS 2>/dev/null) && echo "$out" | parse_words; }

# wait_for SECONDS WHAT CONDITION...: poll CONDITION every second.
wait_for() {
	local limit=$1 what=$2 start; shift 2; start=$(now)
	while ! "$@"; do
		alive || died "while waiting for $what"
		[ "$(secs "$start" | cut -d. -f1)" -lt "$limit" ] ||
			{ tail -n 25 "$serial" 2>/dev/null; fail "no $what after $limit s"; }
		sleep 1
	done
}
init_ran() { grep -q "Run /init\|Run /bb-init" "$serial" 2>/dev/null || { read_status && [ "${S[0]}" = "$MAGIC" ]; }; }
status_magic() { read_status && [ "${S[0]}" = "$MAGIC" ]; }
round_at_least() { read_status && [ "${S[0]}" = "$MAGIC" ] && [ $((S[1])) -ge "$1" ]; }

wait_for "$BOOT_TIMEOUT" "'Run /init' on the console" init_ran
say "phase boot: init started after $(secs "$t_boot") s"
t=$(now)
wait_for 120 "status page (magic $MAGIC at $STATUS)" status_magic
wait_for 600 "finished fill of $PAGES pages (round >= 1)" round_at_least 1
check_sample "after boot" "$PAGES" "$SEED"
say "phase fill: $PAGES pages touched and round 1 done $(secs "$t") s after init started"
cr3=$(mon info vcpus | sed -n 's/^vcpu 0: .*cr3=\(0x[0-9a-f]*\).*paging=\([^ ]*\).*/\1 (\2)/p')
[ -n "$cr3" ] || fail "no CR3 in 'info vcpus': $(mon info vcpus 2>&1)"
say "vcpu 0 cr3 $cr3; status: round $((S[1])), mismatches $((S[3]))"
if [ $bb = yes ]; then
	grep -q "BUSYBOX-OK" "$serial" || fail "rdinit=/bb-init: no BUSYBOX-OK on the console"
	say "busybox: $(grep -m1 BUSYBOX-OK "$serial" | tr -d '\r')"
fi

# ---- 5. live switches under the workload ---------------------------------
checked=0 samples=0 tv='' ts='' td=''
sample() { # LABEL: read the status page, check it, count checksum checks
	read_status || fail "$1: cannot read the status page through the monitor"
	check_sample "$1" "$PAGES" "$SEED"
	samples=$((samples + 1)) checked=$((checked + CHECKED))
}
timed() { # VAR CMD...: run a monitor command, its seconds in VAR
	local start; start=$(now)
	mon "${@:2}" >"$run/last-reply" 2>&1 || { cat "$run/last-reply"; alive || died "during ${*:2}"; fail "monitor: ${*:2}"; }
	printf -v "$1" %s "$(secs "$start")"
}
for r in $(seq 1 "$ROUNDS"); do
	sample "round $r start"; r0=$((S[1]))
	timed tv virtualize
	mon info mode | grep -q "mode: virtualized" || fail "round $r: not virtualized after virtualize"
	timed ts scramble "$r"
	remapped=$(mon info p2m 0 1 | sed -n 's/^summary: .* \([0-9]*\) remapped.*/\1/p')
	[ "${remapped:-0}" -gt 0 ] || fail "round $r: scramble remapped nothing"
	sample "round $r scrambled"; r1=$((S[1]))
	# Two more passes: one whole pass read every page from its new frame.
	t=$(now); wait_for 300 "guest progress while scrambled (round $((r1 + 2)))" round_at_least $((r1 + 2))
	tw=$(secs "$t")
	sample "round $r virtualized"
	timed td devirtualize
	sum=$(mon info p2m 0 1 | grep '^summary:')
	echo "$sum" | grep -q " 0 remapped, 0 shared" || fail "round $r: not identity after devirtualize: $sum"
	mon info memory | grep -q "^mappings: 1$" || fail "round $r: window not one mapping after devirtualize"
	sample "round $r devirtualized"; r2=$((S[1]))
	wait_for 300 "guest progress after devirtualize (round $((r2 + 2)))" round_at_least $((r2 + 2))
	sample "round $r end"
	say "round $r: virtualize ${tv}s, scramble ${ts}s ($remapped pages remapped)," \
		"2 guest passes ${tw}s, devirtualize ${td}s; guest round $r0 -> $((S[1])), mismatches $((S[3]))"
done
[ $((S[1])) -gt "$r0" ] || fail "the guest's round did not advance"
mon stats >"$run/stats" 2>&1 || fail "stats"
say "stats: $(grep -E '^(skipped|direct|indirect|bytes_copied|longest_stall)' "$run/stats" | tr '\n' ' ')"
say "$samples status samples, $checked with a consistent checksum equal to pattern-sum's"
[ $checked -gt 0 ] || say "note: no consistent sample; checksum not compared (round advanced during every read)"

t=$(now)
mon quit >/dev/null || fail "quit"
wait "$vpid"; rc=$?
pids=()
[ $rc -eq 0 ] || fail "vmswitch exited with $rc after quit"
say "phase quit: $(secs "$t") s; total $(secs "$t_boot") s since boot"
echo "PASS: Linux ($kernel) ran $ROUNDS live switch rounds, guest round $((S[1])), 0 mismatches"
