# Shared by the bench/nested-*.sh wrappers: sourced, not run.
# qemu_files: append to the array `files` the --file arguments that bring
# Debian's QEMU and its firmware into the nested guest (for the QEMU/KVM
# side of a side-by-side measurement). Absent QEMU: nothing is added.
qemu_files() {
	local qemu d
	qemu=$(command -v qemu-system-x86_64) || return 0
	files+=(--file "$qemu")
	for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
		[ -d "$d" ] && files+=(--file "$d")
	done
	return 0
}
