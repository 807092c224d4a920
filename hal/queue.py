"""Queue and CommandStream: hardware command queues and the streams recorded onto them.

A Queue is one hardware queue of a device (a GPFIFO channel, a PM4 ring, a cpu packet ring).
Work reaches it through a CommandStream: chainable builders that encode commands once,

    q = dev.queue("compute")
    s = q.stream().wait(inp, Var("t")).launch(prog, [x, y, 4096], grid=(16,)).signal(done, Var("t"))
    s.submit(t=1); s.submit(t=2)     # replays: no re-encoding, only the Var slots are patched

`Var(name)` (optionally `Var(name) + k`) stands for a signal value given at submit time; the
per-submit host cost is O(number of Var slots), independent of the number of launches.
`write(dst, size_B, name)` records a host-to-device write whose bytes are given at submit time
(`s.submit(t=3, x=array)`): small inputs reach device memory in queue order, on any queue kind,
with no copy-queue hand-off.
"""

import operator
from dataclasses import dataclass

from .buffer import Buffer
from .errors import DeviceClosed, InvalidArgument
from .program import Program
from .signal import Signal

QUEUE_KINDS = ("compute", "copy")


@dataclass(frozen=True)
class Var:
    """A signal value bound at submit time: `Var("t") + 1` resolves to values["t"] + 1."""

    name: str
    offset: int = 0

    def __add__(self, k: int) -> "Var":
        return Var(self.name, self.offset + int(k))

    def __sub__(self, k: int) -> "Var":
        return Var(self.name, self.offset - int(k))

    def resolve(self, values: dict) -> int:
        try:
            return int(values[self.name]) + self.offset
        except KeyError:
            raise InvalidArgument(f"submit() needs a value for Var({self.name!r}); got {sorted(values)}") from None


def resolve(value, values: dict) -> int:
    """An int, or a Var resolved against the submit's values."""
    return value.resolve(values) if isinstance(value, Var) else int(value)


def _bytes_of(data, size_B: int, name: str) -> memoryview:
    """data (bytes, bytearray, memoryview, C-contiguous numpy array) as size_B bytes, or InvalidArgument."""
    if data.__class__ is memoryview and data.format == "B" and data.ndim == 1 and data.c_contiguous \
            and data.nbytes == size_B:
        return data                                  # already what the driver takes (the scheduler's case)
    try:
        mv = memoryview(data)
        if not mv.c_contiguous:
            raise ValueError("not C-contiguous")
        mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"write {name!r} needs a C-contiguous bytes-like value, got {type(data).__name__} ({e})") from None
    if mv.nbytes != size_B:
        raise InvalidArgument(f"write {name!r} takes exactly {size_B} B, got {mv.nbytes} B")
    return mv


def as_int(value):
    """value as a Python int if it is an integer (numpy integers too; not bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _dims3(dims, what: str) -> tuple:
    """(x, y, z) from one integer or a sequence of 1 to 3 (missing ones are 1)."""
    one = as_int(dims)
    if one is not None:
        ints = [one]
    else:
        try:
            ints = [] if isinstance(dims, (str, bytes)) else [as_int(d) for d in dims]
        except TypeError:  # neither an integer nor iterable (a float, None, a bool)
            ints = []
    if not 1 <= len(ints) <= 3 or any(d is None or not 1 <= d <= 0x7FFFFFFF for d in ints):
        raise InvalidArgument(f"{what} must be an integer or 1 to 3 of them (int or numpy integer, not bool "
                              f"or float), each 1..2**31-1; got {dims!r}")
    return tuple(ints) + (1,) * (3 - len(ints))


class CommandStream:
    """Commands recorded for one queue; submit() as often as needed.

    Contract (every driver):
    - launch() only on compute queues, copy() only on copy queues; InvalidArgument otherwise.
    - Arguments are validated when recorded (ranges, devices, arg types), never at submit.
    - Commands run in order on their queue; across queues, order only through signal/wait.
    - write() works on every queue kind; its bytes are taken when submit() is called, so the same
      stream can carry new input each replay (submit waits, if needed, until an earlier submit of
      the stream no longer needs the previous bytes).
    - submit(**values) binds every Var used; a missing one raises InvalidArgument and submits
      nothing. submit returns the stream so `s.submit(t=1)` chains.
    - decode() returns one human-readable line per recorded hardware command (method or packet
      names with fields), the same decoder the driver tests use.
    """

    def __init__(self, queue: "Queue"):
        self.queue, self.device = queue, queue.device
        self.var_names: set = set()        # names submit() must bind: Vars and writes
        self.writes: dict = {}             # write data name -> size_B

    # --- chainable builders -------------------------------------------------------------
    def launch(self, program: Program, args, grid, block=(1, 1, 1)) -> "CommandStream":
        self._need_kind("compute", "launch")
        if not isinstance(program, Program) or program.device is not self.device:
            raise InvalidArgument(f"launch needs a Program loaded on {self.device.spec}, got {program!r}")
        grid3, block3 = _dims3(grid, "grid"), _dims3(block, "block")
        threads = block3[0] * block3[1] * block3[2]
        if threads > program.meta.max_threads:
            raise InvalidArgument(f"block {block3} has {threads} threads; kernel {program.name!r} allows {program.meta.max_threads}")
        self._launch(program, program.pack_args(list(args)), grid3, block3)
        return self

    def copy(self, dst: Buffer, src: Buffer, size_B: int, dst_offset_B: int = 0, src_offset_B: int = 0) -> "CommandStream":
        self._need_kind("copy", "copy")
        for b, off, name in ((dst, dst_offset_B, "dst"), (src, src_offset_B, "src")):
            if not isinstance(b, Buffer) or b.device is not self.device:
                raise InvalidArgument(f"copy {name} must be a Buffer of {self.device.spec}, got {b!r}")
            b.check_range(off, size_B, f"copy {name}")
        if size_B > 0:
            self._copy(dst.address(dst_offset_B), src.address(src_offset_B), size_B)
        return self

    def write(self, dst: Buffer, size_B: int, name: str, dst_offset_B: int = 0) -> "CommandStream":
        """Write size_B bytes given at each submit as submit(name=bytes-like of exactly size_B bytes)
        into dst at dst_offset_B, in this queue's order (after the commands recorded before it)."""
        if not isinstance(dst, Buffer) or dst.device is not self.device:
            raise InvalidArgument(f"write dst must be a Buffer of {self.device.spec}, got {dst!r}")
        if not isinstance(size_B, int) or size_B < 1:
            raise InvalidArgument(f"write size_B must be a positive int, got {size_B!r}")
        dst.check_range(dst_offset_B, size_B, "write dst")
        if not isinstance(name, str) or not name.isidentifier() or name in self.var_names:
            raise InvalidArgument(f"write data name must be an identifier not used by another Var or write, got {name!r}")
        self.var_names.add(name)
        self.writes[name] = size_B
        self._host_write(dst.address(dst_offset_B), size_B, name)
        return self

    def signal(self, sig: Signal, value) -> "CommandStream":
        self._check_signal(sig, value)
        self._signal(sig, value)
        return self

    def wait(self, sig: Signal, value) -> "CommandStream":
        self._check_signal(sig, value)
        self._wait(sig, value)
        return self

    def timestamp(self, sig: Signal) -> "CommandStream":
        self._check_signal(sig, 0)
        self._timestamp(sig)
        return self

    def submit(self, **values) -> "CommandStream":
        if self.device.closed:
            raise DeviceClosed(f"device {self.device.spec} is closed")
        if len(values) < len(self.var_names) or not self.var_names <= values.keys():
            raise InvalidArgument(f"submit() needs values for {sorted(self.var_names - set(values))}")
        for name in self.var_names:
            v = values[name]
            if name in self.writes:
                values[name] = _bytes_of(v, self.writes[name], name)
            elif v.__class__ is not int:     # ints (numpy ints too); a float or bool would be truncated or misread
                values[name] = as_int(v)
                if values[name] is None:
                    raise InvalidArgument(f"Var {name!r} must be an int, got {v!r}")
        self._submit(values)
        return self

    # --- helpers for drivers ------------------------------------------------------------
    def _need_kind(self, kind: str, op: str):
        if self.queue.kind != kind:
            raise InvalidArgument(f"{op} needs a {kind} queue; this is a {self.queue.kind} queue")

    def _check_signal(self, sig, value):
        if not isinstance(sig, Signal) or sig.device is not self.device:
            raise InvalidArgument(f"expected a Signal of {self.device.spec}, got {sig!r}")
        sig._check_live()
        if isinstance(value, Var):
            if value.name in self.writes:
                raise InvalidArgument(f"Var {value.name!r} has the name of this stream's write data")
            self.var_names.add(value.name)
        elif not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise InvalidArgument(f"signal value must be a 64-bit unsigned int or a Var, got {value!r}")

    # --- driver side ----------------------------------------------------------------------
    def _launch(self, program, args_bytes: bytes, grid3, block3):
        raise NotImplementedError

    def _copy(self, dst_va: int, src_va: int, size_B: int):
        raise NotImplementedError

    def _host_write(self, dst_va: int, size_B: int, name: str):
        """Record a write of size_B bytes to dst_va; _submit finds them as values[name], a
        C-contiguous memoryview of format "B" and exactly size_B bytes."""
        raise NotImplementedError

    def _signal(self, sig, value):
        raise NotImplementedError

    def _wait(self, sig, value):
        raise NotImplementedError

    def _timestamp(self, sig):
        raise NotImplementedError

    def _submit(self, values: dict):
        raise NotImplementedError

    def decode(self) -> list:
        raise NotImplementedError


class Queue:
    """One hardware queue of a device, of kind "compute" or "copy".

    Contract:
    - `stream()` starts a new CommandStream for this queue.
    - `state()` returns the ring's state for inspection (read/write pointers, pending entries),
      as a dict of plain ints and strings.
    - Queues are owned by their device and closed with it.
    - A queue whose work faulted is dead (submit raises DeviceFault); `device.queue(kind, index)`
      then tears it down and returns a fresh queue in its place.
    """

    def __init__(self, device, kind: str, index: int = 0):
        if kind not in QUEUE_KINDS:
            raise InvalidArgument(f"queue kind must be one of {QUEUE_KINDS}, got {kind!r}")
        self.device, self.kind, self.index = device, kind, index

    def stream(self) -> CommandStream:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    def __repr__(self):
        return f"<Queue {self.kind}{self.index} on {self.device.spec}>"
