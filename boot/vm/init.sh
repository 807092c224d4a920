#!/bin/sh
# /init of the kernelos system image (PID 1, busybox sh): mount the essentials, boot the device
# image with `python3 -S -m boot` (the `kernelos boot` command without the rest of the CLI or site: the shortest
# path to the first result), report on the serial console, then serve; with kos.count=N, power off
# after N inferences. PID 1 never exits (the kernel would panic): every end is a clean power-off.
#
# Kernel command line knobs: kos.image=PATH (default /image.kimg), kos.count=N (0: serve until
# power-off), kos.device=SPEC (default: the best device present).

export PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
. /etc/kernelos.env  # PYTHONPATH and the cpu driver's knobs (written by boot/vm/rootfs.py)

say() { echo "kos-init: $*"; }
uptime_s() { read -r up _ </proc/uptime; echo "$up"; }
power_off() { say "powering off"; poweroff -f; while :; do sleep 3600; done; }  # never exit

# Echo the boot's output; stamp the kernel's uptime on the first result (the self-test inference).
report_first_result() {
    stamped=
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            *"self-test PASS"*|*"self-test FAIL"*)
                [ -n "$stamped" ] || say "first result at $(uptime_s) s after power-on (kernel uptime)"
                stamped=1 ;;
        esac
    done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
say "started at $(uptime_s) s after power-on; kernel $(uname -sr), $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"

image=/image.kimg count=0 device=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        kos.image=*) image=${arg#kos.image=} ;;
        kos.count=*) count=${arg#kos.count=} ;;
        kos.device=*) device=${arg#kos.device=} ;;
    esac
done

set -- "$image"
[ "$count" -gt 0 ] && set -- "$@" --count "$count"  # without --count the boot serves until power-off
[ -n "$device" ] && set -- "$@" --device "$device"
say "running: python3 -S -m boot $*"
set -o pipefail
# -S: no site initialisation (PYTHONPATH from kernelos.env names the package folders), ~10-60 ms less start-up
python3 -S -m boot "$@" 2>&1 | report_first_result
status=$?
if [ "$status" -ne 0 ]; then
    say "boot failed (exit status $status); halting"
elif [ "$count" -gt 0 ]; then
    say "done: $count inferences run; $(uptime_s) s after power-on"
else
    say "the boot stopped serving"
fi
power_off
