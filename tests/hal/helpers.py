"""Small helpers the conformance tests share."""

import os

import pytest

import hal
from hal import CompileError, KernelMeta

from . import kernels

POISON_BYTE = 0xA5


def poison(buf):
    """Fill a buffer with a byte pattern no correct kernel or copy writes."""
    buf.write(bytes([POISON_BYTE]) * buf.size_B)


def process_resources() -> dict:
    """Open fds, mappings, mapped size and threads of this process (what a device must give back on
    close). Adjacent anonymous mappings merge into one line of /proc/self/maps, so leaked memory
    shows in vm_kB rather than in the line count."""
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    with open("/proc/self/status") as f:
        vm_kB = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    return {"fds": len(os.listdir("/proc/self/fd")), "maps": maps, "vm_kB": vm_kB,
            "threads": len(os.listdir("/proc/self/task"))}


class Programs:
    """Test kernels compiled for a device's arch and loaded on it, once each."""

    def __init__(self, device):
        self.device, self._loaded = device, {}

    def binary(self, name: str) -> bytes:
        """The kernel compiled for this device; a skip saying why where the suite cannot compile it."""
        arch = self.device.info.arch
        src = kernels.source(name, arch)
        if src is None:
            pytest.skip(f"{self.device.spec}: the suite has no test kernels for arch {arch}")
        try:
            return hal.compile(src, name, arch)
        except CompileError as e:
            pytest.skip(f"{self.device.spec}: cannot compile test kernels for {arch}: {str(e).splitlines()[0]}")

    def __getitem__(self, name: str):
        if name not in self._loaded:
            self._loaded[name] = self.device.load_program(self.binary(name), name, KernelMeta(kernels.KERNELS[name].params))
        return self._loaded[name]
