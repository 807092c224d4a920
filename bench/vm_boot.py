"""Power-on to first result of the system image under QEMU (make vm-image first), with the same
device image booted natively on this host as the baseline, in the same run.

Per VM boot: the kernel's uptime when /init starts and at the first result (the self-test), the host
clock from QEMU's start to that line (includes the firmware and loading kernel + initramfs), and the
boot's own "time from process start to first result". Baseline: the same command /init runs,
`python -m boot IMAGE --count 3 --device cpu`, run directly on the host: its process start to first
result. KVM rows appear only
where /dev/kvm is backed by hardware virtualisation; the reason is printed otherwise.

    PYTHONPATH=. .venv/bin/python -m bench vm_boot        # or: python -m bench.vm_boot --boots 5
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from boot.vm import qemu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "out", "vm")
PROCESS_TO_FIRST = re.compile(r"time from process start to first result: ([\d.]+) (ms|us)")


def _process_to_first_s(text: str) -> float:
    m = PROCESS_TO_FIRST.search(text)
    return float(m.group(1)) / (1e3 if m.group(2) == "ms" else 1e6) if m else float("nan")


def _uptime(pattern: str, console: str) -> float:
    m = re.search(pattern, console)
    return float(m.group(1)) if m else float("nan")


def vm_boot(accel: str) -> dict:
    result = qemu.boot(os.path.join(OUT, "vmlinuz"), os.path.join(OUT, "initrd.img"), 3, accel, timeout_s=600)
    console = result.console
    if not result.powered_off or "self-test PASS" not in console:
        raise RuntimeError(f"the VM boot failed ({accel}):\n{console}")
    return {"init_s": _uptime(r"kos-init: started at ([\d.]+) s", console),
            "first_uptime_s": _uptime(r"kos-init: first result at ([\d.]+) s", console),
            "first_host_s": result.first_seen_s(qemu.FIRST_RESULT_MARK),
            "process_s": _process_to_first_s(console)}


def native_boot() -> float:
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "boot", os.path.join(OUT, "demo.kimg"), "--count", "3",
                           "--device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"native boot failed:\n{done.stdout}{done.stderr}")
    return _process_to_first_s(done.stdout)


def run(boots: int = 3):
    if not os.path.isfile(os.path.join(OUT, "initrd.img")):
        print("no system image: run `make vm-image` first")
        return
    why_not_kvm = qemu.kvm_unusable_reason()
    accels = ["tcg"] if why_not_kvm else ["kvm", "tcg"]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cpus; KVM: {'usable' if not why_not_kvm else 'not used: ' + why_not_kvm}")
    print(f"native baseline (python -m boot --device cpu on this host): process start to first result "
          f"{native_boot():.3f} s")
    print("| accel | boot | /init starts (uptime) | first result (uptime) | first result (host clock from QEMU start) "
          "| process start to first result |")
    print("| --- | --- | --- | --- | --- | --- |")
    for accel in accels:
        rows = [vm_boot(accel) for _ in range(boots)]
        for i, r in enumerate(rows):
            print(f"| {accel} | {i + 1} | {r['init_s']:.2f} s | {r['first_uptime_s']:.2f} s | {r['first_host_s']:.2f} s "
                  f"| {r['process_s']:.2f} s |")
        print(f"| {accel} | median | {statistics.median(r['init_s'] for r in rows):.2f} s "
              f"| {statistics.median(r['first_uptime_s'] for r in rows):.2f} s "
              f"| {statistics.median(r['first_host_s'] for r in rows):.2f} s "
              f"| {statistics.median(r['process_s'] for r in rows):.2f} s |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boots", type=int, default=3, help="VM boots per accelerator (default 3)")
    run(p.parse_args().boots)
