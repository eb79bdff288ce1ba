# Shared by the benchmarks that boot the test kernel under vmswitch with a
# monitor socket (bench/guest-speed.sh, bench/switch.sh). Source it after
# setting `name`, `vmswitch`, `guest` and `limit` (seconds per monitor step).
say() { echo "$name: $*"; }

[ -c /dev/kvm ] || { say "SKIP: needs /dev/kvm (absent on this host)"; exit 77; }
[ -x "$vmswitch" ] && [ -f "$guest" ] || { say "build $vmswitch and $guest first"; exit 2; }
tmp=$(mktemp -d "/tmp/$name.XXXXXX") || exit 2
vmm_pid=
cleanup() { [ -z "$vmm_pid" ] || kill -9 "$vmm_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
sock=$tmp/mon
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
die() { say "$*" >&2; tail -n 5 "$tmp/vmm.log" "$tmp/serial" >&2; exit 1; }

# Tell the guest to finish; it must exit 0 having printed PASS (no page lost).
guest_finish() {
	"$vmswitch" --connect "$sock" guest-finish >/dev/null 2>"$tmp/mon.err" ||
		die "guest-finish failed: $(cat "$tmp/mon.err")"
	local end=$(($(now_us) + limit * 1000000)) rc
	while kill -0 "$vmm_pid" 2>/dev/null; do
		[ "$(now_us)" -lt $end ] || die "the guest did not finish within ${limit}s"
		sleep 0.2
	done
	wait "$vmm_pid"; rc=$?
	vmm_pid=
	grep -q '^PASS' "$tmp/serial" && [ $rc = 0 ] || die "guest did not PASS (vmswitch status $rc)"
}
