#!/bin/bash
# fetch-kernel.sh [generic|cloud] [CACHE_DIR]: Debian's stock kernel for
# `make check-linux`, printed as the path of its vmlinuz (a bzImage).
#
# The ONLY way it fetches anything is `apt-get download` from the archive apt
# is configured for: it resolves the package the metapackage depends on
# (linux-image-amd64 -> linux-image-6.1.0-NN-amd64, or the cloud flavour),
# downloads that .deb and unpacks it with dpkg-deb -x into
#   CACHE_DIR/<package>/root          (default CACHE_DIR: tests/linux/work)
# A kernel already unpacked there is reused without touching the network.
# Exit status: 0 and the path on stdout; 1 with the reason on stderr.
set -eu

die() { echo "fetch-kernel: $*" >&2; exit 1; }

flavour=${1:-generic}
case $flavour in
generic) meta=linux-image-amd64 ;;
cloud) meta=linux-image-cloud-amd64 ;;
*) echo "usage: $0 [generic|cloud] [CACHE_DIR]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
cache=${2:-${top_builddir:-$(cd "$here/../.." && pwd)}/tests/linux/work}

for tool in apt-cache apt-get dpkg-deb; do
	command -v "$tool" >/dev/null || die "$tool not found (a Debian host is needed)"
done

# "Depends: linux-image-6.1.0-56-amd64" (also "|Depends:" for alternatives).
pkg=$(apt-cache depends "$meta" 2>/dev/null |
	awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || die "cannot resolve $meta to a kernel package (is apt's index there? apt-get update)"

dest=$cache/$pkg
find_vmlinuz() { ls "$dest"/root/boot/vmlinuz-* 2>/dev/null | head -n1; }

vmlinuz=$(find_vmlinuz)
if [ -z "$vmlinuz" ]; then
	mkdir -p "$cache" || die "cannot create $cache"
	tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || die "cannot create a temporary directory in $cache"
	trap 'rm -rf "$tmp"' EXIT
	echo "fetch-kernel: apt-get download $pkg (about 70 MB) into $dest" >&2
	# apt-get download writes into the current directory; as root it warns
	# that _apt cannot reach it, which is harmless.
	(cd "$tmp" && apt-get download "$pkg") >"$tmp/download.log" 2>&1 ||
		die "apt-get download $pkg failed: $(tail -n1 "$tmp/download.log")"
	deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
	[ -n "$deb" ] || die "apt-get download $pkg left no .deb"
	dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $deb failed"
	# Only the kernel image and its config are needed; the modules are not.
	rm -rf "$tmp/root/lib" "$tmp/root/usr"
	rm -rf "$dest"
	mkdir -p "$dest"
	mv "$tmp/root" "$dest/root"
	vmlinuz=$(find_vmlinuz)
	[ -n "$vmlinuz" ] || die "$pkg holds no boot/vmlinuz-*"
fi
echo "$vmlinuz"
