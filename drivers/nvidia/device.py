"""NvDevice: bring-up of one GPU over RM and UVM (nvidia-hopper.md 3.4), and the HAL Device.

Order: client, card, device fd, device, subdevice, class list, usermode doorbell page, GPU VA
space (gpu_va: RM-owned, or UVM-owned with KERNELOS_NV_VA=uvm), channel group with compute and copy
channels. `close()` releases everything: CPU mappings, UVM state, the RM client, every fd.
"""

import importlib
import os
import threading
import time

import hal
from hal import DeviceError, DeviceFault, DeviceNotFound, DeviceTimeout, InvalidArgument

from . import faults, identity, rm
from .channel import ChannelGroup
from .classes import host_c86f, objects
from .gpu_va import open_va_space
from .memory import Memory
from .structs import ffi, layout

# The launch-path modules (a third of the driver's import time, none needed before the queues exist)
# are imported on a helper thread while the bring-up waits in ioctls, which release the GIL.
LAUNCH_MODULES = (".signal", ".program", ".queue")


def _import_launch_modules():
    for name in LAUNCH_MODULES:
        try:
            importlib.import_module(name, __package__)
        except Exception:
            return  # the import where the module is used raises it again, with its traceback

SHARED_WINDOW, LOCAL_WINDOW = 0x729400000000, 0x729300000000   # 4 GB-aligned apertures (not memory)


class NvDevice(hal.Device):
    SHARED_WINDOW, LOCAL_WINDOW = SHARED_WINDOW, LOCAL_WINDOW

    def __init__(self, index: int):
        self.ffi, self.index, self.closed, self.spec = ffi, index, False, f"nv:{index}"
        self.rm = self.va_space = self.memory = None
        self.groups: dict = {}                 # queue kind -> ChannelGroup
        self.dev_fd = -1
        self.client = 0
        self.queues: dict = {}
        self.local_per_thread_B, self.local_per_tpc_B, self.local_mem = 0, 0, None
        self.pending_fault = None
        self.opened_at_s = faults.now_s()
        try:
            self._bring_up(index)
        except BaseException as e:
            try:
                self._release()
            except BaseException as release_error:  # the bring-up error stays the one raised
                e.add_note(f"releasing what was brought up also failed: {release_error!r}")
            raise
        super().__init__(self.info)
        self.targets = (self.info.arch,)

    # --- bring-up -----------------------------------------------------------------------------
    def _step(self, name: str):
        """Record how long each bring-up step took (bringup_s, shown by the shell and the benchmarks)."""
        now = time.perf_counter()
        self.bringup_s[name] = round(now - self._t, 4)
        self._t = now

    def _bring_up(self, index: int):
        self.bringup_s, self._t = {}, time.perf_counter()
        imports = threading.Thread(target=_import_launch_modules, name="nv-imports", daemon=True)
        imports.start()
        try:
            self._bring_up_steps(index)
        finally:
            imports.join()

    def _bring_up_steps(self, index: int):
        self.rm = rm.RmFile()
        self.client = self.rm.alloc(0, objects.NV01_ROOT_CLIENT, what="client")
        self.driver_version = identity.driver_version(self.rm, self.client)
        self.layout = layout(int(self.driver_version.split(".")[0]))
        cards = self.rm.card_info()
        if not 0 <= index < len(cards):
            raise DeviceNotFound(f"nv:{index}: only {len(cards)} NVIDIA GPU(s) present")
        self.card = cards[index]
        self._step("client")
        self.dev_fd = self.open_dev_fd()
        self.device, self.subdevice = identity.open_device(self.rm, self.client, self.card)
        self.classes = identity.engine_classes(self.rm, self.client, self.device)
        self._step("device")
        self._map_doorbell()
        self.va_space = open_va_space(self)
        self._step("vaspace")
        self.gr = identity.gr_info(self.rm, self.client, self.subdevice)
        self.sm = ((self.gr["sm_version"] >> 8) & 0xF) * 10 + (self.gr["sm_version"] & 0xF)
        self.info = identity.device_info(self.rm, self.client, self.device, self.subdevice, self.card, index,
                                         self.driver_version, self.gr, self.classes)
        self._step("identity")
        self.copy_engine_type = self._pick_copy_engine()
        self.memory = Memory(self)
        for kind in hal.QUEUE_KINDS:
            self.groups[kind] = ChannelGroup(self, kind)
        self._step("channels")
        from .signal import SignalPool
        self.signals = SignalPool(self)
        for kind in hal.QUEUE_KINDS:
            self._queue(kind, 0)
        self._step("queues")

    def _pick_copy_engine(self) -> int:
        present = identity.copy_engines(self.rm, self.client, self.subdevice)
        if not present:
            raise DeviceError(f"{self.spec} lists no copy engine")
        return pick_copy_engine(present, os.environ.get("KERNELOS_NV_COPY_ENGINE"))

    def open_dev_fd(self) -> int:
        """A fresh /dev/nvidiaN fd registered with our control fd (one mmap context per file)."""
        fd = rm.open_node(f"/dev/nvidia{self.card.minor_number}")
        try:
            rm.register_fd(fd, self.rm.fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _map_doorbell(self):
        self.usermode = self.rm.alloc(self.subdevice, self.classes["usermode"], root=self.client, what="usermode")
        fd = self.open_dev_fd()
        try:
            self.rm.map_memory(self.client, self.device, self.usermode, host_c86f.USERMODE_SIZE_B, fd)
            self.usermode_addr = rm.mmap(0, host_c86f.USERMODE_SIZE_B, rm.PROT_READ | rm.PROT_WRITE, rm.MAP_SHARED,
                                         fd, what="usermode doorbell")
        finally:
            os.close(fd)
        self.doorbell = ffi.cast("uint32_t *", self.usermode_addr + host_c86f.USERMODE_DOORBELL)

    # --- health, faults and recovery ----------------------------------------------------------------
    # A fault (RM error notifier, Xid) kills the whole channel group: every queue on it is marked dead,
    # a new group is built at once, and dev.queue(kind) hands out fresh queues on it. Until one is
    # taken, waits keep raising the fault. A timeout only tears down a queue that is busy, made no
    # progress and is not blocked on a semaphore acquire (a hung kernel); a queue waiting on a signal
    # the host sets later is left alone.
    def progress_mark(self) -> tuple:
        return tuple(q.completed() for q in self.queues.values())

    def check_health(self):
        """Raise DeviceFault if RM reported an error on a channel (or one was reported earlier)."""
        if self.pending_fault:
            raise DeviceFault(self.pending_fault)
        for kind, group in list(self.groups.items()):
            error = group.error()
            if error:
                self._fault(error, [kind])

    def _fault(self, error: str, kinds):
        xids = faults.xid_lines(self.opened_at_s)
        names = ", ".join(f"{k}0" for k in kinds)
        self.pending_fault = (f"{self.spec}: queue {names} faulted: {error}"
                              + (f"; kernel log: {' | '.join(xids)}" if xids else "")
                              + "; its pending work was dropped: take a new queue with dev.queue(kind)")
        self._rebuild_channels(kinds, self.pending_fault)
        raise DeviceFault(self.pending_fault)

    def on_timeout(self, sig, value: int, timeout_s: float, progress_before: tuple):
        """A wait ran out: a fault, a hung kernel (tear its queues down), or just a signal not yet set."""
        self.check_health()
        xids = faults.xid_lines(self.opened_at_s)
        msg = f"signal at {sig.va:#x} did not reach {value} within {timeout_s} s (it holds {sig._read()})"
        busy = [q.kind for q in self.queues.values() if q.completed() < q.submitted]
        if xids and busy:
            self._fault(f"wait timed out ({msg})", busy)
        hung = [q for q in self.queues.values()
                if q.completed() < q.submitted and not q.blocked_on_acquire()] if self.progress_mark() == progress_before \
            else []
        if hung:
            names = ", ".join(f"{q.kind}{q.index}" for q in hung)
            self._rebuild_channels([q.kind for q in hung], f"hung ({msg})")
            msg += (f"; queue(s) {names} made no progress and wait on nothing (a kernel that never ends): "
                    "the channels were torn down and rebuilt, take new queues with dev.queue(kind)")
        raise DeviceTimeout(msg)

    def _rebuild_channels(self, kinds, reason: str):
        """Mark the queues of kinds dead, free their channel groups (stopping whatever ran), build new ones."""
        self.opened_at_s = faults.now_s()
        for kind in kinds:
            q = self.queues.pop(kind, None)
            if q is not None:
                q.die(reason)
            old = self.groups.pop(kind)
            try:
                old.close()
            except DeviceError:
                pass  # a dead TSG may refuse parts of its teardown; the new group does not depend on it
            self.groups[kind] = ChannelGroup(self, kind)

    # --- local memory -------------------------------------------------------------------------------
    def ensure_local_memory(self, per_thread_B: int):
        """Grow the shader local memory (stacks, spills) to per_thread_B bytes per thread."""
        if per_thread_B <= self.local_per_thread_B:
            return
        slm = (per_thread_B + 31) // 32 * 32
        per_tpc = ((slm * 32 + 0x1FF) // 0x200 * 0x200) * self.gr["max_warps_per_sm"] * self.gr["sm_per_tpc"]
        per_tpc = (per_tpc + 0x7FFF) // 0x8000 * 0x8000
        total = (per_tpc * self.gr["tpc_per_gpc"] * self.gr["gpcs"] + 0x1FFFF) // 0x20000 * 0x20000
        new = self.memory.alloc_vram(total)
        self.local_per_tpc_B = per_tpc
        self._queue("compute", 0).sync_setup(local_va=new.va, local_per_tpc_B=per_tpc)
        if self.local_mem is not None:
            self.memory.free(self.local_mem)
        self.local_mem, self.local_per_thread_B = new, slm

    # --- HAL ------------------------------------------------------------------------------------------
    def _alloc(self, size_B: int, host_visible: bool):
        a = self.memory.alloc_host(size_B) if host_visible else self.memory.alloc_vram(size_B)
        buf = hal.Buffer(self, a.va, size_B, host_visible)
        buf._nv_alloc = a
        return buf

    def _free(self, buf):
        self.memory.free(buf._nv_alloc)

    def _host_view(self, buf) -> memoryview:
        return rm.host_view(buf.va, buf.size_B)

    def _host_view_at(self, va: int, size_B: int) -> memoryview:
        return rm.host_view(va, size_B)

    def _signal(self, value: int):
        from .signal import NvSignal
        return NvSignal(self, self.signals.take(), value)

    def _queue(self, kind: str, index: int):
        if kind not in hal.QUEUE_KINDS or index != 0:
            raise InvalidArgument(f"{self.spec} has queues compute:0 and copy:0, not {kind}:{index}")
        if kind not in self.queues:            # first use, or the old one died with its channel group
            self.pending_fault = None          # taking a fresh queue acknowledges the fault
            from .queue import NvQueue
            q = NvQueue(self, kind)
            q.init_channel()
            self.queues[kind] = q
        return self.queues[kind]

    def free_when_done(self, allocation):
        """Free memory that submitted work may still read once the compute queue has passed it."""
        q = self.queues.get("compute")
        if q is None or q.completed() >= q.submitted:
            self.memory.free(allocation)
        else:
            q.retired.append((q.submitted, [allocation]))

    def _load_program(self, binary: bytes, name: str, meta):
        from .program import NvProgram
        return NvProgram(self, binary, name, meta)

    def memory_map(self) -> list:
        self._check_open()
        return [{"va": a.va, "size_B": a.size_B, "kind": a.kind} for a in self.memory.live.values()]

    def _close(self):
        self._release()

    def _release(self):
        """Release in dependency order, best effort: every step runs even if an earlier one failed, and
        the first error is raised once all have run. What a step released is forgotten either way."""
        errors = []

        def attempt(step, *args):
            try:
                step(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the other steps
                errors.append(e)

        memory, self.memory = self.memory, None
        if memory is not None:
            attempt(memory.close)                    # every GPU-VA CPU mapping at once
        usermode_addr, self.usermode_addr = getattr(self, "usermode_addr", 0), 0
        if usermode_addr:
            attempt(rm.munmap, usermode_addr, host_c86f.USERMODE_SIZE_B)
        groups, self.groups = self.groups, {}
        for group in groups.values():
            for ch in group.channels:
                attempt(rm.munmap, ch.notifier_addr, ch.notifier_B)
        va_space, self.va_space = self.va_space, None
        if va_space is not None:
            attempt(va_space.close)                  # UVM (if it owns the VA space) drops its mappings
        rm_file, self.rm = self.rm, None
        if rm_file is not None:
            client, self.client = self.client, 0
            if client:
                attempt(rm_file.free_client, client)  # frees every RM object under the client
            attempt(rm_file.close)
        dev_fd, self.dev_fd = self.dev_fd, -1
        if dev_fd >= 0:
            attempt(os.close, dev_fd)
        if errors:
            raise errors[0]


def pick_copy_engine(present: list, setting) -> int:
    """The copy queue's engine among the present ones (ENGINE_TYPE_COPYn values): setting (the value
    of KERNELOS_NV_COPY_ENGINE, or None) = "n" picks COPYn, None picks the last one listed."""
    if setting is None:
        return present[-1]
    numbers = [e - objects.ENGINE_TYPE_COPY0 for e in present]
    try:
        engine = objects.ENGINE_TYPE_COPY0 + int(setting)
    except ValueError:
        engine = None
    if engine not in present:
        raise InvalidArgument(f"KERNELOS_NV_COPY_ENGINE={setting!r}: must be the number of a copy engine this GPU has, "
                              f"one of {numbers} (or unset for COPY{numbers[-1]})")
    return engine
