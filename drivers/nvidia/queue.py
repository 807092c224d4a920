"""NvQueue and NvCommandStream: recorded pushbuffers replayed on a GPFIFO channel.

A stream records its pushbuffer once (launch QMDs and cbank0 images go into the stream's own
BAR1-mapped VRAM at record time). Consecutive launches are chained through DEPENDENT_QMD0, so
the compute engine schedules kernel n+1 when kernel n completes with no host involvement; a
signal (a semaphore release with wait-for-idle) or a wait (wait-for-idle, then an acquire) ends
a chain. submit() writes only the Var payload words that changed, then two GP entries: the
stream's pushbuffer and a per-submit tail that releases the queue's progress counter.

write() on the compute queue is inline-to-memory (I2M): the bytes travel inside the pushbuffer,
which then lives in pinned host memory, so submit() copies them there with plain cached stores and
the channel writes them to their destination in order before the next launch (no copy-engine
hand-off). On the copy queue the bytes go to a pinned host staging area and a copy-engine copy.
"""

import weakref
from dataclasses import dataclass

import hal
from hal import DeviceTimeout, InvalidArgument

from . import cbank0, qmd as qmdlib
from .classes import compute_cbc0 as compute, copy_c8b5 as copy
from .decode import decode
from . import pushbuf as pushbuf_limits
from .pushbuf import Pushbuffer, gp_entry

SCRATCH_SLOT_B = 256
I2M_PIECE_B = 4 * pushbuf_limits.MAX_COUNT - 4       # bytes of inline data under one method header
# A pushbuffer carrying I2M data lives in pinned host memory (submit copies the data there with cached
# stores) rather than in BAR1-mapped VRAM (uncached stores across PCIe); bench/host_io.py compares both.
INLINE_PB_IN_HOST_MEMORY = True
MAX_IN_FLIGHT = 500                    # submits; each takes 2 GP entries of 1024
ARENA_CHUNK_B = 256 << 10
SYNC_TIMEOUT_S = 10.0


class Arena:
    """Bump allocation in BAR1-mapped VRAM chunks (or pinned host memory: host=True), freed together
    once the GPU is done with them; chunks: the list the stream's finalizer frees."""

    def __init__(self, device, chunks: list, host: bool = False):
        self.device, self.chunks, self.host, self.pos, self.end = device, chunks, host, 0, 0

    def take(self, size_B: int, align_B: int = 256) -> int:
        va = (self.pos + align_B - 1) // align_B * align_B
        if not self.end or va + size_B > self.end:
            memory = self.device.memory
            a = memory.alloc_host(max(ARENA_CHUNK_B, size_B)) if self.host else \
                memory.alloc_vram(max(ARENA_CHUNK_B, size_B), cpu_map=True)
            self.chunks.append(a)
            va, self.end = a.va, a.va + a.size_B
        self.pos = va + size_B
        return va


def _retire(queue, chunks, last_seq):
    """Finalizer of a stream: its memory goes back once its last submit has completed (at once if the
    queue died: its channel group, and with it any work, is gone)."""
    if chunks and not queue.device.closed:
        if queue.dead:
            for chunk in chunks:
                queue.device.memory.free(chunk)
        else:
            queue.retired.append((last_seq[0], list(chunks)))


@dataclass
class OpenLaunch:
    """The newest launch of a chain: its QMD can still take a release or a dependent QMD."""

    qmd: qmdlib.Qmd
    va: int
    released: bool = False


class NvCommandStream(hal.CommandStream):
    def __init__(self, queue):
        super().__init__(queue)
        self.pb = Pushbuffer()
        self.chunks = []                   # memory of both arenas, freed when the stream is retired
        self.arena = Arena(self.device, self.chunks)                   # QMDs, cbank0s, the pushbuffer
        self.host_arena = Arena(self.device, self.chunks, host=True)   # the pushbuffer if it carries I2M data; staging
        self.commands = []                 # (summary, first word, end word) per recorded HAL command
        self.programs = []                 # programs launched (a closed one refuses submit)
        self.waits = []                    # (signal, value or Var) this stream acquires
        self.qmd_var_slots = []            # (VA of a QMD release payload's low half, Var)
        self.pb_var_slots = []             # (word index of a payload's low half, Var)
        self.var_ptrs = []                 # (uint32_t* to a payload's low half, Var, last value), at upload
        self.inline_slots = []             # (word index of I2M data, byte offset in the write, size_B, write name)
        self.data_views = []               # (host memoryview, write name, first byte, end byte) a write fills
        self.stage_views = []              # the data_views of copy-queue staging (fixed at record time)
        self.last = None                   # OpenLaunch of an open chain
        self.busy_since_idle = False       # work issued since the last wait-for-idle
        self.pb_va, self.pb_capacity, self.uploaded, self.entry = 0, 0, 0, 0
        self.last_seq = [0]
        weakref.finalize(self, _retire, queue, self.chunks, self.last_seq)

    # --- recording --------------------------------------------------------------------------------
    def _write(self, va: int, data: bytes):
        self.device._host_view_at(va, len(data))[:] = data

    def _log(self, summary: str, start: int):
        self.commands.append((summary, start, len(self.pb)))

    def _launch(self, program, args_bytes: bytes, grid3, block3):
        start = len(self.pb)
        chained = self.last is not None
        self._launch_qmd(program, args_bytes, grid3, block3)
        if program not in self.programs:
            self.programs.append(program)
        self._log(f"launch {program.name} grid={grid3} block={block3} QMD@{self.last.va:#x}"
                  + (" (scheduled by the previous QMD's DEPENDENT_QMD0)" if chained else ""), start)

    def _launch_qmd(self, program, args_bytes: bytes, grid3, block3):
        if program.closed:
            raise hal.DeviceClosed(f"program {program.name!r} was closed")
        dev, a = self.device, program.attrs
        params = args_bytes[:a.param_size_B]
        cb = cbank0.build(a.sm, a.cbank0_size_B, a.param_base, params, grid3, block3,
                          shared_window=dev.SHARED_WINDOW, local_window=dev.LOCAL_WINDOW)
        qmd_va = self.arena.take(program.table.SIZE_B + len(cb))
        cb_va = qmd_va + program.table.SIZE_B
        cbufs = {0: (cb_va, len(cb)), **program.cbufs}
        q = qmdlib.build(program.table, program_va=program.code_va, program_size_B=program.code_B, regs=a.regs,
                         barriers=a.barriers, shared_B=a.shared_B, local_B=program.local_B,
                         sass=qmdlib.sass_version(dev.gr["sm_version"]), cbufs=cbufs, grid=grid3, block=block3)
        self._write(cb_va, cb)
        self._write(qmd_va, q.to_bytes())
        if self.last is None:
            self.pb.method(compute.SUBCHANNEL, compute.INVALIDATE_SHADER_CACHES_NO_WFI,
                           compute.INVALIDATE_INSTRUCTION | compute.INVALIDATE_GLOBAL_DATA | compute.INVALIDATE_CONSTANT)
            self.pb.method(compute.SUBCHANNEL, compute.SEND_PCAS_A, qmd_va >> 8)
            self.pb.method(compute.SUBCHANNEL, compute.SEND_SIGNALING_PCAS2_B, compute.PCAS_ACTION_PREFETCH_SCHEDULE)
        else:
            qmdlib.chain(self.last.qmd, qmd_va)
            self._write(self.last.va, self.last.qmd.to_bytes())
        self.last, self.busy_since_idle = OpenLaunch(q, qmd_va), True

    def _end_chain(self):
        """The chain's last kernel flushes to system memory before whatever follows reads its results."""
        if self.last is not None:
            self.last.qmd.set("CWD_MEMBAR_TYPE", qmdlib.CWD_MEMBAR_L1_SYSMEMBAR)
            self._write(self.last.va, self.last.qmd.to_bytes())
            self.last = None

    def _copy(self, dst_va: int, src_va: int, size_B: int):
        """Linear copies of at most COPY_PIECE_B each; after the first, PIPELINED lets the engine overlap them."""
        done, start = 0, len(self.pb)
        while done < size_B:
            n = min(size_B - done, copy.COPY_PIECE_B)
            s, d = src_va + done, dst_va + done
            self.pb.method(copy.SUBCHANNEL, copy.OFFSET_IN_UPPER, s >> 32, s & 0xFFFFFFFF, d >> 32, d & 0xFFFFFFFF)
            self.pb.method(copy.SUBCHANNEL, copy.LINE_LENGTH_IN, n)
            self.pb.method(copy.SUBCHANNEL, copy.LAUNCH_DMA, copy.LINEAR_COPY if done == 0 else copy.LINEAR_COPY_PIPELINED)
            done += n
        self.busy_since_idle = True
        self._log(f"copy {size_B} B {src_va:#x} -> {dst_va:#x}", start)

    def _host_write(self, dst_va: int, size_B: int, name: str):
        start = len(self.pb)
        if self.queue.kind == "copy":
            stage_va = self.host_arena.take(size_B)
            self.stage_views.append((self.device._host_view_at(stage_va, size_B), name, 0, size_B))
            self.data_views = list(self.stage_views)
            self._copy(dst_va, stage_va, size_B)
            self.commands[-1] = (f"write {name!r}: {size_B} B staged at {stage_va:#x} -> {dst_va:#x}", start, len(self.pb))
            return
        self._end_chain()
        if self.busy_since_idle:
            self.pb.wait_for_idle()                 # earlier kernels may still read what this overwrites
        done = 0
        while done < size_B:
            n = min(size_B - done, I2M_PIECE_B)
            va = dst_va + done
            self.pb.method(compute.SUBCHANNEL, compute.OFFSET_OUT_UPPER, va >> 32, va & 0xFFFFFFFF)
            self.pb.method(compute.SUBCHANNEL, compute.LINE_LENGTH_IN, n, 1)
            self.pb.method(compute.SUBCHANNEL, compute.LAUNCH_DMA, compute.I2M_PITCH_NO_SYSMEMBAR)
            at = self.pb.non_incrementing(compute.SUBCHANNEL, compute.LOAD_INLINE_DATA, (n + 3) // 4)
            self.inline_slots.append((at, done, n, name))
            done += n
        self.busy_since_idle = True
        self._log(f"write {name!r}: {size_B} B inline (I2M) -> {dst_va:#x}", start)

    def _payload(self, at: int, value):
        if isinstance(value, hal.Var):
            self.pb_var_slots.append((at, value))

    def _signal(self, sig, value):
        start = len(self.pb)
        if self.last is not None and not self.last.released:
            self._release_from_qmd(sig, value)
            self._log(f"signal {sig.va:#x} = {value} (RELEASE0 of QMD@{self.last.va:#x})", start)
            return
        self._end_chain()
        self.busy_since_idle = False
        self._payload(self.pb.release(sig.va, value if isinstance(value, int) else 0), value)
        self._log(f"signal {sig.va:#x} = {value}", start)

    def _release_from_qmd(self, sig, value):
        """Signal straight from the last kernel's QMD (RELEASE0): no wait-for-idle round trip."""
        q, va = self.last.qmd, self.last.va
        qmdlib.release(q, sig.va, value if isinstance(value, int) else 0)
        self._write(va, q.to_bytes())
        self.last.released = True
        if isinstance(value, hal.Var):
            self.qmd_var_slots.append((va + q.table.FIELDS["RELEASE0_PAYLOAD_LOWER"][1] // 8, value))

    def _wait(self, sig, value):
        start = len(self.pb)
        self._end_chain()
        if self.busy_since_idle:
            self.pb.wait_for_idle()
        self.busy_since_idle = False
        self._payload(self.pb.acquire(sig.va, value if isinstance(value, int) else 0), value)
        self.waits.append((sig, value))
        self._log(f"wait {sig.va:#x} >= {value}", start)

    def _timestamp(self, sig):
        start = len(self.pb)
        self._end_chain()
        self.busy_since_idle = False
        sig.reads_time = True                              # its value is now the GPU time word (signal.py)
        self.pb.release(sig.va, 0)
        self._log(f"timestamp -> {sig.va:#x}", start)

    # --- submission ---------------------------------------------------------------------------------
    def _upload(self):
        """Copy new pushbuffer words to VRAM; rebuild the GP entry and the Var patch pointers."""
        self._end_chain()
        n_B = len(self.pb) * 4
        if n_B > self.pb_capacity:
            self.pb_capacity = max(n_B * 2, 4096)
            in_host = self.inline_slots and INLINE_PB_IN_HOST_MEMORY
            self.pb_va = (self.host_arena if in_host else self.arena).take(self.pb_capacity)
            self.uploaded = 0
        self._write(self.pb_va + 4 * self.uploaded, self.pb.words[self.uploaded:].tobytes())
        self.uploaded = len(self.pb)
        self.entry = gp_entry(self.pb_va, len(self.pb))
        cast = self.device.ffi.cast
        self.var_ptrs = [[cast("uint32_t *", self.pb_va + 4 * at), var, None] for at, var in self.pb_var_slots]
        self.var_ptrs += [[cast("uint32_t *", va), var, None] for va, var in self.qmd_var_slots]
        self.data_views = self.stage_views + [(self.device._host_view_at(self.pb_va + 4 * at, n), name, lo, lo + n)
                                              for at, lo, n, name in self.inline_slots]

    def _submit(self, values: dict):
        q = self.queue
        if not len(self.pb):
            return
        for program in self.programs:
            if program.closed:
                raise hal.DeviceClosed(f"program {program.name!r} was closed; this stream launches it")
        if self.uploaded != len(self.pb):
            if self.last_seq[0] > q.completed():
                q.wait_done(self.last_seq[0], "an earlier submit of this stream")  # its words are about to change
            self._upload()
        patches = []
        for slot in self.var_ptrs:
            _, var, last = slot
            v = values[var.name] + var.offset        # an int: hal's submit checked it
            if v != last:
                if not 0 <= v < 1 << 64:
                    raise InvalidArgument(f"{var} resolved to {v}, not a 64-bit unsigned value")
                patches.append((slot, v))
        if (patches or self.data_views) and self.last_seq[0] > q.completed():
            q.wait_done(self.last_seq[0], "an earlier submit of this stream")  # its payloads or data are about to change
        for slot, v in patches:
            ptr = slot[0]
            ptr[0], ptr[1], slot[2] = v & 0xFFFFFFFF, v >> 32, v
        for view, name, lo, hi in self.data_views:
            view[:] = values[name][lo:hi]
        self.last_seq[0] = q.submit(self.entry)
        if self.waits:
            q.acquires[self.last_seq[0]] = [(sig, hal.resolve(v, values)) for sig, v in self.waits]

    def decode(self) -> list:
        """One line per recorded command: what it is, then its pushbuffer methods decoded."""
        words = list(self.pb.words)
        return [summary + (": " + "; ".join(decode(words[a:b])) if b > a else "") for summary, a, b in self.commands]


class NvQueue(hal.Queue):
    """A GPFIFO channel seen through its progress counter: submit n's tail releases n."""

    def __init__(self, device, kind: str):
        super().__init__(device, kind, 0)
        self.progress = device._signal(0)
        self.scratch = device.memory.alloc_vram(MAX_IN_FLIGHT * SCRATCH_SLOT_B, cpu_map=True)
        self.submitted, self.retired, self.channel, self.dead = 0, [], None, None
        self.acquires = {}                 # seq -> [(signal, value)] that submit waits on
        self.tails = self._tails()

    def stream(self) -> NvCommandStream:
        self.device._check_open()
        return NvCommandStream(self)

    def completed(self) -> int:
        return self.submitted if self.dead else self.progress.word[0]

    def init_channel(self):
        """Attach to the device's channel of our kind and bind its engine."""
        self.channel = self.device.groups[self.kind].channel
        self.sync_setup()

    def sync_setup(self, local_va: int = 0, local_per_tpc_B: int = 0):
        dev, pb = self.device, Pushbuffer()
        if self.kind == "copy":
            pb.method(copy.SUBCHANNEL, copy.SET_OBJECT, dev.classes["copy"])
        else:
            local_va = local_va or (dev.local_mem.va if dev.local_mem else 0)
            local_per_tpc_B = local_per_tpc_B or dev.local_per_tpc_B
            pb.method(compute.SUBCHANNEL, compute.SET_OBJECT, dev.classes["compute"])
            pb.method(compute.SUBCHANNEL, compute.SET_SHADER_LOCAL_MEMORY_WINDOW_A, dev.LOCAL_WINDOW >> 32,
                      dev.LOCAL_WINDOW & 0xFFFFFFFF)
            pb.method(compute.SUBCHANNEL, compute.SET_SHADER_SHARED_MEMORY_WINDOW_A, dev.SHARED_WINDOW >> 32,
                      dev.SHARED_WINDOW & 0xFFFFFFFF)
            if local_va:
                pb.method(compute.SUBCHANNEL, compute.SET_SHADER_LOCAL_MEMORY_A, local_va >> 32, local_va & 0xFFFFFFFF)
                pb.method(compute.SUBCHANNEL, compute.SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A, local_per_tpc_B >> 32,
                          local_per_tpc_B & 0xFFFFFFFF, compute.MAX_SM_COUNT)
        self.wait_done(self.submit_words(pb.words), "channel setup")

    def _slot_va(self, seq: int) -> int:
        return self.scratch.va + (seq % MAX_IN_FLIGHT) * SCRATCH_SLOT_B

    def _tails(self):
        """Per scratch slot: a release of the progress counter at the slot's end, payload patched per submit."""
        tail = Pushbuffer()
        at = tail.release(self.progress.va, 0)
        out = []
        for i in range(MAX_IN_FLIGHT):
            va = self.scratch.va + (i + 1) * SCRATCH_SLOT_B - 64
            self.device._host_view_at(va, len(tail) * 4)[:] = tail.words.tobytes()
            out.append((gp_entry(va, len(tail)), self.device.ffi.cast("uint32_t *", va + 4 * at)))
        return out

    def submit_words(self, words) -> int:
        """Submit a one-off pushbuffer (setup) through the scratch slot of its sequence number."""
        seq = self.submitted + 1
        self._make_room(seq)
        va = self._slot_va(seq)
        body = words.tobytes()
        if len(body) > SCRATCH_SLOT_B - 64:
            raise InvalidArgument(f"one-off pushbuffer of {len(body)} B exceeds its {SCRATCH_SLOT_B - 64} B slot")
        self.device._host_view_at(va, len(body))[:] = body
        return self.submit(gp_entry(va, len(words)))

    def submit(self, entry: int) -> int:
        """Queue a GP entry followed by the tail that releases the next sequence number; returns it."""
        if self.dead:
            if self.device.queues.get(self.kind, self) is not self:
                raise hal.DeviceClosed(f"{self} died ({self.dead}) and was replaced; use dev.queue({self.kind!r})")
            raise hal.DeviceFault(f"{self} is dead ({self.dead}); take a new one with dev.queue({self.kind!r})")
        seq = self.submitted + 1
        if seq - self.progress.word[0] >= MAX_IN_FLIGHT:
            self._make_room(seq)
        tail_entry, payload = self.tails[seq % MAX_IN_FLIGHT]
        payload[0], payload[1] = seq & 0xFFFFFFFF, seq >> 32
        self.channel.push(entry, tail_entry)
        self.submitted = seq
        if self.retired or self.acquires:
            self._reap()
        return seq

    def _make_room(self, seq: int):
        if seq - self.completed() >= MAX_IN_FLIGHT:
            self.wait_done(seq - MAX_IN_FLIGHT + 1, "ring space")

    def die(self, reason: str):
        """The channel group is going away: refuse further submits and give back our memory."""
        self.dead = reason
        for _, chunks in self.retired:
            for chunk in chunks:
                self.device.memory.free(chunk)
        self.retired, self.acquires = [], {}
        self.device.memory.free(self.scratch)
        self.progress.close()

    def blocked_on_acquire(self) -> bool:
        """Pending work waits on a signal that has not reached its value (not a hang)."""
        done = self.completed()
        return any(sig._read() < v for seq, acq in self.acquires.items() if seq > done for sig, v in acq
                   if not sig.closed)

    def _reap(self):
        done = self.completed()
        for seq in [s for s in self.acquires if s <= done]:
            del self.acquires[seq]
        while self.retired and self.retired[0][0] <= done:
            for chunk in self.retired.pop(0)[1]:
                self.device.memory.free(chunk)

    def wait_done(self, seq: int, what: str, timeout_s: float = SYNC_TIMEOUT_S):
        try:
            self.progress.wait(seq, timeout_s)
        except DeviceTimeout as e:
            raise DeviceTimeout(f"{self}: waiting for {what}: {e}") from None

    def state(self) -> dict:
        """Ring state: wptr/rptr are GP entries written and fetched (mod 1024), pending = submits not done."""
        return {"kind": self.kind, "dead": bool(self.dead), "reason": self.dead or "",
                "engine_class": f"{self.channel.engine_class:#06x}", "wptr": self.channel.put,
                "rptr": self.channel.gp_get() if not self.dead else -1, "submitted": self.submitted,
                "completed": self.completed(), "pending": self.submitted - self.completed(),
                "work_submit_token": self.channel.token}
