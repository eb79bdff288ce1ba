# Shared by the integration tests that boot a guest on KVM.
top=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
vms="$top/vmswitch"
guest="$top/guest/vmswitch-guest"
ulimit -c 0

need_kvm() {
	if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
		echo "SKIP: /dev/kvm is not usable on this host, no guest can be booted here"
		exit 77
	fi
}

# run_guest LOG ARGS...: boot the test kernel, output in LOG, returns vmswitch's status.
run_guest() {
	local log=$1; shift
	timeout "${GUEST_TIMEOUT:-300}" "$vms" --kernel "$guest" "$@" </dev/null >"$log" 2>&1
}

# wait_for_socket PATH
wait_for_socket() {
	for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
	echo "monitor socket $1 never appeared"; return 1
}

# mon PATH CMD...: one monitor command; fails the test on error.
mon() {
	local sock=$1; shift
	"$vms" --connect "$sock" "$@"
}
