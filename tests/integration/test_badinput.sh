#!/bin/bash
# Bad input: each case must give exactly one error line on stderr that names
# the file or option, exit status 2, and no core dump. Runs without KVM:
# vmswitch validates everything before it opens /dev/kvm.
set -u
top=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
vms="$top/vmswitch"
guest="$top/guest/vmswitch-guest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ulimit -c 0
fails=0 passes=0

# expect NAME PATTERN -- ARGS...: exit 2, one stderr line matching PATTERN.
expect() {
	local name=$1 pattern=$2; shift 3
	local out rc lines
	out=$(timeout 20 "$vms" "$@" 2>&1 >/dev/null </dev/null); rc=$?
	lines=$(printf '%s\n' "$out" | grep -c .)
	if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && printf '%s' "$out" | grep -Eq -- "$pattern"; then
		passes=$((passes + 1)); echo "ok   $name: $out"
	else
		fails=$((fails + 1)); echo "FAIL $name: rc=$rc lines=$lines: $out"
	fi
}

[ -x "$vms" ] || { echo "vmswitch not built"; exit 99; }
[ -f "$guest" ] || { echo "guest/vmswitch-guest not built"; exit 99; }

# Crafted images, all derived from our own valid bzImage.
patch_bytes() { printf "$3" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none; }
cp "$guest" "$work/good"
head -c 300 "$guest" > "$work/short"                      # not even a header
head -c $(( $(stat -c %s "$guest") / 2 )) "$guest" > "$work/truncated"
cp "$guest" "$work/oldproto"; patch_bytes "$work/oldproto" 0x206 '\x05\x02'   # version 2.05
cp "$guest" "$work/nomagic"; patch_bytes "$work/nomagic" 0x202 'XdrS'
cp "$guest" "$work/no64"; patch_bytes "$work/no64" 0x236 '\x00\x00'            # xloadflags
cp "$guest" "$work/hugeinit"; patch_bytes "$work/hugeinit" 0x260 '\x00\x00\x00\x10'  # init_size 256 MiB
cp "$guest" "$work/setupsects"; patch_bytes "$work/setupsects" 0x1f1 '\xff'     # 255 setup sectors
: > "$work/empty-initrd"
truncate -s 300M "$work/big-initrd"

expect "missing kernel"      "nonexistent.*(No such file|not found)" -- --kernel "$work/nonexistent"
expect "unreadable kernel"   "regular file|directory|read"                   -- --kernel "$work"
expect "not a bzImage"       "passwd"                            -- --kernel /etc/passwd
expect "too short"           "short"                             -- --kernel "$work/short"
expect "truncated bzImage"   "truncated"                         -- --kernel "$work/truncated"
expect "bad header magic"    "nomagic"                           -- --kernel "$work/nomagic"
expect "protocol 2.05"       "2\.05|0x0205|protocol"             -- --kernel "$work/oldproto"
expect "no 64-bit entry"     "64"                                -- --kernel "$work/no64"
expect "setup_sects too big" "setupsects"                        -- --kernel "$work/setupsects"
expect "0-byte initrd"       "empty-initrd"                      -- --kernel "$work/good" --initrd "$work/empty-initrd"
expect "missing initrd"      "nope"                              -- --kernel "$work/good" --initrd "$work/nope"
expect "initrd too big"      "big-initrd"                        -- --kernel "$work/good" --initrd "$work/big-initrd" --memory 64M
expect "kernel too big"      "hugeinit.*(memory|large|fit|RAM)"  -- --kernel "$work/hugeinit" --memory 64M
expect "--memory > host"     "^vmswitch: --memory.*host"         -- --kernel "$work/good" --memory 1000G
expect "missing argument"    "memory"                            -- --kernel "$work/good" --memory
expect "--memory 0"          "^vmswitch: --memory"               -- --kernel "$work/good" --memory 0
expect "--memory 3Q"         "^vmswitch: --memory.*3Q"           -- --kernel "$work/good" --memory 3Q
expect "--memory huge"       "^vmswitch: --memory"               -- --kernel "$work/good" --memory 64T
expect "--cpus 0"            "^vmswitch: --cpus"                 -- --kernel "$work/good" --cpus 0
expect "--cpus 1000"         "^vmswitch: --cpus"                 -- --kernel "$work/good" --cpus 1000
expect "--backmap bogus"     "^vmswitch: --backmap"              -- --kernel "$work/good" --backmap bogus
expect "unknown option"      "unknown option.*frobnicate"              -- --kernel "$work/good" --frobnicate
# /dev/kvm missing: natural on hosts without KVM; elsewhere hide it in a
# private mount namespace (needs root and unshare).
if [ ! -e /dev/kvm ]; then
	expect "/dev/kvm missing" "/dev/kvm" -- --kernel "$work/good"
elif [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	out=$(unshare -m sh -c "mount --bind /dev/null /dev/kvm && '$vms' --kernel '$work/good'" 2>&1 </dev/null); rc=$?
	if [ $rc -eq 2 ] && printf '%s' "$out" | grep -q /dev/kvm; then passes=$((passes+1)); echo "ok   /dev/kvm unusable: $out"
	else fails=$((fails+1)); echo "FAIL /dev/kvm unusable: rc=$rc: $out"; fi
fi
ls core* 2>/dev/null && { echo "FAIL core dumped"; fails=$((fails+1)); }
echo "bad input: $passes passed, $fails failed"
[ $fails -eq 0 ]
