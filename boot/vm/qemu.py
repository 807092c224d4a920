"""`python -m boot.vm.qemu`: boot the system image with qemu-system-x86_64 on a serial console.

KVM when /dev/kvm answers (hardware virtualisation, `-cpu host`), software emulation (TCG)
otherwise. The console is streamed to stdout; the host clock from QEMU's start ("power-on") to the
first result line is measured too, since the kernel's uptime misses the firmware's share.
With --count N the VM powers itself off after N inferences; with 0 it serves until you quit QEMU
(Ctrl-A X).
"""

import argparse
import fcntl
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
QEMU = "qemu-system-x86_64"
KVM_GET_API_VERSION = 0xAE00  # ioctl; the stable KVM API answers 12
FIRST_RESULT_MARK = "kos-init: first result at"  # printed by /init (init.sh)
POWER_DOWN_MARK = "reboot: Power down"  # the kernel's last line on a clean power-off
HARDWARE_KVM_MODULES = ("kvm_intel", "kvm_amd")  # KVM backed by VMX / SVM: runs a stock kernel


def kvm_unusable_reason():
    """None when QEMU can boot a stock kernel with KVM here, else why not. /dev/kvm must open
    read-write, speak the KVM API, and be backed by VMX or SVM: other KVM back ends (kvm_pvm, the
    paravirtual one of some cloud sandboxes) run only guest kernels built for them, and a stock
    kernel hangs at its first instruction."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != 12:
            return "/dev/kvm speaks an unknown KVM API version"
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    finally:
        os.close(fd)
    if not any(os.path.isdir(f"/sys/module/{m}") for m in HARDWARE_KVM_MODULES):
        others = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm_"))
        return (f"/dev/kvm is not backed by hardware virtualisation (no {' or '.join(HARDWARE_KVM_MODULES)}"
                f"{'; this host has ' + ', '.join(others) if others else ''}), which a stock kernel needs")
    return None


def default_accel() -> str:
    return "tcg" if kvm_unusable_reason() else "kvm"


def qemu_command(kernel: str, initrd: str, count: int, accel: str, memory_MiB=1024, cpus=2, append=()) -> list:
    # loglevel=6: the kernel's banner, warnings and errors, not its info chatter, which costs seconds
    # through an emulated UART (append loglevel=7 for all of it). panic=-1: reboot at once on a panic,
    # which -no-reboot turns into QEMU exiting, so a broken image never loops.
    cmdline = ["console=ttyS0", "loglevel=6", "panic=-1", f"kos.count={count}", *append]
    cpu = ["-enable-kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    # -nic none: no network (serving is on a UNIX socket inside), and no NIC boot ROM to wait for.
    return [QEMU, *cpu, "-m", str(memory_MiB), "-smp", str(cpus), "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", kernel, "-initrd", initrd, "-append", " ".join(cmdline)]


@dataclass
class BootResult:
    accel: str
    exit_code: int = None  # QEMU's
    timed_out: bool = False  # killed at the timeout
    stopped: bool = False  # killed on purpose when the stop_at line appeared
    lines: list = field(default_factory=list)  # (seconds since QEMU start, console line)

    @property
    def console(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first_seen_s(self, mark: str):
        """Host seconds from QEMU's start to the first console line containing mark, or None."""
        return next((t for t, line in self.lines if mark in line), None)

    @property
    def powered_off(self) -> bool:
        """The guest powered itself off (not killed) and the kernel said so."""
        return self.exit_code == 0 and not (self.timed_out or self.stopped) and \
            self.first_seen_s(POWER_DOWN_MARK) is not None


def boot(kernel: str, initrd: str, count: int, accel: str = None, timeout_s: float = 120.0,
         append=(), echo=None, stop_at: str = None) -> BootResult:
    """Boot and read the serial console until QEMU exits, or a line contains stop_at (QEMU is then
    killed: result.stopped), or timeout_s passes (killed: result.timed_out). echo(line) sees each
    line as it comes; with echo, QEMU keeps this terminal as its input (Ctrl-A X quits)."""
    result = BootResult(accel=accel or default_accel())
    cmd = qemu_command(kernel, initrd, count, result.accel, append=append)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if echo is None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def expire():
        result.timed_out = True
        proc.kill()

    deadline = threading.Timer(timeout_s, expire)
    deadline.start()
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            result.lines.append((time.monotonic() - t0, line))
            if echo:
                echo(line)
            if stop_at and stop_at in line:
                result.stopped = True
                break
    finally:
        deadline.cancel()
        if proc.poll() is None:
            proc.kill()
        result.exit_code = proc.wait()
        proc.stdout.close()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m boot.vm.qemu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "out", "vm"), help="where make vm-image put vmlinuz, initrd.img")
    p.add_argument("--count", type=int, default=0, help="power off after N inferences (0: serve until Ctrl-A X)")
    p.add_argument("--accel", choices=("kvm", "tcg"), help="default: kvm when /dev/kvm works, else tcg")
    p.add_argument("--timeout-s", type=float, default=24 * 3600.0, help="kill QEMU after this long")
    p.add_argument("--append", action="append", default=[], help="extra kernel command line word (repeatable)")
    args = p.parse_args(argv)
    kernel, initrd = os.path.join(args.out, "vmlinuz"), os.path.join(args.out, "initrd.img")
    if not (os.path.isfile(kernel) and os.path.isfile(initrd)):
        print(f"vm-boot: no system image in {args.out}: run make vm-image", file=sys.stderr)
        return 2
    why_not_kvm = kvm_unusable_reason()
    accel = args.accel or ("tcg" if why_not_kvm else "kvm")
    print(f"vm-boot: {QEMU} with {accel.upper()}"
          + (f" (software emulation: {why_not_kvm})" if accel == "tcg" and why_not_kvm else ""), flush=True)
    result = boot(kernel, initrd, args.count, accel, args.timeout_s, args.append,
                  echo=lambda line: print(line, flush=True))
    first_s = result.first_seen_s(FIRST_RESULT_MARK)
    if first_s is not None:
        print(f"vm-boot: power-on to first result {first_s:.2f} s (host clock from QEMU start, {accel.upper()})")
    if result.timed_out:
        print(f"vm-boot: QEMU killed after {args.timeout_s:.0f} s", file=sys.stderr)
        return 1
    # A counted run ends in the guest's own power-off; a serving one when you quit QEMU.
    ended_well = result.powered_off if args.count else result.exit_code == 0
    return 0 if first_s is not None and ended_well else 1


if __name__ == "__main__":
    sys.exit(main())
