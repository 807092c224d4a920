"""Compile a kernel from a source string for the shell's device and load it.

The source language follows the device's target: C over drivers/cpu/kos_kernel.h for cpu
targets, CUDA C (through NVRTC) for sm_* targets. hal.compile picks the driver's compiler.
"""

import hal
from hal.errors import InvalidArgument


def compile_kernel(dev, source: str, name: str, params, max_threads: int = 1024, options=()):
    """Compile `source` for dev's arch, load entry `name` and return the Program.

    params: the kernel's parameter types in order (keys of hal.PARAM_TYPES), e.g. ("ptr", "ptr", "u32").
    """
    if not isinstance(source, str) or not source.strip():
        raise InvalidArgument("kernel source must be a non-empty string")
    if isinstance(params, str):
        params = tuple(p.strip() for p in params.split(",") if p.strip())
    meta = hal.KernelMeta(tuple(params), max_threads=max_threads)
    binary = hal.compile(source, name, dev.info.arch, tuple(options))
    return dev.load_program(binary, name, meta)
