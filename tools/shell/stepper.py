"""Step through a device image's DAG on the shell's device, node by node.

The image is loaded by kernelos.model (the runtime's own loader: one arena, the memory plan,
the kernels); LoadedModel.steps() runs one node at a time and hands back what the node read
before and wrote after it ran. This module shows those and remembers the latest value of every
buffer, so `tensor(name)` works even where the arena has since reused the memory.

The model is loaded onto the shell's device without owning it: close() frees the model's arena,
kernels and signals and leaves the device open.
"""

import numpy as np

from hal.errors import DeviceClosed, InvalidArgument
from kernelos.model import load_model

PREVIEW_VALUES = 8


def load_stepper(dev, image_path, timeout_s: float) -> "Stepper":
    return Stepper(load_model(image_path, dev, timeout_s=timeout_s, owns_device=False))


def preview(a: np.ndarray) -> str:
    """'float32[2, 4] [0.1 0.2 ...] ... 8 values': dtype, shape and the first values."""
    flat = a.reshape(-1)
    values = np.array2string(flat[:PREVIEW_VALUES], precision=4, suppress_small=True)
    more = f" ... {flat.size} values" if flat.size > PREVIEW_VALUES else ""
    return f"{a.dtype}{list(a.shape)} {values}{more}"


def describe(node, target: str) -> str:
    if not hasattr(node, "kernel"):
        return f"copy {node.size_B} B"
    grid, block = node.dims[target]
    return f"launch {node.kernel} grid={tuple(grid)} block={tuple(block)}"


class Stepper:
    """A loaded image run one node at a time: nodes(), step(), run(), tensor(name), check(), reset(),
    self_test()."""

    def __init__(self, model):
        # The model stays private: a suspended steps() holds its lock, so a model.run() from the
        # shell between two steps would wait forever; self_test() and reset() end the stepping first.
        self._model, self.dag, self.target = model, model.dag, model.target
        self.order = model.nodes()
        self._steps = None
        self.reset()

    def reset(self, inputs: dict | None = None):
        """Start again at the first node with `inputs` (default: the image's golden inputs)."""
        self._end_stepping()
        self.inputs = self._model.check_inputs(self._model.image.golden_inputs if inputs is None else inputs)
        self._steps = self._model.steps(self.inputs)
        self.next, self.seen = 0, {}

    def _end_stepping(self):
        if self._steps is not None:
            self._steps.close()  # releases the model's lock a suspended steps() holds

    def close(self):
        """Free the model's memory, kernels and signals on the device (the device stays open)."""
        self._end_stepping()
        self._model.close()

    def self_test(self):
        """The runtime's boot self-test on this image (a whole recorded inference); stepping restarts."""
        self._end_stepping()
        try:
            print(self._model.self_test())
        finally:
            self.reset(self.inputs)

    def step(self, count: int = 1):
        """Run the next `count` nodes, showing what each read and wrote."""
        for _ in range(count):
            done = self._advance()
            if done is None:
                print(f"all {len(self.order)} nodes have run; reset() starts again")
                return
            print(f"node {done.index} {done.node.name}: {describe(done.node, self.target)}")
            for direction, arrays in (("in ", done.reads), ("out", done.writes)):
                for name, a in arrays.items():
                    print(f"  {direction} {name:<10} {self.dag.buffers[name].role:<8} {preview(a)}")

    def run(self):
        """Run every remaining node without showing them."""
        while self._advance() is not None:
            pass

    def _advance(self):
        if self._model.closed:
            raise DeviceClosed("this image was closed (a later load() replaces it); load() it again to step it")
        done = next(self._steps, None)
        if done is not None:
            self.seen.update(done.reads)
            self.seen.update(done.writes)
            self.next += 1
        return done

    def tensor(self, name: str) -> np.ndarray:
        """Buffer `name` as the last node that read or wrote it saw it."""
        if name not in self.dag.buffers:
            raise InvalidArgument(f"no buffer {name!r}; the DAG has {sorted(self.dag.buffers)}")
        if name not in self.seen:
            raise InvalidArgument(f"buffer {name!r} has not been read or written by a node yet; step() first")
        return self.seen[name]

    def nodes(self):
        """The nodes in run order; '>' marks the next one."""
        whats = ["copy" if not hasattr(n, "kernel") else n.kernel for n in self.order]
        name_w, what_w = max(len(n.name) for n in self.order), max(map(len, whats))
        for i, (node, what) in enumerate(zip(self.order, whats)):
            mark = ">" if i == self.next else " "
            print(f"{mark} {i:2}  {node.name:<{name_w}}  {what:<{what_w}}  {', '.join(node.reads)} -> {', '.join(node.writes)}")

    def check(self):
        """Compare every output seen so far with the image's golden output (max abs error)."""
        for name, want in self._model.image.golden_outputs.items():
            if name not in self.seen:
                print(f"{name}: not written yet ({self.next} of {len(self.order)} nodes have run)")
                continue
            err = float(np.max(np.abs(self.seen[name].astype(np.float64) - want.astype(np.float64))))
            print(f"{name}: max |out - golden| = {err:.3g}")

    def __repr__(self):
        return f"<Stepper {self.dag.name} on {self._model.device.spec} ({self.target}): node {self.next} of {len(self.order)} next>"
