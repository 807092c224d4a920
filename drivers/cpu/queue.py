"""cpu queues: a ring of 64-byte packets (runtime.h) consumed in order by one executor thread.

A CommandStream records packets once into its own memory. submit() pushes at most
ceil(vars / 6) SETVALS packets (the Var values) and one INDIRECT packet that points at the recorded
packets, so a replay costs the same whatever the number of launches in it.
"""

import signal as _signals
import threading
import time
from collections import deque

from hal.errors import DeviceClosed, DeviceFault, DeviceTimeout, InvalidArgument
from hal.queue import CommandStream, Queue, Var

RING_PACKETS = 4096
U64 = (1 << 64) - 1
ARGS_ALIGN_B = 16
SUBMIT_TIMEOUT_NS = 10_000_000_000  # how long submit waits for ring space before DeviceTimeout
PRUNE_EVERY = 32  # release finished submits' memory in batches, not on every submit


class CpuQueue(Queue):
    def __init__(self, device, kind: str, index: int):
        super().__init__(device, kind, index)
        self._lib, self._ffi = device._lib, device._ffi
        self._q = self._lib.kos_queue_create(device._rt, RING_PACKETS)
        if self._q == self._ffi.NULL:
            raise DeviceFault(f"cannot start the executor of queue {kind}{index}")
        self._state = self._ffi.new("uint64_t[8]")
        self._inflight = deque()  # (wptr after a submit, what the executor may read until rptr passes it)
        self._inflight_lock = threading.Lock()

    def stream(self) -> "CpuStream":
        self.device._check_open()
        return CpuStream(self)

    def state(self) -> dict:
        s = self._raw_state()
        out = {"kind": self.kind, "index": self.index, "wptr": s[0], "rptr": s[1], "pending": s[0] - s[1],
               "capacity": s[2], "dead": bool(s[3]), "executor_sleeping": bool(s[7])}
        if s[3] and s[4]:
            out["fault"] = f"{_signal_name(s[4])} at {s[5]:#x} in kernel {self.device._program_names.get(s[6], hex(s[6]))}"
        elif s[3]:  # died in a WAIT on a signal that a dead queue (s[6]) would have set
            owner = next((f"queue {q.kind}{q.index}" for q in self.device._queues.values() if q._address() == s[6]),
                         "a dead queue")
            out["fault"] = f"waited on signal {s[5]:#x}, which {owner} would have set before it died"
        return out

    def _address(self) -> int:
        return int(self._ffi.cast("uintptr_t", self._q)) if self._q is not None else 0

    def _raw_state(self):
        if self._q is None:
            raise DeviceClosed(f"queue {self.kind}{self.index} was torn down (device closed, or replaced after a fault)")
        self._lib.kos_queue_state(self._q, self._state)
        return list(self._state)

    @property
    def dead(self) -> bool:
        return bool(self._raw_state()[3])

    def fault_report(self) -> str:
        st = self.state()
        return f"queue {self.kind}{self.index} is dead: {st['fault']}" if st["dead"] else ""

    def idle_fence(self) -> int:
        """The write pointer now: work submitted so far is done once rptr reaches it."""
        return self._raw_state()[0]

    def passed(self, fence: int) -> bool:
        return self._raw_state()[1] >= fence or self.dead

    def push(self, packets_va: int, count: int, vals, nvals: int, keepalive):
        """Submit recorded packets; keep what the executor reads alive until it has passed them."""
        if self._q is None:
            raise DeviceClosed(f"queue {self.kind}{self.index} was torn down; record on device.queue({self.kind!r}, {self.index})")
        wptr = self._lib.kos_queue_submit(self._q, packets_va, count, vals, nvals, SUBMIT_TIMEOUT_NS)
        if wptr < 0:
            self._raise_submit_error(-wptr)
        self._inflight.append((wptr, keepalive))  # deque.append is atomic: submits may come from several threads
        if len(self._inflight) > PRUNE_EVERY:
            self._prune()
        return wptr

    def wait_passed(self, fence: int, what: str):
        """Block until the executor has passed fence (DeviceTimeout after SUBMIT_TIMEOUT_NS)."""
        deadline = time.monotonic_ns() + SUBMIT_TIMEOUT_NS
        while not self.passed(fence):
            if time.monotonic_ns() > deadline:
                raise DeviceTimeout(f"queue {self.kind}{self.index} did not pass {what} within "
                                    f"{SUBMIT_TIMEOUT_NS / 1e9} s (a wait on a signal nobody sets?)")
            time.sleep(0)

    def _prune(self):
        rptr = self._lib.kos_queue_rptr(self._q)
        with self._inflight_lock:
            inflight = self._inflight
            while inflight and inflight[0][0] <= rptr:
                inflight.popleft()

    def _raise_submit_error(self, rc: int):
        if rc == self._lib.KOS_FAULT:
            raise DeviceFault(f"{self.fault_report()}; open a new queue with device.queue({self.kind!r}, {self.index})")
        if rc == self._lib.KOS_TIMEOUT:
            raise DeviceTimeout(f"queue {self.kind}{self.index} ring stayed full for {SUBMIT_TIMEOUT_NS / 1e9} s: "
                                f"its executor is blocked (a wait on a signal nobody sets?)")
        raise InvalidArgument(f"submit refused by the runtime (code {rc})")

    def close(self):
        if self._q is not None:
            self._lib.kos_queue_destroy(self._q)
            self._q = None
            self._inflight.clear()


def _signal_name(signo: int) -> str:
    try:
        return _signals.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


class CpuStream(CommandStream):
    """Packets recorded as plain tuples; encoded into runtime memory at the first submit after a change.

    A queue takes submits from several threads; one stream is used by one thread at a time (its
    Var values are staged in the stream's own memory)."""

    def __init__(self, queue: CpuQueue):
        super().__init__(queue)
        self._records = []         # (op, fields...) in order
        self._slots = {}           # Var name -> slot in the SETVALS table
        self._offsets = {}         # Var name -> (min, max) offset, to range-check values at submit
        self._encoded = None       # (packets, count, vals, keepalive) once encoded
        self._programs = []
        self._write_stage = []     # (name, staging char[] the write's copy packet reads, its memoryview)
        self._last_wptr = 0        # ring position after this stream's latest submit

    # --- recording ------------------------------------------------------------------------
    def _launch(self, program, args_bytes: bytes, grid3, block3):
        if grid3[0] * grid3[1] * grid3[2] >= 1 << 63:
            raise InvalidArgument(f"grid {grid3} has more blocks than the cpu runtime counts (2**63)")
        self._programs.append(program)
        self._record(("launch", program, args_bytes, grid3, block3))

    def _copy(self, dst_va: int, src_va: int, size_B: int):
        self._record(("copy", dst_va, src_va, size_B))

    def _host_write(self, dst_va: int, size_B: int, name: str):
        """A copy packet from the stream's own staging bytes, filled with values[name] at submit."""
        ffi = self.device._ffi
        stage = ffi.new("char[]", size_B)
        self._write_stage.append((name, stage, memoryview(ffi.buffer(stage))))
        self._record(("copy", dst_va, int(ffi.cast("uintptr_t", stage)), size_B))

    def _signal(self, sig, value):
        self._record(("signal", sig, self._value(value)))

    def _wait(self, sig, value):
        self._record(("wait", sig, self._value(value)))

    def _timestamp(self, sig):
        self._record(("timestamp", sig, (None, 0)))

    def _record(self, rec):
        self._records.append(rec)
        self._encoded = None

    def _value(self, value):
        """(slot or None, constant or Var offset)."""
        if not isinstance(value, Var):
            return None, value
        if value.name not in self._slots:
            if len(self._slots) == self.device._lib.KOS_MAX_VARS:
                raise InvalidArgument(f"a cpu stream takes at most {len(self._slots)} distinct Vars")
            self._slots[value.name] = len(self._slots)
        lo, hi = self._offsets.get(value.name, (value.offset, value.offset))
        self._offsets[value.name] = (min(lo, value.offset), max(hi, value.offset))
        return self._slots[value.name], value.offset

    # --- encoding -------------------------------------------------------------------------
    def _encode(self):
        ffi, lib = self.device._ffi, self.device._lib
        count = len(self._records)
        packets = ffi.new("kos_packet[]", max(count, 1))
        args_sizes = [(len(r[2]) + ARGS_ALIGN_B - 1) // ARGS_ALIGN_B * ARGS_ALIGN_B for r in self._records if r[0] == "launch"]
        args = ffi.new("char[]", max(sum(args_sizes), 1))
        args_va, args_pos = int(ffi.cast("uintptr_t", args)), 0
        for p, rec in zip(packets, self._records):
            kind = rec[0]
            if kind == "launch":
                _, program, args_bytes, grid3, block3 = rec
                p.op = lib.KOS_OP_LAUNCH
                p.u.launch.grid = list(grid3)
                p.u.launch.block = list(block3)
                p.u.launch.fn = program.fn
                ffi.memmove(args + args_pos, args_bytes, len(args_bytes))
                p.u.launch.args = args_va + args_pos
                args_pos += (len(args_bytes) + ARGS_ALIGN_B - 1) // ARGS_ALIGN_B * ARGS_ALIGN_B
            elif kind == "copy":
                p.op = lib.KOS_OP_COPY
                p.u.copy.dst, p.u.copy.src, p.u.copy.size_B = rec[1:]
            else:
                p.op = {"signal": lib.KOS_OP_SIGNAL, "wait": lib.KOS_OP_WAIT, "timestamp": lib.KOS_OP_TIMESTAMP}[kind]
                sig, (slot, value) = rec[1], rec[2]
                p.u.sig.addr = sig.va
                p.u.sig.value = value & U64
                if slot is not None:
                    p.flags, p.slot = lib.KOS_FLAG_VAR, slot
        vals = ffi.new("uint64_t[]", max(len(self._slots), 1))
        keepalive = (packets, args, tuple(self._programs), tuple(self._write_stage))  # read until the submit is done
        self._encoded = (int(ffi.cast("uintptr_t", packets)), count, vals, keepalive)
        self._bindings = [(name, slot, *self._offsets[name]) for name, slot in self._slots.items()]
        self._programs_checked_at = -1

    # --- submit ---------------------------------------------------------------------------
    def _submit(self, values: dict):
        if self._encoded is None:
            self._encode()
        packets_va, count, vals, keepalive = self._encoded
        if self._programs_checked_at != self.device.programs_closed:  # O(1) unless a program was closed
            for program in self._programs:
                if program.closed:
                    raise DeviceClosed(f"stream launches program {program.name!r}, which was closed")
            self._programs_checked_at = self.device.programs_closed
        for name, slot, lo, hi in self._bindings:
            v = values[name]           # an int: CommandStream.submit converted and checked it
            if v + lo < 0 or v + hi > U64:
                raise InvalidArgument(f"Var {name!r} = {v!r} makes a signal value outside 0..2**64-1")
            vals[slot] = v
        if self._write_stage:
            if self._last_wptr:
                self.queue.wait_passed(self._last_wptr, "the previous submit of a stream whose write bytes change")
            for name, _, view in self._write_stage:
                view[:] = values[name]
        if count:
            self._last_wptr = self.queue.push(packets_va, count, vals, len(self._bindings), keepalive)

    def decode(self) -> list:
        if self._encoded is None:
            self._encode()
        packets = self._encoded[3][0]
        return [decode_packet(p, self.device) for p in packets[0:self._encoded[1]]]


def decode_packet(p, device) -> str:
    """One line per packet: the op and its fields (Vars as slot+offset)."""
    lib = device._lib
    if p.op == lib.KOS_OP_LAUNCH:
        fn = device._program_names.get(p.u.launch.fn, hex(p.u.launch.fn))
        return (f"LAUNCH {fn} grid=({p.u.launch.grid[0]},{p.u.launch.grid[1]},{p.u.launch.grid[2]}) "
                f"block=({p.u.launch.block[0]},{p.u.launch.block[1]},{p.u.launch.block[2]}) args={p.u.launch.args:#x}")
    if p.op == lib.KOS_OP_COPY:
        return f"COPY dst={p.u.copy.dst:#x} src={p.u.copy.src:#x} size_B={p.u.copy.size_B}"
    names = {lib.KOS_OP_SIGNAL: "SIGNAL", lib.KOS_OP_WAIT: "WAIT", lib.KOS_OP_TIMESTAMP: "TIMESTAMP"}
    if p.op in names:
        if p.op == lib.KOS_OP_TIMESTAMP:
            return f"TIMESTAMP addr={p.u.sig.addr:#x}"
        value = p.u.sig.value if p.u.sig.value < 1 << 63 else p.u.sig.value - (1 << 64)
        shown = f"var[{p.slot}]{value:+d}" if p.flags & lib.KOS_FLAG_VAR else str(p.u.sig.value)
        return f"{names[p.op]} addr={p.u.sig.addr:#x} value={shown}"
    if p.op == lib.KOS_OP_SETVALS:
        return f"SETVALS base={p.u.setvals.base} vals={list(p.u.setvals.vals)[:p.u.setvals.count]}"
    if p.op == lib.KOS_OP_INDIRECT:
        return f"INDIRECT packets={p.u.indirect.packets:#x} count={p.u.indirect.count}"
    return f"NOP op={p.op}"
