"""Step through a device image's DAG on the shell's device, node by node.

Unlike the runtime's loader, which places buffers in one arena where scratch tensors share memory
by lifetime, the stepper gives every DAG buffer its own allocation: every intermediate stays
readable after the node that wrote it, which is the point of stepping. Inputs start as the
image's golden inputs; `check()` compares the outputs with the golden outputs.
"""

import numpy as np

import hal
from hal.errors import InvalidArgument
from kernelos.dag import BufArg, Copy
from kernelos.image import read_image

from .waiting import wait_signal

PREVIEW_VALUES = 8
LAUNCH_META_KEYS = ("max_threads", "shared_B", "regs")


def load_stepper(dev, image_path, timeout_s: float) -> "Stepper":
    image = read_image(image_path)
    try:
        return Stepper(dev, image, image.pick_target(dev.targets), timeout_s)
    finally:
        image.close()  # the stepper keeps device copies; nothing refers to the mapped file


def preview(a: np.ndarray) -> str:
    """'float32[2, 4] [0.1 0.2 ...] ... 8 values': dtype, shape and the first values."""
    flat = a.reshape(-1)
    values = np.array2string(flat[:PREVIEW_VALUES], precision=4, suppress_small=True)
    more = f" ... {flat.size} values" if flat.size > PREVIEW_VALUES else ""
    return f"{a.dtype}{list(a.shape)} {values}{more}"


class Stepper:
    """A loaded image run one node at a time: nodes(), step(), run(), tensor(name), check(), reset()."""

    def __init__(self, dev, image, target: str, timeout_s: float):
        self.dev, self.target, self.timeout_s = dev, target, timeout_s
        self.dag, self.order = image.dag, image.dag.topo_order()
        self.inputs = {k: np.array(v) for k, v in image.golden_inputs.items()}
        self.golden = {k: np.array(v) for k, v in image.golden_outputs.items()}
        self.buffers, self.programs, self.done = {}, {}, None
        try:
            for name, spec in self.dag.buffers.items():
                self.buffers[name] = dev.alloc(spec.size_B, host_visible=True)
            for name, arr in image.weights.items():
                self.buffers[name].write(np.ascontiguousarray(arr))
            for k in self.dag.kernels.values():
                if k.binaries.get(target):
                    self.programs[k.name] = dev.load_program(k.binaries[target], k.name, self._meta(k))
            self.done = dev.signal(0)
            self.reset()
        except BaseException:
            self.close()
            raise

    def _meta(self, kernel):
        meta = dict(kernel.meta.get(self.target, {}))
        launch = {k: meta.pop(k) for k in LAUNCH_META_KEYS if k in meta}
        return hal.KernelMeta(tuple(kernel.params), **launch, extra=meta)

    # --- running ----------------------------------------------------------------------
    def reset(self):
        """Back to the first node, with the inputs written again and every other buffer poisoned."""
        for name, spec in self.dag.buffers.items():
            if spec.role in ("output", "scratch"):
                self.buffers[name].write(b"\xcd" * spec.size_B)
        for name, arr in self.inputs.items():
            self.buffers[name].write(np.ascontiguousarray(arr, dtype=self.dag.buffers[name].dtype))
        self.next = 0

    def step(self, count: int = 1):
        """Run the next `count` nodes, showing what each read and wrote."""
        for _ in range(count):
            if self.next >= len(self.order):
                print(f"all {len(self.order)} nodes have run; reset() starts again")
                return
            node = self.order[self.next]
            self._run(node)
            self.next += 1
            self._show(self.next - 1, node)

    def run(self):
        """Run every remaining node without showing them."""
        while self.next < len(self.order):
            self._run(self.order[self.next])
            self.next += 1

    def _run(self, node):
        if isinstance(node, Copy):
            stream = self.dev.queue("copy").stream().copy(self.buffers[node.dst], self.buffers[node.src], node.size_B,
                                                          node.dst_offset_B, node.src_offset_B)
        else:
            args = [(self.buffers[a.buffer], a.offset_B) if isinstance(a, BufArg) else a for a in node.args]
            grid, block = node.dims[self.target]
            stream = self.dev.queue("compute").stream().launch(self.programs[node.kernel], args, grid, block)
        value = self.done.value + 1
        stream.signal(self.done, value).submit()
        wait_signal(self.done, value, self.timeout_s)

    # --- looking ----------------------------------------------------------------------
    def tensor(self, name: str) -> np.ndarray:
        """The buffer `name` as it is now, as a numpy array of its DAG shape and dtype."""
        spec = self.dag.buffers.get(name)
        if spec is None:
            raise InvalidArgument(f"no buffer {name!r}; the DAG has {sorted(self.dag.buffers)}")
        raw = self.buffers[name].read(spec.nbytes)
        return np.frombuffer(raw, dtype=spec.dtype).reshape(spec.shape).copy()

    def nodes(self):
        """The nodes in run order; '>' marks the next one."""
        whats = ["copy" if isinstance(n, Copy) else n.kernel for n in self.order]
        name_w, what_w = max(len(n.name) for n in self.order), max(map(len, whats))
        for i, (node, what) in enumerate(zip(self.order, whats)):
            mark = ">" if i == self.next else " "
            print(f"{mark} {i:2}  {node.name:<{name_w}}  {what:<{what_w}}  {', '.join(node.reads)} -> {', '.join(node.writes)}")

    def _show(self, index: int, node):
        what = "copy" if isinstance(node, Copy) else f"launch {node.kernel} grid={tuple(node.dims[self.target][0])} " \
                                                      f"block={tuple(node.dims[self.target][1])}"
        print(f"node {index} {node.name}: {what}")
        for direction, names in (("in ", node.reads), ("out", node.writes)):
            for name in names:
                spec = self.dag.buffers[name]
                print(f"  {direction} {name:<10} {spec.role:<8} {preview(self.tensor(name))}")

    def check(self):
        """Compare every output with the image's golden output (max abs error)."""
        for name, want in self.golden.items():
            got = self.tensor(name)
            err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            print(f"{name}: max |out - golden| = {err:.3g}{'' if self.next == len(self.order) else ' (not all nodes have run)'}")

    def close(self):
        """Free the stepper's buffers, programs and signal (the device closes them anyway on exit)."""
        for b in self.buffers.values():
            b.free()
        for p in self.programs.values():
            p.close()
        if self.done is not None:
            self.done.close()

    def labels(self) -> dict:
        """va -> (Buffer, 'dag-name:buffer') of the stepper's buffers (for the shell's memory map)."""
        return {b.va: (b, f"{self.dag.name}:{name}") for name, b in self.buffers.items()}

    def __repr__(self):
        return f"<Stepper {self.dag.name} on {self.dev.spec} ({self.target}): node {self.next} of {len(self.order)} next>"
