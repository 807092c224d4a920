"""Session: the device opened in the shell and the helpers preloaded around it.

Every helper is a method; `namespace()` hands them to the console under their short names, and
`help()` lists them with the first line of each docstring. Helpers that wait use the session's
timeout (`timeout_s`, 5 s by default) and are interruptible with Ctrl-C (tools/shell/waiting.py).
"""

import contextlib
import time

import numpy as np

import hal
from hal.errors import InvalidArgument

from . import views
from .hexdump import hexdump as _hexdump
from .kernels import compile_kernel
from .waiting import wait_signal

POISON_BYTE = 0xCD  # fills buffers from empty(): a result never written shows up as 0xcdcdcdcd

# Helper names (methods of Session) in the order help() lists them.
HELPERS = ("upload", "empty", "download", "kernel", "launch", "signal", "wait", "timed",
           "ring", "sigs", "decode", "hexdump", "memmap", "load")


class Session:
    """One device in the shell: the helpers, the signals they made, what they know of each buffer."""

    def __init__(self, dev, timeout_s: float = 5.0):
        self.dev, self.timeout_s = dev, float(timeout_s)
        self.signals: dict = {}      # name -> Signal made with signal(), listed by sigs()
        self.tensors: dict = {}      # Buffer -> (dtype, shape) remembered by upload()/empty()
        self.labels: dict = {}       # va -> (Buffer, what the shell allocated there), shown by memmap()
        self._done = None            # the timeline launch() signals completion on
        self._launches = 0
        self._stepper = None         # the image load() loaded last

    # --- memory -------------------------------------------------------------------------
    def upload(self, array, host_visible: bool = True):
        """upload(array) -> Buffer: allocate device memory and fill it from a numpy array."""
        a = np.ascontiguousarray(array)
        if a.nbytes == 0:
            raise InvalidArgument("upload needs a non-empty array")
        buf = self.dev.alloc(a.nbytes, host_visible=host_visible)
        buf.write(a.view(np.uint8).reshape(-1))
        self._remember(buf, "upload", a.dtype, a.shape)
        return buf

    def empty(self, shape, dtype="float32", host_visible: bool = True):
        """empty(shape, dtype) -> Buffer: allocate a tensor's memory, poisoned with 0xcd bytes."""
        dtype, shape = np.dtype(dtype), (shape,) if isinstance(shape, int) else tuple(shape)
        size_B = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buf = self.dev.alloc(size_B, host_visible=host_visible)
        buf.write(bytes([POISON_BYTE]) * size_B)
        self._remember(buf, "empty", dtype, shape)
        return buf

    def _remember(self, buf, how: str, dtype, shape):
        self.tensors[buf] = (dtype, shape)
        self.labels[buf.va] = (buf, f"{how} {dtype}{list(shape)}")

    def download(self, buf, dtype=None, shape=None):
        """download(buf) -> np.ndarray: read a buffer back (dtype/shape as uploaded unless given)."""
        known_dtype, known_shape = self.tensors.get(buf, (np.dtype(np.uint8), None))
        dtype = np.dtype(dtype) if dtype is not None else known_dtype
        a = np.frombuffer(buf.read(), dtype=dtype, count=buf.size_B // dtype.itemsize).copy()
        shape = shape if shape is not None else (known_shape if dtype == known_dtype else None)
        return a.reshape(shape) if shape is not None else a

    # --- kernels and queues -------------------------------------------------------------
    def kernel(self, source: str, name: str, params, max_threads: int = 1024):
        """kernel(source, name, params) -> Program: compile for this device (cpu: C, nvidia: CUDA) and load."""
        return compile_kernel(self.dev, source, name, params, max_threads)

    def launch(self, program, args, grid, block=1, wait: bool = True):
        """launch(prog, args, grid, block=1) -> stream: run on the compute queue, signal, wait."""
        if self._done is None:
            self._done = self.signal(0, name="launch")
        stream = self.dev.queue("compute").stream().launch(program, args, grid, block)
        self._launches += 1
        stream.signal(self._done, self._launches).submit()
        if wait:
            self.wait(self._done, self._launches)
        return stream

    def signal(self, value: int = 0, name: str | None = None):
        """signal(value=0, name=None) -> Signal: a new timeline, listed by sigs()."""
        sig = self.dev.signal(value)
        self.signals[name or f"sig{len(self.signals)}"] = sig
        return sig

    def wait(self, sig, value: int, timeout_s: float | None = None):
        """wait(sig, value, timeout_s=5): until sig >= value; DeviceTimeout after timeout_s; Ctrl-C stops it."""
        wait_signal(sig, int(value), self.timeout_s if timeout_s is None else float(timeout_s))

    @contextlib.contextmanager
    def timed(self, label: str = "region"):
        """with timed("label"): ... prints the region's wall time in ms."""
        start_s = time.perf_counter()
        try:
            yield
        finally:
            print(f"{label}: {(time.perf_counter() - start_s) * 1e3:.3f} ms")

    # --- inspection ---------------------------------------------------------------------
    def ring(self, queue=None):
        """ring(queue=None): ring state (read/write pointers, pending) of a queue, default compute and copy."""
        queues = [queue] if queue is not None else [self.dev.queue("compute"), self.dev.queue("copy")]
        for q in queues:
            print(views.ring_line(q))

    def sigs(self):
        """sigs(): the value of every signal made with signal() (and launch's own)."""
        print("\n".join(views.signal_lines(self.signals)) or "no signals yet")

    def decode(self, stream):
        """decode(stream): the stream's recorded commands, decoded (methods/packets and fields)."""
        print("\n".join(views.decode_lines(stream)))

    def hexdump(self, buf, size_B: int = 128, offset_B: int = 0):
        """hexdump(buf, size_B=128, offset_B=0): bytes of a buffer by device address."""
        size_B = min(size_B, buf.size_B - offset_B)
        print(_hexdump(buf.read(size_B, offset_B), buf.address(offset_B)))

    def memmap(self):
        """memmap(): the device's live allocations (address, size, kind, what the shell put there)."""
        live = {va: label for va, (buf, label) in self.labels.items() if not buf.freed}
        print("\n".join(views.memory_map_lines(self.dev.memory_map(), live)))

    def load(self, image_path: str):
        """load(path) -> m: an image loaded for stepping: m.nodes(), m.step(), m.tensor(name), m.check(), m.self_test().

        The image loaded before is closed first (its memory freed): one stepped image at a time."""
        from .stepper import load_stepper

        if self._stepper is not None:
            self._stepper, previous = None, self._stepper
            previous.close()
        self._stepper = load_stepper(self.dev, image_path, self.timeout_s)
        return self._stepper

    # --- the console's namespace --------------------------------------------------------
    def help(self, *args, **kwargs):
        """help(): this list; help(obj): Python's help on obj."""
        if args or kwargs:
            import builtins

            return builtins.help(*args, **kwargs)
        print(self.help_text())

    def help_text(self) -> str:
        lines = ["dev (the opened device), hal, np, shell (this session: timeout_s, signals) and these helpers:"]
        for name in HELPERS + ("help",):
            lines.append(f"  {getattr(self, name).__doc__.splitlines()[0]}")
        lines.append(f"Waits time out after {self.timeout_s:g} s (DeviceTimeout); Ctrl-C interrupts; Ctrl-D leaves.")
        return "\n".join(lines)

    def namespace(self) -> dict:
        ns = {"dev": self.dev, "hal": hal, "np": np, "shell": self}
        ns.update({name: getattr(self, name) for name in HELPERS + ("help",)})
        return ns
