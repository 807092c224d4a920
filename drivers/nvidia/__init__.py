"""NVIDIA driver: RM ioctls on the open kernel module, no libcuda (see shared/design/nvidia-hopper.md).

Files, one concept each: rm (ioctl transport, typed errors), structs (cffi layouts), uvm, identity
(device objects, classes, probe info), memory + vaspace (VRAM, pinned host memory, GPU VAs),
channel (TSG, GPFIFO, doorbell), pushbuf + decode, qmd + classes/qmd_v0N, cbank0, cubin, program,
queue, signal, faults, nvrtc; device ties them together.
"""

import os

from hal import DeviceNotFound

VENDOR = "nv"
TARGET_PREFIXES = ("sm_",)


def probe():
    if not os.path.exists("/dev/nvidiactl"):
        raise DeviceNotFound("no /dev/nvidiactl: no NVIDIA GPU with the kernel module loaded on this machine")
    from .identity import probe_all
    return probe_all()


def preload():
    """Import what open() needs (hal.preload: boot does it while verifying the image)."""
    from . import device  # noqa: F401


def open(index: int):  # noqa: A001 - the HAL's name
    if not os.path.exists("/dev/nvidiactl"):
        raise DeviceNotFound("no /dev/nvidiactl: no NVIDIA GPU with the kernel module loaded on this machine")
    from .device import NvDevice
    return NvDevice(index)


def compile(source: str, name: str, target: str, options=()) -> bytes:  # noqa: A001 - the HAL's name
    from .nvrtc import compile_cubin
    return compile_cubin(source, name, target, options)
