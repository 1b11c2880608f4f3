#!/usr/bin/env bash
# Runs the containment layer's tests (tests/cgroup_test) on a real cgroup v2
# hierarchy with the memory and pids controllers, inside a throwaway VM: this
# host and CI have the memory controller on cgroup v1 only, so the v2 backend
# (supervisor/cgroup_v2.cpp) cannot be exercised here otherwise.
#
# usage: tests/vm/cgroup_v2.sh [BUILD_DIR]      (default: build; needs root)
#
# BUILD_DIR must hold the built tests/cgroup_test and tests/cgroup_alloc_helper
# (ninja -C BUILD_DIR tests/cgroup_test tests/cgroup_alloc_helper). The script
#  1. installs qemu-system-x86, busybox-static and cpio with apt-get if missing;
#  2. takes Debian's kernel (linux-image-amd64): BUILD_DIR/vm-cache/boot or
#     /boot/vmlinuz-*-amd64 if there, else `apt-get download` of its package, of
#     which only /boot/vmlinuz-* is unpacked into BUILD_DIR/vm-cache (nothing is
#     installed on the host for it; no modules are needed);
#  3. packs busybox, the two test binaries at their build paths and the shared
#     libraries ldd lists into an initramfs whose /init mounts cgroup2 at
#     /sys/fs/cgroup, enables +memory +pids for the root's children and runs
#     cgroup_test twice with PV_REQUIRE_CGROUP_V2=1 (every case must see v2):
#       - from "pv.service", a delegated cgroup (systemd's Delegate=yes), so the
#         probe moves the test into pv.service/supervisor itself;
#       - from "pv-sub.service/supervisor" (systemd's DelegateSubgroup=supervisor);
#     then checks that only the "supervisor" leaves are left, prints
#     "PV-VM-RESULT rc=N" and powers off;
#  4. boots it with qemu, -m 1024, console on ttyS0, under a timeout: with KVM
#     when a probe boot under KVM reaches /init within 10 s, else with TCG.
# Limitation: it proves the cgroup layer on v2, not the supervisor around it (the
# integration suite needs PostgreSQL, not in the VM) nor a real systemd delegation.
# It takes about 25 s with TCG (10 s of it the failing KVM probe) when the
# packages are already installed.
# Exit status: 0 when the VM reported rc=0; 1 when a test failed or the VM never
# reported (timeout, kernel panic); 2 on a usage or setup error.
#
# Environment: PV_VM_KERNEL=/path/to/vmlinuz uses that kernel instead;
# PV_VM_TIMEOUT (seconds, default 200 with KVM, 400 with TCG); PV_VM_ACCEL=tcg
# forces TCG; PV_VM_LOG=FILE keeps the console log there (default
# BUILD_DIR/vm-cache/cgroup_v2-console.log).
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
build=$(cd "${1:-build}" 2>/dev/null && pwd) || {
    echo "cgroup_v2.sh: no build directory ${1:-build}" >&2
    exit 2
}
test_bin=$build/tests/cgroup_test
helper_bin=$build/tests/cgroup_alloc_helper
for bin in "$test_bin" "$helper_bin"; do
    if [ ! -x "$bin" ]; then
        echo "cgroup_v2.sh: $bin is not built (ninja -C $build ${bin#"$build"/})" >&2
        exit 2
    fi
done
cache=$build/vm-cache
mkdir -p "$cache"
log=${PV_VM_LOG:-$cache/cgroup_v2-console.log}
started=$(date +%s)
say() { echo "cgroup_v2.sh: $*" >&2; }

# --- 1. host packages (only those missing) ---
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for pkg in qemu-system-x86 busybox-static cpio; do
    installed "$pkg" || missing+=("$pkg")
done
apt_updated=false
apt_update_once() {
    if [ "$apt_updated" = false ]; then
        apt-get update -q >/dev/null
        apt_updated=true
    fi
}
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing ${missing[*]} and not root to install them"
        exit 2
    fi
    say "installing ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- 2. the guest kernel ---
kernel=${PV_VM_KERNEL:-}
if [ -z "$kernel" ]; then
    for k in "$cache"/boot/vmlinuz-* /boot/vmlinuz-*-amd64; do
        if [ -r "$k" ]; then
            kernel=$k
            break
        fi
    done
fi
if [ -z "$kernel" ]; then
    # The metapackage names the current versioned image, e.g. linux-image-6.1.0-57-amd64.
    image_pkg() {
        apt-cache depends linux-image-amd64 2>/dev/null |
            awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
    }
    pkg=$(image_pkg)
    if [ -z "$pkg" ]; then
        apt_update_once
        pkg=$(image_pkg)
    fi
    if [ -z "$pkg" ]; then
        say "apt-cache knows no linux-image-amd64; set PV_VM_KERNEL"
        exit 2
    fi
    say "downloading $pkg (only its vmlinuz is unpacked, into $cache)"
    rm -rf "$cache/deb" && mkdir -p "$cache/deb"
    (cd "$cache/deb" && apt-get download -q "$pkg" >/dev/null 2>&1) || {
        say "apt-get download $pkg failed"
        exit 2
    }
    dpkg-deb --fsys-tarfile "$cache"/deb/*.deb | tar -x -C "$cache" --wildcards './boot/vmlinuz-*'
    rm -rf "$cache/deb"
    kernel=$(find "$cache/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)
fi
if [ ! -r "$kernel" ]; then
    say "cannot read kernel $kernel"
    exit 2
fi

# --- 3. the initramfs ---
root=$(mktemp -d "$cache/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
# The test execs the helper by its build path (compiled in), so keep both there.
for bin in "$test_bin" "$helper_bin"; do
    mkdir -p "$root$(dirname "$bin")"
    cp "$bin" "$root$bin"
    for lib in $(ldd "$bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
done
sed "s|@TEST@|$test_bin|" >"$root/init" <<'EOF'
#!/bin/sh
# Guest side of tests/vm/cgroup_v2.sh (PID 1 of the VM).
export PATH=/bin:/sbin
echo  # the firmware's last console line has no newline
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No tmpfs on /tmp: the initramfs root is writable already, and a build tree
# under /tmp (a CI clone) holds the test binaries at their build paths.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
cg=/sys/fs/cgroup
finish() {
    echo "PV-VM-RESULT rc=$1"
    sync
    poweroff -f
}
case " $(cat /proc/cmdline) " in
*" pv_probe_only "*)
    echo "PV-VM-PROBE ok"
    finish 0
    ;;
esac
echo "PV-VM: kernel $(uname -r), cgroup2 controllers: $(cat $cg/cgroup.controllers)"
echo "+memory +pids" >$cg/cgroup.subtree_control || finish 90
echo "PV-VM: root subtree_control: $(cat $cg/cgroup.subtree_control)"
subdirs() {
    for d in "$1"/*/; do
        [ -d "$d" ] && basename "$d"
    done
    return 0
}
# Runs the test as the only process of cgroup $1 (the shell moves itself in and
# execs it), as systemd starts a service's main process; timeout stays outside.
run_in() {
    mkdir -p "$cg/$1"
    PV_REQUIRE_CGROUP_V2=1 timeout 150 sh -c \
        'echo 0 >"$0/cgroup.procs" && echo "PV-VM: test starts in $(cat /proc/self/cgroup)" &&
         exec @TEST@ --no-colors' "$cg/$1"
}
rc=0
echo "PV-VM: run 1, Delegate=yes: from /pv.service (the probe moves itself into a leaf)"
run_in pv.service || rc=$?
echo "PV-VM: run 1 exit $rc; left in pv.service: $(subdirs $cg/pv.service)"
rc2=0
echo "PV-VM: run 2, DelegateSubgroup=supervisor: from /pv-sub.service/supervisor"
run_in pv-sub.service/supervisor || rc2=$?
echo "PV-VM: run 2 exit $rc2; left in pv-sub.service: $(subdirs $cg/pv-sub.service)"
[ "$rc" = 0 ] && rc=$rc2
for d in pv.service pv-sub.service; do
    extra=$(subdirs $cg/$d | grep -vx supervisor || true)
    if [ -n "$extra" ]; then
        echo "PV-VM: left behind in $d: $extra"
        [ "$rc" = 0 ] && rc=92
    fi
done
finish "$rc"
EOF
chmod +x "$root/init"
initrd=$cache/cgroup_v2-initrd.gz
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd"

# --- 4. boot ---
boot() { # accel cpu timeout extra-cmdline
    timeout --kill-after=10 "$3" qemu-system-x86_64 -accel "$1" -cpu "$2" -m 1024 -smp 2 \
        -nographic -nodefaults -serial stdio -no-reboot -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet $4" </dev/null
}
# /dev/kvm can exist without working (seen on a nested host without vmx/svm:
# the guest hangs once the kernel's setup code is done), so a short probe boot
# must print its marker before KVM is used.
accel=tcg
if [ "${PV_VM_ACCEL:-}" = tcg ]; then
    say "TCG forced by PV_VM_ACCEL"
elif [ ! -w /dev/kvm ]; then
    say "no usable /dev/kvm: using TCG"
elif boot kvm host 10 pv_probe_only >"$cache/kvm-probe.log" 2>&1 || true
    tr -d '\r' <"$cache/kvm-probe.log" | grep -q '^PV-VM-PROBE ok'; then
    accel=kvm
else
    say "/dev/kvm is there but a KVM guest did not run within 10 s: using TCG"
fi
if [ "$accel" = kvm ]; then
    timeout_s=${PV_VM_TIMEOUT:-200}
    cpu=host
else
    timeout_s=${PV_VM_TIMEOUT:-400}
    cpu=max
fi
say "booting $(basename "$kernel") with $accel (timeout ${timeout_s}s), console log $log"
qemu_rc=0
boot "$accel" "$cpu" "$timeout_s" "" >"$log" 2>&1 || qemu_rc=$?
# The guest's output from /init on (the kernel's boot messages are only in the log).
tr -d '\r' <"$log" | sed -n '/^PV-VM/,$p'
elapsed=$(($(date +%s) - started))
result=$(sed -n 's/^PV-VM-RESULT rc=\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$result" ]; then
    say "the VM never reported a result (qemu exit $qemu_rc after ${elapsed}s); see $log"
    tail -n 30 "$log" >&2
    exit 1
fi
if [ "$result" != 0 ]; then
    say "FAILED: cgroup_test in the VM exited $result (${elapsed}s); see $log"
    exit 1
fi
say "passed on $(grep -o 'kernel [^,]*' "$log" | head -n 1) in ${elapsed}s"
