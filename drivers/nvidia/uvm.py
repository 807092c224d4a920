"""UVM ioctls on /dev/nvidia-uvm: the GPU's virtual address space is owned by UVM for this process.

UVM ioctl numbers are plain integers (kernel-open/nvidia-uvm/uvm_ioctl.h); every parameter block
ends in rmStatus, which is checked here.
"""

import os

from .rm import ioctl, open_node, rm_check
from .structs import ffi

UVM_INITIALIZE = 0x30000001
UVM_REGISTER_GPU_VASPACE, UVM_REGISTER_CHANNEL, UVM_UNREGISTER_CHANNEL = 25, 27, 28
UVM_MAP_EXTERNAL_ALLOCATION, UVM_FREE, UVM_REGISTER_GPU = 33, 34, 37
UVM_CREATE_EXTERNAL_RANGE, UVM_MM_INITIALIZE = 73, 75
MAPPING_READ_WRITE_ATOMIC = 1


class Uvm:
    """One UVM file (one UVM VA space) plus the companion fd that UVM_MM_INITIALIZE needs."""

    def __init__(self):
        self.fd = open_node("/dev/nvidia-uvm")
        self.mm_fd = -1
        try:
            self._call(UVM_INITIALIZE, "UVM_INITIALIZE_PARAMS", {"flags": 0})
            self.mm_fd = open_node("/dev/nvidia-uvm")
            try:  # ties the VA space to this mm; older modules lack it (nvidia-hopper.md 3.4 step 4)
                self._call(UVM_MM_INITIALIZE, "UVM_MM_INITIALIZE_PARAMS", {"uvmFd": self.fd}, fd=self.mm_fd)
            except Exception:
                os.close(self.mm_fd)
                self.mm_fd = -1
        except BaseException:
            self.close()
            raise

    def close(self):
        for fd in (self.mm_fd, self.fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.mm_fd = -1

    def _call(self, cmd: int, struct: str, fields: dict, fd: int | None = None):
        p = ffi.new(struct + " *", fields)
        name = struct.removesuffix("_PARAMS")
        ioctl(self.fd if fd is None else fd, cmd, p, name)
        rm_check(name, p.rmStatus)
        return p

    def register_gpu(self, uuid: bytes):
        self._call(UVM_REGISTER_GPU, "UVM_REGISTER_GPU_PARAMS", {"gpu_uuid": {"uuid": list(uuid)}, "rmCtrlFd": -1})

    def register_vaspace(self, uuid: bytes, ctl_fd: int, client: int, vaspace: int):
        self._call(UVM_REGISTER_GPU_VASPACE, "UVM_REGISTER_GPU_VASPACE_PARAMS",
                   {"gpuUuid": {"uuid": list(uuid)}, "rmCtrlFd": ctl_fd, "hClient": client, "hVaSpace": vaspace})

    def register_channel(self, uuid: bytes, ctl_fd: int, client: int, channel: int, va: int, size_B: int):
        self._call(UVM_REGISTER_CHANNEL, "UVM_REGISTER_CHANNEL_PARAMS",
                   {"gpuUuid": {"uuid": list(uuid)}, "rmCtrlFd": ctl_fd, "hClient": client, "hChannel": channel,
                    "base": va, "length": size_B})

    def unregister_channel(self, uuid: bytes, client: int, channel: int):
        self._call(UVM_UNREGISTER_CHANNEL, "UVM_UNREGISTER_CHANNEL_PARAMS",
                   {"gpuUuid": {"uuid": list(uuid)}, "hClient": client, "hChannel": channel})

    def create_external_range(self, va: int, size_B: int):
        self._call(UVM_CREATE_EXTERNAL_RANGE, "UVM_CREATE_EXTERNAL_RANGE_PARAMS", {"base": va, "length": size_B})

    def map_external(self, uuid: bytes, ctl_fd: int, client: int, memory: int, va: int, size_B: int):
        p = ffi.new("UVM_MAP_EXTERNAL_ALLOCATION_PARAMS *",
                    {"base": va, "length": size_B, "gpuAttributesCount": 1, "rmCtrlFd": ctl_fd, "hClient": client,
                     "hMemory": memory})
        p.perGpuAttributes[0].gpuUuid.uuid = list(uuid)
        p.perGpuAttributes[0].gpuMappingType = MAPPING_READ_WRITE_ATOMIC
        ioctl(self.fd, UVM_MAP_EXTERNAL_ALLOCATION, p, "UVM_MAP_EXTERNAL_ALLOCATION")
        rm_check("UVM_MAP_EXTERNAL_ALLOCATION", p.rmStatus, f"{size_B} B at {va:#x}")

    def free(self, va: int, size_B: int):
        self._call(UVM_FREE, "UVM_FREE_PARAMS", {"base": va, "length": size_B})
