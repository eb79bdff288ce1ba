#!/bin/bash
# make check-linux-nested: check-linux.sh on a real (if slow) KVM, inside the
# QEMU TCG guest of tests/nested/run.sh (TCG emulates SVM; kvm_amd loads),
# for hosts like ours with no usable /dev/kvm. The kernel is fetched here
# (apt-get download); the guest gets vmswitch, the test files and the host
# tools check-linux.sh uses. No kvm_pvm there, so the busybox variant runs.
# Knobs: LINUX_ROUNDS (default 2), LINUX_MEMORY (default 128M: every page
# remap is slow under TCG), NESTED_TIMEOUT (s, default 1800), and those of
# check-linux.sh. Exit status: check-linux.sh's, 77 if no nested KVM.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=${top_builddir:-$(cd "$here/../.." && pwd)}
srctop=${top_srcdir:-$(cd "$here/../.." && pwd)}
run=$srctop/tests/nested/run.sh
[ -f "$run" ] || { echo "SKIP: $run not found"; exit 77; }

kernel=${LINUX_KERNEL:-$(bash "$here/fetch-kernel.sh" "${LINUX_FLAVOUR:-generic}" "$top/tests/linux/work")} ||
	{ echo "FAIL: no kernel"; exit 1; }

files=()
add() { # PATH or command name; a symlink brings its target too (for its libraries)
	local f=$1 r
	case $f in /*) ;; *) f=$(command -v "$f") || { echo "FAIL: $1 not found"; exit 1; } ;; esac
	files+=(--file "$f")
	r=$(readlink -f "$f")
	[ "$r" = "$f" ] || files+=(--file "$r")
}
for f in "$top/vmswitch" "$top/guest/pattern-sum" "$top/tests/linux/init" \
	"$here/check-linux.sh" "$here/mkinitramfs.sh" "$kernel" \
	bash objdump readelf nm cpio od dd timeout date awk seq stat cmp gzip env head \
	tail grep sed mktemp install find sort tr cut dirname cat ls; do
	add "$f"
done

exec bash "$run" --timeout "${NESTED_TIMEOUT:-1800}" --mem 2048 "${files[@]}" -- \
	env PATH=/usr/bin:/bin:/sbin LINUX_WORK=/tmp/check-linux LINUX_KERNEL="$kernel" \
	LINUX_BOOT_TIMEOUT="${LINUX_BOOT_TIMEOUT:-900}" LINUX_ROUNDS="${LINUX_ROUNDS:-2}" \
	LINUX_MEMORY="${LINUX_MEMORY:-128M}" LINUX_PAGES="${LINUX_PAGES:-2000}" \
	LINUX_APPEND="${LINUX_APPEND:-}" top_builddir="$top" \
	bash "$here/check-linux.sh"
