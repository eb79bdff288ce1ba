# Shared by the integration tests that boot a guest on KVM.
#
# Where the host has no usable /dev/kvm (our development machines: their
# kernel is itself a kvm_pvm guest), need_kvm re-runs the calling test inside
# a QEMU TCG guest whose emulated AMD SVM gives Debian's kvm_amd a real KVM
# (tests/nested/run.sh). Slow, but it is the real KVM API end to end.
top=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
srcdir=${top_srcdir:-$top}
vms="$top/vmswitch"
guest="$top/guest/vmswitch-guest"
ulimit -c 0

kvm_usable() { [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; }

# need_kvm [NESTED_TIMEOUT_S [NESTED_MEM_MB [NESTED_SMP]]]
# The nested guest gets one CPU by default: with two, QEMU's TCG emulation of
# SVM once wedged the whole nested kernel under heavy host load (inter-
# processor interrupts to a CPU running a KVM guest); our 2-vCPU guests still
# run there, their vCPU threads time-sharing that CPU.
need_kvm() {
	kvm_usable && return 0
	if [ -n "${VMSWITCH_IN_NESTED:-}" ] || [ -n "${VMSWITCH_NO_NESTED:-}" ]; then
		echo "SKIP: /dev/kvm is not usable here, no guest can be booted"
		exit 77
	fi
	local script; script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
	echo "no usable /dev/kvm on this host: running $(basename "$0") inside a QEMU TCG guest with nested KVM"
	local files=() f
	for f in "$vms" "$guest" "$top/guest/pattern-sum" "$script" "$srcdir/tests/integration/kvm_common.sh" \
		 "$(command -v bash)" "$(command -v timeout)"; do
		[ -e "$f" ] && files+=(--file "$f")
	done
	exec env VMSWITCH_IN_NESTED=1 "$srcdir/tests/nested/run.sh" --timeout "${1:-600}" \
		--mem "${2:-1024}" --smp "${3:-1}" "${files[@]}" -- \
		env VMSWITCH_IN_NESTED=1 top_builddir="$top" top_srcdir="$srcdir" \
		"$(command -v bash)" "$script"
}

# run_guest LOG ARGS...: boot the test kernel, output in LOG, returns vmswitch's status.
run_guest() {
	local log=$1; shift
	timeout -k 10 "${GUEST_TIMEOUT:-300}" "$vms" --kernel "$guest" "$@" </dev/null >"$log" 2>&1
}

# wait_for_socket PATH
wait_for_socket() {
	local i
	for i in $(seq 1 600); do [ -S "$1" ] && return 0; sleep 0.1; done
	echo "monitor socket $1 never appeared"; return 1
}

# mon PATH CMD...: one monitor command.
mon() {
	local sock=$1; shift
	"$vms" --connect "$sock" "$@"
}
