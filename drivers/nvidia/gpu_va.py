"""The GPU virtual address space of an open device, owned by RM or by UVM (KERNELOS_NV_VA=rm|uvm).

rm (the default): RM owns the VA space and builds its page tables. Memory is mapped with
  RM_MAP_MEMORY_DMA at our fixed VA through a virtual-memory object bound to the VA space, and RM
  maps each channel's context buffers itself. No UVM at all: no UVM_REGISTER_GPU, which brings up
  UVM's whole per-GPU state (its own channels, page tables, fault buffers) in every process: the
  VA-space step took 175-190 ms with UVM and 5-7 ms without on an H200 (issue 9; README, "Start-up
  on NVIDIA"). Such a VA space may not enable page faulting
  (RM refuses a fault-capable VA space that UVM does not own); a bad access is then a fatal MMU
  fault on the channel, reported through the error notifier as before.
uvm: the VA space is externally owned by UVM, as CUDA does (nvidia-hopper.md 3.4 steps 14-16, 20.6):
  mappings go through UVM_CREATE_EXTERNAL_RANGE and UVM_MAP_EXTERNAL_ALLOCATION, and each channel
  registers a VA range for UVM to map its context buffers into.
"""

import os

from hal import DeviceError

from . import identity
from .classes import objects
from .structs import ffi
from .uvm import Uvm

MODES = ("rm", "uvm")
VASPACE_BASE, VASPACE_SIZE_B = 0x1000, 0x1FFFFFB000000
PAGE_2M = 0x200000
# NVOS46 flags: CACHE_SNOOP_ENABLE (bit 4) | DMA_OFFSET_FIXED (bit 15) | PAGE_SIZE in bits 11:8
MAP_SNOOP_FIXED = (1 << 4) | (1 << 15)
MAP_PAGE_4K, MAP_PAGE_HUGE = 1 << 8, 4 << 8
CTX_VA_B = 64 << 20          # uvm mode: VA range UVM maps one channel's context buffers into


def open_va_space(gpu):
    mode = os.environ.get("KERNELOS_NV_VA", "rm")
    if mode not in MODES:
        raise DeviceError(f"KERNELOS_NV_VA={mode!r}: expected one of {', '.join(MODES)}")
    return RmVaSpace(gpu) if mode == "rm" else UvmVaSpace(gpu)


def _alloc_vaspace(g, flags: int) -> int:
    return g.rm.alloc(g.device, objects.FERMI_VASPACE_A, ffi.new(
        g.layout["NV_VASPACE_ALLOCATION_PARAMETERS"] + " *",
        {"vaBase": VASPACE_BASE, "vaSize": VASPACE_SIZE_B, "flags": flags}), root=g.client, what="VA space")


def _map_dma(g, virtmem: int, a, flags: int):
    g.rm.map_memory_dma(g.layout["NVOS46_PARAMETERS"], g.client, g.device, virtmem, a.handle, a.size_B, a.va, flags)


class RmVaSpace:
    mode = "rm"

    def __init__(self, gpu):
        self.gpu = g = gpu
        self.handle = _alloc_vaspace(g, 0)
        # limit 0: the whole VA space; mappings through this object land in it
        self.virtmem = g.rm.alloc(g.device, objects.NV01_MEMORY_VIRTUAL,
                                  ffi.new("NV_MEMORY_VIRTUAL_ALLOCATION_PARAMS *", {"hVASpace": self.handle}),
                                  root=g.client, what="virtual memory")

    def map(self, a):
        """PTEs of the allocation's own page size: 2 MiB for huge-page VRAM, else 4 KiB (host pages, small VRAM)."""
        _map_dma(self.gpu, self.virtmem, a, MAP_SNOOP_FIXED | (MAP_PAGE_HUGE if a.page_B == PAGE_2M else MAP_PAGE_4K))

    def unmap(self, a):
        """Nothing to do: freeing the memory object (RM_FREE, which always follows) drops its mappings."""

    def register_channel(self, channel):
        """Nothing to do: RM maps the channel's context buffers into its VA space itself."""

    def unregister_channel(self, channel):
        """Nothing to do (see register_channel)."""

    def close(self):
        """Nothing to do: the RM client's free releases the VA space."""


class UvmVaSpace:
    mode = "uvm"
    FLAGS = (1 << 6) | (1 << 3)          # ENABLE_PAGE_FAULTING | IS_EXTERNALLY_OWNED
    VIRTMEM_LIMIT = 0x1FFFFFFFFFFFF

    def __init__(self, gpu):
        self.gpu = g = gpu
        self.uvm = Uvm()
        try:
            self.virtmem = g.rm.alloc(g.device, objects.NV01_MEMORY_VIRTUAL, ffi.new(
                "NV_MEMORY_VIRTUAL_ALLOCATION_PARAMS *", {"limit": self.VIRTMEM_LIMIT}), root=g.client,
                what="virtual memory")
            self.handle = _alloc_vaspace(g, self.FLAGS)
            self.uuid = identity.uuid(g.rm, g.client, g.subdevice)
            self.uvm.register_gpu(self.uuid)
            self.uvm.register_vaspace(self.uuid, g.rm.fd, g.client, self.handle)
        except BaseException:
            self.uvm.close()
            raise

    def map(self, a):
        g = self.gpu
        self.uvm.create_external_range(a.va, a.size_B)
        try:
            _map_dma(g, self.virtmem, a, MAP_SNOOP_FIXED | MAP_PAGE_4K)
            self.uvm.map_external(self.uuid, g.rm.fd, g.client, a.handle, a.va, a.size_B)
        except BaseException:
            self.uvm.free(a.va, a.size_B)
            raise

    def unmap(self, a):
        self.uvm.free(a.va, a.size_B)

    def register_channel(self, channel):
        g = self.gpu
        channel.ctx_va = g.memory.va.alloc(CTX_VA_B, PAGE_2M)
        self.uvm.register_channel(self.uuid, g.rm.fd, g.client, channel.handle, channel.ctx_va, CTX_VA_B)

    def unregister_channel(self, channel):
        g = self.gpu
        self.uvm.unregister_channel(self.uuid, g.client, channel.handle)
        g.memory.va.free(channel.ctx_va)

    def close(self):
        """UVM drops its mappings and channel registrations."""
        self.uvm.close()
