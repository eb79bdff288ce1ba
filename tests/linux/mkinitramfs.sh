#!/bin/bash
# mkinitramfs.sh INIT OUT [BUSYBOX|none]: the initramfs of `make check-linux`,
# a gzip'd newc cpio (Debian's cpio) holding
#   /init          INIT, the syscall-free workload (tests/linux/init.c)
# and, when a static busybox is found (BUSYBOX, else /bin/busybox from
# Debian's busybox-static), for hosts where guest system calls work:
#   /bin/busybox
#   /bb-init       boot with rdinit=/bb-init: prints BUSYBOX-OK, execs /init
# /dev/console comes from the kernel's built-in initramfs, unpacked first.
set -eu

die() { echo "mkinitramfs: $*" >&2; exit 1; }

[ $# -ge 2 ] || { echo "usage: $0 INIT OUT [BUSYBOX|none]" >&2; exit 2; }
init=$1 out=$2 busybox=${3:-/bin/busybox}
[ -f "$init" ] || die "$init: no such file"
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"

# A dynamic busybox (Debian's `busybox` package) has no libc in here.
static_elf() { [ -f "$1" ] && ! readelf -l "$1" 2>/dev/null | grep -q INTERP; }

stage=$(mktemp -d) || die "cannot create a staging directory"
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$init" "$stage/init"
if [ "$busybox" != none ] && static_elf "$busybox"; then
	mkdir -p "$stage/bin"
	install -m 0755 "$busybox" "$stage/bin/busybox"
	cat >"$stage/bb-init" <<'EOF'
#!/bin/busybox sh
# Only where guest system calls work (VMX/SVM hosts): a stock userland runs.
/bin/busybox echo "BUSYBOX-OK $(/bin/busybox uname -r)"
exec /init
EOF
	chmod 0755 "$stage/bb-init"
fi

mkdir -p "$(dirname "$out")"
# Sorted names, owned by root whoever builds it.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
	cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$out.tmp" ||
	die "cpio/gzip failed"
mv "$out.tmp" "$out"
