"""Device memory (VRAM) and pinned host memory, each with a GPU virtual address.

The process reserves one CPU address range per open device (PROT_NONE) and hands out GPU VAs
inside it, so a buffer's CPU mapping (when it has one) sits at the same address as its GPU VA
and no other CPU mapping can take those addresses (UVM owns the VA space: nvidia-hopper.md 5.4).
All VAs stay below 2^40 (GPFIFO entries, SEND_PCAS and semaphore limits).

GPU mapping at the fixed VA: the device's VA space does it (gpu_va.py: RM_MAP_MEMORY_DMA, plus
UVM's external-range calls when UVM owns the VA space). Frees undo all of it.
"""

import os
from dataclasses import dataclass

from hal import DeviceError

from . import rm
from .classes import objects
from .vaspace import VaAllocator

# CPU/GPU VA slots: one per open device, each SLOT_B long, all below 2^40.
SLOT_BASE, SLOT_B, SLOT_COUNT = 0x40_0000_0000, 0x1C_0000_0000, 8
PAGE_4K, PAGE_2M = 0x1000, 0x200000
HUGE_PAGE_MIN_B = 8 << 20

# NVOS32 attr/attr2/flags (nvos.h) for vidmem and system memory allocations
ATTR_PAGE_SIZE_HUGE = 3 << 23
ATTR_LOCATION_PCI = 1 << 25
ATTR_PHYSICALITY_CONTIGUOUS, ATTR_PHYSICALITY_ALLOW_NONCONTIG = 2 << 27, 3 << 27
ATTR2_ZBC_PREFER_NO_ZBC, ATTR2_GPU_CACHEABLE_YES, ATTR2_GPU_CACHEABLE_NO = 1, 1 << 2, 2 << 2
ATTR2_PAGE_SIZE_HUGE_2MB = 1 << 20
ALLOC_FLAGS = 0x8000 | 0x4000 | 0x100 | 0x1        # MAP_NOT_REQUIRED|MEMORY_HANDLE_PROVIDED|ALIGNMENT_FORCE|IGNORE_BANK
ALLOC_FLAGS_PERSISTENT_VIDMEM = 0x10000
TYPE_IMAGE, TYPE_NOTIFIER, FORMAT_PITCH = 0, 13, 6
# Host allocations of 2 MiB and more ask for transparent huge pages: fewer pages for RM to pin (copy
# bandwidth measured the same with 4 KiB pages on the H100, BENCHMARKS.md)
HOST_HUGE_PAGES = True
MADV_HUGEPAGE = 14
# NVOS02 flags for host pages: PHYSICALITY_NONCONTIGUOUS | COHERENCY_CACHED | MAPPING_NO_MAP
OS_DESCRIPTOR_FLAGS = (1 << 4) | (1 << 12) | (1 << 30)


@dataclass
class Allocation:
    va: int
    size_B: int
    handle: int
    kind: str                 # "vram" | "host"
    cpu_mapped: bool          # a CPU mapping exists at va
    page_B: int = PAGE_4K     # physical page size (PAGE_2M: huge-page VRAM)


class Memory:
    """Allocations of one open device. `gpu` is the device's bring-up state (rm, uvm, handles)."""

    def __init__(self, gpu):
        self.gpu = gpu
        self.base = self._reserve_slot()
        self.va = VaAllocator(self.base, SLOT_B)
        self.live: dict = {}
        self._next_handle = 0x1000

    @staticmethod
    def _reserve_slot() -> int:
        flags = rm.MAP_PRIVATE | rm.MAP_ANONYMOUS | rm.MAP_NORESERVE | rm.MAP_FIXED_NOREPLACE
        for i in range(SLOT_COUNT):
            want = SLOT_BASE + i * SLOT_B
            try:
                got = rm.mmap(want, SLOT_B, 0, flags, what="GPU VA reservation")
            except DeviceError:
                continue
            if got == want:
                return got
            rm.munmap(got, SLOT_B)  # old kernels treat NOREPLACE as a hint
        raise DeviceError(f"no free {SLOT_B >> 30} GiB CPU address range below 2^40 for the GPU VA space "
                          f"(all {SLOT_COUNT} slots are in use: too many devices open in this process?)")

    def _unreserve(self, va: int, size_B: int):
        rm.mmap(va, size_B, 0, rm.MAP_PRIVATE | rm.MAP_ANONYMOUS | rm.MAP_NORESERVE | rm.MAP_FIXED,
                what="GPU VA re-reservation")

    def handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    # --- allocation ---------------------------------------------------------------------------
    def alloc_vram(self, size_B: int, cpu_map: bool = False, contiguous: bool = False) -> Allocation:
        g = self.gpu
        page = PAGE_2M if size_B >= HUGE_PAGE_MIN_B else PAGE_4K
        size_B = (size_B + page - 1) // page * page
        va = self.va.alloc(size_B, page)
        handle = 0
        try:
            attr = (ATTR_PHYSICALITY_CONTIGUOUS if contiguous else ATTR_PHYSICALITY_ALLOW_NONCONTIG) | (
                ATTR_PAGE_SIZE_HUGE if page == PAGE_2M else 0)
            attr2 = ATTR2_ZBC_PREFER_NO_ZBC | ATTR2_GPU_CACHEABLE_YES | (ATTR2_PAGE_SIZE_HUGE_2MB if page == PAGE_2M else 0)
            params = g.ffi.new("NV_MEMORY_ALLOCATION_PARAMS *", {
                "owner": g.client, "type": TYPE_IMAGE, "flags": ALLOC_FLAGS | ALLOC_FLAGS_PERSISTENT_VIDMEM,
                "attr": attr, "attr2": attr2, "format": FORMAT_PITCH, "size": size_B, "alignment": page,
                "limit": size_B - 1})
            handle = g.rm.alloc(g.device, objects.NV01_MEMORY_LOCAL_USER, params, root=g.client, what="VRAM")
            if cpu_map:
                self._map_cpu(handle, va, size_B, g.open_dev_fd())
            return self._map_gpu(Allocation(va, size_B, handle, "vram", cpu_map, page))
        except BaseException:
            self._undo(va, size_B, handle, cpu_map)
            raise

    def alloc_host(self, size_B: int) -> Allocation:
        """Pinned host pages (cached on the CPU, snooped by the GPU), mapped at the same VA on both."""
        g = self.gpu
        huge = HOST_HUGE_PAGES and size_B >= PAGE_2M
        page = PAGE_2M if huge else PAGE_4K
        size_B = (size_B + page - 1) // page * page
        va = self.va.alloc(size_B, page)
        handle = 0
        try:
            share = rm.MAP_PRIVATE if huge else rm.MAP_SHARED
            rm.mmap(va, size_B, rm.PROT_READ | rm.PROT_WRITE, share | rm.MAP_ANONYMOUS | rm.MAP_FIXED, what="host memory")
            if huge:
                rm.libc.madvise(rm.ffi.cast("void *", va), size_B, MADV_HUGEPAGE)   # a hint; 4 KB pages also work
            handle = rm.alloc_os_memory(g.dev_fd, g.client, g.device, self.handle(), va, size_B, OS_DESCRIPTOR_FLAGS)
            return self._map_gpu(Allocation(va, size_B, handle, "host", True))
        except BaseException:
            self._undo(va, size_B, handle, True)
            raise

    def alloc_notifier(self, size_B: int = 0x10000):
        """Uncached system memory for an error notifier, CPU-mapped (not GPU-mapped); (handle, cpu address)."""
        g = self.gpu
        params = g.ffi.new("NV_MEMORY_ALLOCATION_PARAMS *", {
            "owner": g.client, "type": TYPE_NOTIFIER, "flags": ALLOC_FLAGS,
            "attr": ATTR_PHYSICALITY_ALLOW_NONCONTIG | ATTR_LOCATION_PCI,
            "attr2": ATTR2_ZBC_PREFER_NO_ZBC | ATTR2_GPU_CACHEABLE_NO, "format": FORMAT_PITCH, "size": size_B,
            "alignment": PAGE_4K, "limit": size_B - 1})
        handle = g.rm.alloc(g.device, objects.NV01_MEMORY_SYSTEM, params, root=g.client, what="notifier")
        fd = rm.open_node("/dev/nvidiactl")
        try:
            g.rm.map_memory(g.client, g.device, handle, size_B, fd)
            addr = rm.mmap(0, size_B, rm.PROT_READ | rm.PROT_WRITE, rm.MAP_SHARED, fd, what="notifier")
        finally:
            os.close(fd)
        return handle, addr, size_B

    def _map_cpu(self, handle: int, va: int, size_B: int, fd: int):
        """BAR1 mapping of VRAM at va through a fresh registered /dev/nvidiaN fd (one mmap context per file)."""
        try:
            self.gpu.rm.map_memory(self.gpu.client, self.gpu.device, handle, size_B, fd)
            rm.mmap(va, size_B, rm.PROT_READ | rm.PROT_WRITE, rm.MAP_SHARED | rm.MAP_FIXED, fd, what="VRAM (BAR1)")
        finally:
            os.close(fd)

    def _map_gpu(self, a: Allocation) -> Allocation:
        self.gpu.va_space.map(a)
        self.live[a.va] = a
        return a

    def _undo(self, va: int, size_B: int, handle: int, cpu_mapped: bool):
        if cpu_mapped:
            self._unreserve(va, size_B)
        if handle:
            self.gpu.rm.free(self.gpu.client, self.gpu.device, handle)
        self.va.free(va)

    def free(self, a: Allocation):
        if self.live.pop(a.va, None) is None:
            return
        self.gpu.va_space.unmap(a)
        self._undo(a.va, a.size_B, a.handle, a.cpu_mapped)

    def close(self):
        """Drop the CPU side only; the RM client's free releases the device side in one call."""
        rm.munmap(self.base, SLOT_B)
        self.live.clear()
