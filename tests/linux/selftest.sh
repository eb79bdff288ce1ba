#!/bin/bash
# make check-linux-selftest: check-linux.sh's boot and switch logic without
# KVM, against fake-vmswitch.sh (init runs on this host): an intact run must
# pass, and a run whose `scramble` zeroes a page (a lost copy) must fail.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp); tmp=$(mktemp -d); trap 'rm -rf "$out" "$tmp"' EXIT
export LINUX_WORK=$tmp   # its own initramfs and logs: runs may overlap

LINUX_FAKE=1 LINUX_ROUNDS=${LINUX_ROUNDS:-3} bash "$here/check-linux.sh" >"$out" 2>&1
rc=$?
cat "$out"
[ $rc -eq 0 ] && grep -q '^PASS:' "$out" || { echo "SELFTEST FAIL: intact fake run did not pass (status $rc)"; exit 1; }

LINUX_FAKE=1 FAKE_CORRUPT=1 LINUX_ROUNDS=1 bash "$here/check-linux.sh" >"$out" 2>&1
rc=$?
grep '^FAIL:' "$out"
[ $rc -ne 0 ] && grep -q '^FAIL: .*mismatched words, last in page 7' "$out" ||
	{ cat "$out"; echo "SELFTEST FAIL: a zeroed guest page went unnoticed (status $rc)"; exit 1; }
echo "SELFTEST PASS: intact fake run passed; a page zeroed by scramble failed the run"
