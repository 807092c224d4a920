"""NVIDIA driver: RM ioctls on the open kernel module (see shared/design/nvidia-hopper.md)."""

from hal import DeviceNotFound

VENDOR = "nv"
TARGET_PREFIXES = ("sm_",)


def probe():
    raise DeviceNotFound("the nvidia driver is not written yet")


def open(index: int):  # noqa: A001
    raise DeviceNotFound("the nvidia driver is not written yet")


def compile(source, name, target, options=()):  # noqa: A001
    from hal import CompileError
    raise CompileError("the NVRTC compiler is not wired yet")
