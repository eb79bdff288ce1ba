#!/bin/bash
# Run a command inside a QEMU TCG guest that has a working /dev/kvm.
#
# This host has no usable KVM (it is itself a kvm-pvm guest), but QEMU's TCG
# emulates AMD SVM with nested paging, so Debian's kvm_amd loads inside a TCG
# guest and gives a real (if slow) KVM to test vmswitch against.
#
# Usage: tests/nested/run.sh [options] -- COMMAND [ARG]...
#   --timeout S      kill the guest after S seconds (default 180)
#   --file PATH      copy a host file or directory into the guest at the same
#                    absolute path; ELF files bring their ldd libraries (repeatable)
#   --mem MB         guest memory (default 1024)
#   --smp N          guest CPUs (default 1)
#   --cpu MODEL      QEMU -cpu (default max; needs svm)
#   --kvm-param P    parameter for kvm_amd/kvm_intel, e.g. npt=0 (repeatable)
#   --append ARGS    extra guest kernel command line
#   --verbose        copy the guest console (kernel log) to stderr at the end
#   --keep           keep the per-run directory (printed on stderr)
# The command runs as root in the guest, in the host's current directory if
# that exists there (else /), with stdin from /dev/null; its stdout and stderr
# come back on ours (through two more serial ports).
# Exit status: the command's; 124 on timeout; 125 if the guest died without
# reporting; 77 if this host cannot run it (no QEMU, no kernel, no /dev/kvm
# in the guest); 2 on a usage or preparation error.
# Environment: QEMU (qemu-system-x86_64 binary), NESTED_WORK (cache directory,
# default tests/nested/work), NESTED_KERNEL_PKG (default: what
# linux-image-amd64 depends on).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=${NESTED_WORK:-$here/work}
qemu=${QEMU:-qemu-system-x86_64}

die() { echo "nested: $*" >&2; exit 2; }
skip() { echo "nested: SKIP: $*" >&2; exit 77; }

timeout_s=180 mem=1024 smp=1 cpu=max append='' verbose=0 keep=0
files=() kvm_params=()
while [ $# -gt 0 ]; do
	case $1 in --timeout|--file|--mem|--smp|--cpu|--kvm-param|--append)
		[ $# -ge 2 ] || die "$1 needs a value" ;;
	esac
	case $1 in
	--timeout) timeout_s=$2; shift 2 ;;
	--file) files+=("$2"); shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--cpu) cpu=$2; shift 2 ;;
	--kvm-param) kvm_params+=("$2"); shift 2 ;;
	--append) append=$2; shift 2 ;;
	--verbose) verbose=1; shift ;;
	--keep) keep=1; shift ;;
	--) shift; break ;;
	*) die "unknown option '$1' (usage: run.sh [options] -- COMMAND...)" ;;
	esac
done
[ $# -gt 0 ] || die "no command given (usage: run.sh [options] -- COMMAND...)"
command -v "$qemu" >/dev/null 2>&1 || skip "$qemu not found (apt-get install qemu-system-x86)"

# ---- preparation, cached in $work (several runs may start at once) ----

# Print the .ko path of module $1 (file names use - or _ for the same module).
find_module() {
	local n=${1//-/_}
	find "$kmods" \( -name "$n.ko" -o -name "${n//_/-}.ko" \) -print -quit
}

# Print module $1 and its dependencies, dependencies first, each once.
module_order() {
	local f deps d
	f=$(find_module "$1")
	[ -n "$f" ] || die "module $1 not found under $kmods"
	deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do module_order "$d"; done
	echo "$f"
}

prepare_kernel() {
	local pkg dl
	pkg=${NESTED_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)}
	[ -n "$pkg" ] || skip "cannot resolve linux-image-amd64 (run apt-get update)"
	dl=$work/dl
	rm -rf "$dl" "$work/kernel" "$work/busybox" && mkdir -p "$dl"
	(cd "$dl" && apt-get download "$pkg" busybox-static) >"$work/download.log" 2>&1 ||
		skip "apt-get download $pkg busybox-static failed: $(tail -n1 "$work/download.log")"
	dpkg-deb -x "$dl"/linux-image-*.deb "$work/kernel" || die "cannot unpack $pkg"
	dpkg-deb -x "$dl"/busybox-static_*.deb "$work/busybox" || die "cannot unpack busybox-static"
	rm -rf "$dl"
	extract_vmlinux || rm -f "$work/kernel/vmlinux"
}

# The bzImage's payload, uncompressed: QEMU boots an ELF vmlinux through PVH,
# which saves the kernel's self-decompression (several seconds under TCG).
extract_vmlinux() {
	local bz setup off len
	bz=$(echo "$work"/kernel/boot/vmlinuz-*)
	setup=$(od -An -t u1 -j $((0x1f1)) -N 1 "$bz" | tr -d ' ')
	[ "$setup" != 0 ] || setup=4
	read -r off len < <(od -An -t u4 -j $((0x248)) -N 8 "$bz")
	command -v xz >/dev/null 2>&1 || return 1
	head -c $(((setup + 1) * 512 + off + len)) "$bz" | tail -c "$len" |
		xz -dc --single-stream >"$work/kernel/vmlinux" 2>/dev/null || return 1
	[ "$(head -c4 "$work/kernel/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]
}

# The base initramfs: busybox, the KVM modules (in load order) and /init.
prepare_base() {
	local root=$work/base.root v m list
	rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,nested/svm,nested/vmx}
	cp "$work/busybox/bin/busybox" "$root/bin/"
	kmods=$(echo "$work"/kernel/lib/modules/*/kernel)
	[ -d "$kmods" ] || die "no modules in $work/kernel"
	for v in svm:kvm_amd vmx:kvm_intel; do
		list=$(module_order "${v#*:}") || exit
		for m in $list; do cp "$m" "$root/nested/${v%:*}/"; echo "${m##*/}"; done \
			>"$root/nested/${v%:*}/order"
	done
	cp "$here/init.sh" "$root/init" && chmod 755 "$root/init"
	# Uncompressed: gunzip costs more guest CPU time than the copy saves.
	(cd "$root" && find . | "$work/busybox/bin/busybox" cpio -o -H newc 2>/dev/null) \
		>"$work/base.cpio.tmp"
	# The kernel looks for the next archive at a 4-byte boundary.
	truncate -s %4 "$work/base.cpio.tmp"
	mv "$work/base.cpio.tmp" "$work/base.cpio"
	rm -rf "$root"
}

mkdir -p "$work"
exec 9>"$work/.lock"
flock 9
if [ ! -e "$work/kernel/.done" ]; then prepare_kernel; touch "$work/kernel/.done"; fi
if [ ! -e "$work/base.cpio" ] || [ "$here/init.sh" -nt "$work/base.cpio" ]; then prepare_base; fi
flock -u 9
kernel=$work/kernel/vmlinux
[ -f "$kernel" ] || kernel=$(echo "$work"/kernel/boot/vmlinuz-*)
[ -f "$kernel" ] || die "no kernel in $work/kernel"

# ---- per-run archive: the given files, their libraries and the command ----

run=$(mktemp -d "$work/run.XXXXXX")
cleanup() { if [ $keep = 1 ]; then echo "nested: kept $run" >&2; else rm -rf "$run"; fi; }
trap cleanup EXIT
stage=$run/root
mkdir -p "$stage/nested"

add_path() {
	local p
	p=$(realpath -s "$1") || die "no such file: $1"
	[ -e "$p" ] || die "no such file: $1"
	cp -rL --parents "$p" "$stage/" || die "cannot copy $p"
}
add_libs() { # ELF files under $1 bring the shared objects ldd names
	find "$1" -type f -print0 | while IFS= read -r -d '' f; do
		[ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
		ldd "$f" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p'
	done
}
for f in ${files[@]+"${files[@]}"}; do
	add_path "$f"
	for lib in $(add_libs "$(realpath -s "$f")" | sort -u); do add_path "$lib"; done
done

quote() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
	printf 'set -- '
	for a in "$@"; do quote "$a"; done
	printf '\ncwd='; quote "$PWD"
	printf '\nkvm_params='; quote "${kvm_params[*]+${kvm_params[*]}}"
	printf '\n'
} >"$stage/nested/cmd"

initrd=$run/initrd
(cd "$stage" && find . | "$work/busybox/bin/busybox" cpio -o -H newc 2>/dev/null) >"$run/run.cpio"
cat "$work/base.cpio" "$run/run.cpio" >"$initrd"
rm -f "$run/run.cpio"

# ---- boot: ttyS0 is the console, ttyS1/ttyS2 carry the command's stdout/stderr ----

: >"$run/out"; : >"$run/err"
start=$(date +%s%N)
timeout -k 5 "$timeout_s" "$qemu" -accel tcg -cpu "$cpu" -smp "$smp" -m "$mem" \
	-nodefaults -no-user-config -display none -no-reboot \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 quiet $append" \
	-serial "file:$run/console" -serial "file:$run/out" -serial "file:$run/err" \
	</dev/null >"$run/qemu.log" 2>&1 &
qpid=$!
tail -n +1 -s 0.2 -f --pid=$qpid "$run/out" &
tout=$!
tail -n +1 -s 0.2 -f --pid=$qpid "$run/err" >&2 &
terr=$!
qrc=0
wait $qpid || qrc=$?
wait $tout $terr || true
ms=$(( ($(date +%s%N) - start) / 1000000 ))
elapsed=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))

tr -d '\r' <"$run/console" >"$run/console.txt"
cp "$run/console.txt" "$work/last-console.log" 2>/dev/null || true
show_console() { echo "nested: guest console (last 30 lines):" >&2; tail -n 30 "$run/console.txt" >&2; }
[ $verbose = 1 ] && { echo "nested: guest console:" >&2; cat "$run/console.txt" >&2; }

if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	echo "nested: timed out after ${timeout_s}s" >&2; [ $verbose = 1 ] || show_console; exit 124
fi
if grep -q '@@NESTED_NOKVM@@' "$run/console.txt"; then
	[ $verbose = 1 ] || show_console
	skip "no /dev/kvm in the TCG guest (see console above)"
fi
rc=$(sed -n 's/.*@@NESTED_EXIT=\([0-9]*\)@@.*/\1/p' "$run/console.txt" | tail -n1)
if [ -z "$rc" ]; then
	echo "nested: guest ended without an exit status (qemu status $qrc)" >&2
	cat "$run/qemu.log" >&2
	[ $verbose = 1 ] || show_console
	exit 125
fi
echo "nested: guest ran ${elapsed}s, command exit status $rc" >&2
exit "$rc"
