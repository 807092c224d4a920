"""A device image loaded on a device, ready to run inferences.

    model = load_model("demo.kimg", "cpu")          # or an Image, or an opened hal Device
    outputs = model.run({"x": x})                   # name -> np.ndarray, checked against the image
    model.self_test()                               # the golden pair stored in the image
    model.close()

Loading allocates one arena (memory plan of the image for the device's target), uploads the
weights once, loads the kernels and records the command streams (kernelos/scheduler.py). The host
writes inputs and reads outputs in host-visible memory (the arena itself on the cpu); small inputs
travel inside the compute stream and kernels write small outputs in place, so a small model's
inference is one submit and one wait (LoadedModel._place_io). After a
DeviceTimeout or DeviceFault the model marks itself broken and the next run() first recovers:
it re-opens the device by its spec and repeats the load, so that run is correct again (a device
that cannot close because a kernel never returns is abandoned; see recover()). The model
therefore owns its device from load on and closes it in close().

`owns_device=False` is for a device shared with other users (the shell): close() then frees only
what the model allocated (arena, staging, kernels, signals) and leaves the device open, and
recovery frees and loads again on the same device, whose driver replaces a dead queue when it
is asked for one (a kernel that never returns keeps its queue busy there).
"""

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

import hal
from hal.errors import DeviceClosed, DeviceFault, DeviceTimeout, InvalidArgument, OutOfDeviceMemory

from .image import Image, read_image
from .planner import align_up
from .scheduler import Recorded

STAGE_ALIGN_B = 256
CLOSE_TIMEOUT_S = 5.0  # how long recovery waits for a faulted or hung device to close


@dataclass
class SelfTest:
    passed: bool
    max_abs_error: float
    atol: float
    rtol: float
    latency_s: float

    def __str__(self):
        verdict = "PASS" if self.passed else "FAIL"
        return (f"self-test {verdict}: max |out - golden| = {self.max_abs_error:.3g} "
                f"(tolerance {self.atol:g} + {self.rtol:g}*|golden|)")


@dataclass
class NodeStep:
    """One node run on its own by LoadedModel.steps(): its reads before and writes after it ran."""

    index: int
    node: object
    reads: dict
    writes: dict


def load_model(image_or_path, device, *, stage_io: bool | None = None, timeout_s: float = hal.DEFAULT_TIMEOUT_S,
               owns_device: bool = True):
    """Load an image (path or Image) onto a device (spec such as "cpu" or an opened Device).

    The image is verified before the device is touched. The target is the first of the device's
    targets the image has kernels for (ImageError otherwise). stage_io: None (default) lets the
    device's properties decide per input and output (LoadedModel._place_io); True stages every one
    between a host-visible buffer and the arena with copy-queue copies; False stages none (the compute
    stream writes the inputs, kernels write the outputs in place), also where the arena is
    host-visible: both for tests and comparisons. timeout_s bounds every inference's wait. owns_device:
    see the module doc (a device opened here from a spec is always owned).
    """
    image = image_or_path if isinstance(image_or_path, Image) else read_image(image_or_path)
    owns_image = image is not image_or_path
    owns_device = owns_device or isinstance(device, str)
    try:
        dev = hal.open(device) if isinstance(device, str) else device
    except BaseException:
        if owns_image:
            image.close()
        raise
    try:
        return LoadedModel(image, dev, owns_image, stage_io, timeout_s, owns_device)
    except BaseException:
        if owns_device:
            dev.close()
        if owns_image:
            image.close()
        raise


class LoadedModel:
    """See the module doc. inputs / outputs: name -> (shape, dtype) as the image declares them."""

    def __init__(self, image: Image, device, owns_image: bool, stage_io, timeout_s: float, owns_device: bool = True):
        self.image, self.device, self._owns_image, self.owns_device = image, device, owns_image, owns_device
        self.target = image.pick_target(device.targets)
        self.plan = image.plan(self.target)
        self.dag = image.dag
        self.inputs = {b.name: (b.shape, np.dtype(b.dtype)) for b in self.dag.by_role("input")}
        self.outputs = {b.name: (b.shape, np.dtype(b.dtype)) for b in self.dag.by_role("output")}
        self.timeout_s, self._stage_io = timeout_s, stage_io
        self.count, self.recoveries, self.abandoned_devices, self.last_latency_s = 0, 0, 0, 0.0
        self.close_timeout_s = CLOSE_TIMEOUT_S
        self._lock = threading.Lock()
        self._broken = self.closed = False
        self._arena = self._io_buf = self._recorded = self._profiled = None
        self._programs, self._host_io = {}, {}
        try:
            self._setup()
        except BaseException:
            if not owns_device:  # an owned device is closed by load_model, with all of this
                self._free()
            raise

    # --- load and tear down ------------------------------------------------------------------
    def _setup(self):
        dev, plan = self.device, self.plan
        if plan.arena_B > dev.info.memory_B:
            raise OutOfDeviceMemory(f"model {self.image.name!r} needs an arena of {plan.arena_B} B; "
                                    f"{dev.spec} has {dev.info.memory_B} B")
        self._arena = dev.alloc(max(plan.arena_B, 1))
        for name, arr in self.image.weights.items():
            self._arena.write(memoryview(np.ascontiguousarray(arr)).cast("B"), plan.offsets[name])
        self._place_io()
        self._programs = {}
        for k in self.dag.kernels.values():
            known = {key: v for key, v in k.meta.get(self.target, {}).items()
                     if key in ("max_threads", "shared_B", "regs") and isinstance(v, int)}
            meta = hal.KernelMeta(tuple(k.params), **known)
            self._programs[k.name] = dev.load_program(k.binaries[self.target], k.name, meta)
        self._recorded = Recorded(dev, self.dag, plan, self.target, self._arena, self._programs, self._stage,
                                  self._places, self._written)
        self._profiled = None  # recorded on the first run_profiled()

    def _place_io(self):
        """Where inputs and outputs live, and the host's array views of them (self._host_io).

        Device memory the host can see (cpu): in the arena, as planned; the host writes and reads
        them there. Otherwise the host's side is one host-visible buffer, and per buffer, by the
        device's properties (hal DeviceInfo): an input of at most input_write_max_B is written into
        the arena by the compute stream itself (CommandStream.write), an output of at most
        output_in_place_max_B is written by its kernel in place in the host-visible buffer; larger
        ones are staged between the buffer and the arena by the copy queue. stage_io=True stages all,
        stage_io=False none (every input written by the stream, every output in place)."""
        dev, info, io = self.device, self.device.info, list(self.inputs) + list(self.outputs)
        self._stage, self._places, self._written, self._io_buf = {}, {}, {}, None
        if self._arena.host_visible and self._stage_io is None:
            views = {name: (self._arena, self.plan.offsets[name]) for name in io}
        else:
            offsets, pos = {}, 0
            for name in io:
                offsets[name] = pos
                pos = align_up(pos + self.dag.buffers[name].nbytes, STAGE_ALIGN_B)
            self._io_buf = dev.alloc(max(pos, 1), host_visible=True)
            views = {name: (self._io_buf, off) for name, off in offsets.items()}
            for name, where in views.items():
                size_B, is_input = self.dag.buffers[name].nbytes, name in self.inputs
                limit_B = info.input_write_max_B if is_input else info.output_in_place_max_B
                if self._stage_io or (self._stage_io is None and size_B > limit_B):
                    self._stage[name] = where
                elif is_input:
                    self._written[name] = where[0].view()[where[1]:where[1] + size_B]
                else:
                    self._places[name] = where
        self._host_io = {}
        for name, (buf, off) in views.items():
            b = self.dag.buffers[name]
            self._host_io[name] = np.frombuffer(buf.view(), np.dtype(b.dtype), b.nbytes // np.dtype(b.dtype).itemsize,
                                                off).reshape(b.shape)

    def _free(self):
        """Free what _setup allocated on the device (for a model that does not own it)."""
        self._host_io, self._written = {}, {}  # host views into the buffers freed below
        for recorded in (self._recorded, self._profiled):
            if recorded is not None:
                recorded.close()
        for program in self._programs.values():
            program.close()
        for buf in (self._arena, self._io_buf):
            if buf is not None:
                buf.free()
        self._arena = self._io_buf = self._recorded = self._profiled = None
        self._programs = {}

    def recover(self):
        """Re-open the device by its spec and load again (after a timeout or fault).

        The old device is closed on a helper thread; if that does not finish within
        close_timeout_s (a kernel that never returns keeps its queue busy), the old device is
        abandoned, with its memory and threads, and the model continues on a fresh one.
        A model that does not own its device frees its part and loads again on the same device."""
        if not self.owns_device:
            self._free()
            self._setup()
            self._broken = False
            self.recoveries += 1
            return
        old = self.device
        closer = threading.Thread(target=old.close, name=f"kernelos-close-{old.spec}", daemon=True)
        closer.start()
        closer.join(self.close_timeout_s)
        if closer.is_alive():
            self.abandoned_devices += 1
            print(f"kernelos: device {old.spec} did not close within {self.close_timeout_s} s after an error "
                  "(a kernel still runs); abandoning it and opening a fresh one", file=sys.stderr)
        self.device = hal.open(old.spec)
        self._setup()
        self._broken = False
        self.recoveries += 1

    def close(self):
        if self.closed:
            return
        self.closed = True
        if not self.device.closed:
            if self.owns_device:
                self.device.close()  # frees arena, staging, programs, signals and queues with it
            else:
                self._free()
        if self._owns_image:
            self.image.close()

    def _check_open(self):
        if self.closed:
            raise DeviceClosed(f"model {self.image.name!r} was closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- inference --------------------------------------------------------------------------
    @property
    def submits_per_inference(self) -> int:
        return self._recorded.submits_per_inference

    def check_inputs(self, inputs) -> dict:
        """name -> C-contiguous array, or InvalidArgument naming what was expected."""
        if not isinstance(inputs, dict) or inputs.keys() != self.inputs.keys():
            got = sorted(inputs, key=str) if isinstance(inputs, dict) else type(inputs).__name__
            raise InvalidArgument(f"model {self.image.name!r} takes inputs {{{self._inputs_wanted()}}}; got {got}")
        out = {}
        for name, (shape, dt) in self.inputs.items():
            x = inputs[name]
            if not isinstance(x, np.ndarray) or x.dtype != dt or x.shape != shape:
                got = f"{x.dtype.name}{list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
                raise InvalidArgument(f"input {name!r} is {got}; model {self.image.name!r} takes "
                                      f"{{{self._inputs_wanted()}}}")
            out[name] = np.ascontiguousarray(x)
        return out

    def _inputs_wanted(self) -> str:
        return ", ".join(f"{n}: {dt.name}{list(shape)}" for n, (shape, dt) in self.inputs.items())

    def run(self, inputs: dict, poison: bool = False) -> dict:
        """One inference: outputs as new arrays. poison: first fill every activation byte (and the
        staging) with 0xFF, so an output a kernel fails to write shows up as NaN / garbage."""
        return self._run(inputs, poison, profiled=False)

    def run_profiled(self, inputs: dict) -> tuple:
        """One inference on the profiled recording (timestamps around every node, see
        kernelos/scheduler.py): (outputs, the Recorded whose stamps hold this run's device times).
        kernelos/profile.py turns these into a timeline."""
        return self._run(inputs, False, profiled=True), self._profiled

    def _run(self, inputs: dict, poison: bool, profiled: bool) -> dict:
        self._check_open()
        inputs = self.check_inputs(inputs)
        with self._lock:
            if self._broken:
                self.recover()
            if profiled and self._profiled is None:
                self._profiled = Recorded(self.device, self.dag, self.plan, self.target, self._arena,
                                          self._programs, self._stage, self._places, self._written, profile=True)
            recorded = self._profiled if profiled else self._recorded
            t0 = time.perf_counter()
            if poison:
                self._poison()
            for name, x in inputs.items():
                self._host_io[name][...] = x
            self.count += 1
            try:
                recorded.run(self.count, self.timeout_s)
            except (DeviceTimeout, DeviceFault):
                self._broken = True
                raise
            out = {name: self._host_io[name].copy() for name in self.outputs}
            self.last_latency_s = time.perf_counter() - t0
            return out

    def _poison(self):
        size_B = self.plan.arena_B - self.plan.weights_B
        if size_B:
            self._arena.write(b"\xff" * size_B, self.plan.weights_B)
        if self._io_buf is not None:
            self._io_buf.write(b"\xff" * self._io_buf.size_B)

    def self_test(self) -> SelfTest:
        """Run the image's golden input and compare with its golden output."""
        t0 = time.perf_counter()
        got = self.run(self.image.golden_inputs, poison=True)
        latency_s = time.perf_counter() - t0
        atol, rtol = self.image.golden_atol, self.image.golden_rtol
        passed, max_err = True, 0.0
        for name, want in self.image.golden_outputs.items():
            g, w = got[name].astype(np.float64), want.astype(np.float64)
            err = np.abs(g - w)
            max_err = max(max_err, float(np.max(err)) if err.size else 0.0)
            passed &= bool(np.all(np.isfinite(g)) and np.all(err <= atol + rtol * np.abs(w)))
        return SelfTest(passed, max_err, atol, rtol, latency_s)

    # --- stepping (the shell) ---------------------------------------------------------------
    def nodes(self) -> list:
        """The DAG's nodes in the order the scheduler runs them."""
        return self.dag.topo_order()

    def steps(self, inputs: dict):
        """Run the DAG one node at a time (unrecorded, for inspection), yielding a NodeStep per node
        with the arrays it read and wrote. The generator holds the model's lock from its first step
        until it ends or is closed: a run() from the same thread meanwhile would wait forever."""
        self._check_open()
        inputs = self.check_inputs(inputs)
        with self._lock:
            if self._broken:
                self.recover()
            self._poison()
            for name, x in inputs.items():
                self._arena.write(memoryview(x).cast("B"), self.plan.offsets[name])
            done = self.device.signal(0)
            try:
                for i, node in enumerate(self.nodes()):
                    reads = {b: self._read_arena(b) for b in node.reads}
                    self._run_one(node, done, i + 1)
                    yield NodeStep(i, node, reads, {b: self._read_arena(b) for b in node.writes})
            finally:
                done.close()

    def _read_arena(self, name: str) -> np.ndarray:
        b = self.dag.buffers[name]
        return np.frombuffer(self._arena.read(b.nbytes, self.plan.offsets[name]), dtype=b.dtype).reshape(b.shape)

    def _run_one(self, node, done, value: int):
        at = self.plan.offsets
        if hasattr(node, "kernel"):
            args = [(self._arena, at[a.buffer] + a.offset_B) if hasattr(a, "buffer") else a for a in node.args]
            grid, block = node.dims[self.target]
            s = self.device.queue("compute").stream().launch(self._programs[node.kernel], args, grid, block)
        else:
            s = self.device.queue("copy").stream().copy(self._arena, self._arena, node.size_B,
                                                        at[node.dst] + node.dst_offset_B, at[node.src] + node.src_offset_B)
        try:
            s.signal(done, value).submit()
            done.wait(value, self.timeout_s)
        except (DeviceTimeout, DeviceFault):
            self._broken = True
            raise
