#!/bin/busybox sh
# /init of the nested-KVM test guest (see run.sh): load KVM, run /nested/cmd,
# report its exit status on the console and power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
# rootfs is already a writable tmpfs: /tmp needs no mount (it would hide --file copies)
mkdir -p /dev/shm /root /tmp && mount -t tmpfs shm /dev/shm
# run.sh writes /nested/cmd: `set -- COMMAND...`, cwd= and kvm_params=.
cwd=/ kvm_params=''
# shellcheck disable=SC1091
. /nested/cmd

# kvm_amd on TCG's SVM; kvm_intel only if the CPU model offers vmx.
if grep -qw svm /proc/cpuinfo; then mods=svm; elif grep -qw vmx /proc/cpuinfo; then mods=vmx; else mods=; fi
if [ -n "$mods" ]; then
	for m in $(cat /nested/$mods/order); do
		p=
		case $m in kvm-amd.ko|kvm-intel.ko) p=$kvm_params ;; esac
		# shellcheck disable=SC2086 # $p holds several parameters
		insmod /nested/$mods/$m $p || echo "nested: insmod $m $p failed"
	done
fi
if [ ! -c /dev/kvm ]; then
	echo "nested: no svm/vmx in /proc/cpuinfo or /dev/kvm missing"
	dmesg | grep -iE 'kvm|svm|vmx' | tail -n 5
	echo "@@NESTED_NOKVM@@"
	poweroff -f
fi

# Raw ports: the command's bytes reach the host files unchanged.
stty -F /dev/ttyS1 raw -echo
stty -F /dev/ttyS2 raw -echo
cd "$cwd" 2>/dev/null || cd /
(exec "$@") </dev/null >/dev/ttyS1 2>/dev/ttyS2
rc=$?
cd /
echo "@@NESTED_EXIT=$rc@@"
poweroff -f
