"""The cpu device: host memory as device memory, executor threads as queues."""

import mmap
import os

from hal.buffer import Buffer
from hal.device import Device, DeviceInfo
from hal.errors import DeviceError, InvalidArgument, OutOfDeviceMemory
from hal.program import KernelMeta

from . import knobs, native
from .program import CpuProgram
from .queue import CpuQueue
from .signal import CpuSignal, SignalSlab

PAGE_B = mmap.PAGESIZE
QUEUES_PER_KIND = 4


class CpuDevice(Device):
    """Buffers are page-aligned anonymous mappings (va = host address, always host-visible), charged
    against a budget of memory_B. Releasing memory, signals and programs the executors may still
    touch is deferred until every queue has passed the point where it was released."""

    def __init__(self, info: DeviceInfo):
        super().__init__(info)
        self._ffi, self._lib = native.runtime()
        self.memory_B = info.memory_B
        self.used_B = 0
        self._rt = self._lib.kos_dev_create(max(info.compute_units - 1, 0), knobs.spin_ns())
        if self._rt == self._ffi.NULL:
            raise DeviceError("cannot create the cpu runtime")
        self._buffers = {}         # va -> Buffer (live)
        self._queues = {}          # (kind, index) -> CpuQueue
        self._retired = []         # [(fences, release)] waiting for queues to pass the fences
        self._programs = set()     # loaded and not yet unloaded
        self.programs_closed = 0   # bumped by Program.close, so streams re-check their programs only then
        self._program_names = {}   # entry address -> name, for decoders and fault reports
        self._signals = SignalSlab(self._lib, PAGE_B)

    # --- memory -----------------------------------------------------------------------------
    def _alloc(self, size_B: int, host_visible: bool):
        self._reap()
        mapped_B = -(-size_B // PAGE_B) * PAGE_B
        if self.used_B + mapped_B > self.memory_B:
            raise OutOfDeviceMemory(f"cannot allocate {size_B} B on cpu: {self.used_B} of {self.memory_B} B in use "
                                    f"(the budget is {self.info.extra['memory budget']}); free buffers first")
        va = self._lib.kos_map(mapped_B)
        if not va:
            raise OutOfDeviceMemory(f"mmap of {mapped_B} B failed: {os.strerror(self._ffi.errno)}")
        self.used_B += mapped_B
        buf = Buffer(self, va, size_B, host_visible=True)
        self._buffers[va] = buf
        return buf

    def _free(self, buf):
        mapped_B = -(-buf.size_B // PAGE_B) * PAGE_B
        del self._buffers[buf.va]
        self.used_B -= mapped_B
        self._retire(lambda: self._lib.kos_unmap(buf.va, mapped_B))

    def _host_view(self, buf) -> memoryview:
        return memoryview(self._ffi.buffer(self._ffi.cast("char *", buf.va), buf.size_B))

    def memory_map(self) -> list:
        self._check_open()
        return [{"va": b.va, "size_B": b.size_B, "kind": "host"} for b in sorted(self._buffers.values(), key=lambda b: b.va)]

    # --- signals, queues, programs --------------------------------------------------------
    def _signal(self, value: int):
        sig = CpuSignal(self, self._signals.take())
        sig._write(value)
        return sig

    def _queue(self, kind: str, index: int):
        if not isinstance(index, int) or not 0 <= index < QUEUES_PER_KIND:
            raise InvalidArgument(f"cpu queue index must be 0..{QUEUES_PER_KIND - 1}, got {index!r}")
        q = self._queues.get((kind, index))
        if q is not None and q.dead:  # a fault killed it: tear it down and start a fresh one
            q.close()
            q = None
        if q is None:
            q = self._queues[(kind, index)] = CpuQueue(self, kind, index)
        return q

    def _load_program(self, binary: bytes, name: str, meta):
        if not isinstance(meta, KernelMeta):
            raise InvalidArgument(f"load_program needs a KernelMeta for {name!r}, got {type(meta).__name__}")
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidArgument(f"kernel entry must be a C identifier, got {name!r}")
        prog = CpuProgram(self, binary, name, meta)
        self._programs.add(prog)
        self._program_names[prog.fn] = name
        return prog

    def _unloaded(self, prog):
        self._programs.discard(prog)
        self._program_names.pop(prog.fn, None)

    def fault_report(self) -> str:
        return "; ".join(filter(None, (q.fault_report() for q in self._queues.values()))) or "no queue has faulted"

    # --- deferred release -----------------------------------------------------------------
    def _retire(self, release):
        """Run release() once every queue has finished what was submitted before now."""
        fences = [(q, q.idle_fence()) for q in self._queues.values() if q._q is not None]
        self._retired.append((fences, release))
        self._reap()

    def _reap(self):
        keep = []
        for fences, release in self._retired:
            if all(q._q is None or q.passed(f) for q, f in fences):
                release()
            else:
                keep.append((fences, release))
        self._retired = keep

    def _close(self):
        for q in self._queues.values():
            q.close()
        self._queues.clear()
        for _, release in self._retired:
            release()
        self._retired = []
        for prog in list(self._programs):
            prog.closed = True
            prog._unload()
        for va, buf in self._buffers.items():
            self._lib.kos_unmap(va, -(-buf.size_B // PAGE_B) * PAGE_B)
        self._buffers.clear()
        self._signals.close()
        self._lib.kos_dev_destroy(self._rt)
        self._rt = None
