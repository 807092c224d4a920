"""Every environment knob of the cpu driver, read in one place.

KERNELOS_CACHE          where built runtimes and compiled kernels are cached (default ~/.cache/kernelos)
KERNELOS_CC             the C compiler (default cc)
KERNELOS_CPU_MARCH      -march for kernels (default native: the build host's vector extensions)
KERNELOS_CPU_MEMORY_B   the device's memory budget in bytes (default MemAvailable at open)
KERNELOS_CPU_SPIN_US    how long executors, workers and waits spin before sleeping (default 2000: a worker
                        that finished its share of a launch early still spins when the next one comes;
                        a futex wake of 15 workers cost tens of us a node on the 16-core device host)
KERNELOS_CPU_FFI        how the runtime is called: "abi" forces cffi ABI mode (default: API mode
                        where Python's headers are installed)
"""

import math
import os
from pathlib import Path

from hal.errors import InvalidArgument


def cache_dir() -> Path:
    return Path(os.environ.get("KERNELOS_CACHE") or Path.home() / ".cache" / "kernelos")


def compiler() -> str:
    return os.environ.get("KERNELOS_CC", "cc")


def march() -> str:
    return os.environ.get("KERNELOS_CPU_MARCH", "native")


def memory_budget_B() -> tuple[int, str]:
    """(bytes, where the figure came from)."""
    forced = os.environ.get("KERNELOS_CPU_MEMORY_B")
    if forced:
        if not forced.isdigit():
            raise InvalidArgument(f"KERNELOS_CPU_MEMORY_B must be a byte count (digits), got {forced!r}")
        return int(forced), "KERNELOS_CPU_MEMORY_B"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical pages"


def spin_ns() -> int:
    text = os.environ.get("KERNELOS_CPU_SPIN_US", "2000")
    try:
        spin_us = float(text)
    except ValueError:
        spin_us = math.nan
    if not 0 <= spin_us <= 1e9:  # also refuses NaN and inf
        raise InvalidArgument(f"KERNELOS_CPU_SPIN_US must be microseconds in 0..1e9, got {text!r}")
    return int(spin_us * 1000)


def ffi_mode() -> str:
    return os.environ.get("KERNELOS_CPU_FFI", "auto")
