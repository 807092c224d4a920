"""cpu driver: the embedded default. Host memory is device memory, kernels are native shared objects
(C, -O3 with the host's vector extensions), queues are packet rings consumed by executor threads.

Limits: a kernel runs in this process. Faults inside a kernel (SIGSEGV, SIGBUS, SIGILL, SIGFPE) are
caught and kill only the queue that ran it (DeviceFault), but a kernel that scribbles over memory it
does not own can corrupt the process before anything faults, and a kernel that never returns hangs
its queue (waits on it time out; close() then blocks on that executor).
Design, packet format and knobs: docs/cpu-driver.md.
"""

import builtins
import os
import platform

from hal.device import DeviceInfo
from hal.errors import DeviceNotFound

from . import knobs, native
from .compiler import HOST_TARGET, kernel_flags
from .compiler import compile  # noqa: F401  (the driver interface, hal/registry.py)

VENDOR = "cpu"
TARGET_PREFIXES = ("cpu-",)


def _model_name() -> str:
    try:
        with builtins.open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _info() -> DeviceInfo:
    if platform.system() != "Linux":
        raise DeviceNotFound(f"the cpu driver needs Linux (futex, memfd), this is {platform.system()}")
    why = native.unavailable_reason()
    if why:
        raise DeviceNotFound(why)
    memory_B, source = knobs.memory_budget_B()
    cores = len(os.sched_getaffinity(0))
    return DeviceInfo(spec="cpu", vendor=VENDOR, arch=HOST_TARGET, name=_model_name(), memory_B=memory_B,
                      compute_units=cores,
                      extra={"memory budget": source, "kernel flags": " ".join(kernel_flags()),
                             "threads": f"1 executor per queue + {cores - 1} workers",
                             "runtime calls": f"cffi {native.mode().upper()} mode"})


def probe():
    return [_info()]


def open(index: int = 0):  # noqa: A001 - the driver interface
    if index != 0:
        raise DeviceNotFound(f"there is one cpu device (cpu or cpu:0), not cpu:{index}")
    from .device import CpuDevice
    return CpuDevice(_info())
