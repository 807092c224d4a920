"""Reading a device image: every check first, then read-only memory-mapped weights.

Nothing read from the file is trusted: the header is checked against the file's real size, the
table against its hash and the canonical layout, each section against its SHA-256, the padding
against zero, and the manifest against the sections (kernelos/image/manifest.py). Only then is an
Image returned; no device is touched here. Reading needs no numpy: the weight and golden arrays are
made on first use (boot imports numpy on a helper thread meanwhile, see boot/sequence.py).

Weights stay mapped from the file: an image must not be truncated or rewritten in place while it
is open (write_image replaces files by rename, which is safe).
"""

import hashlib
import mmap
import os
import stat
import threading

from hal.errors import ImageError

from . import manifest as mf
from .layout import HEADER_SIZE_B, KIND_MANIFEST, padding_ranges, unpack_header, unpack_table

HASH_THREADS = 4  # at most (and at most the cores this process may use)


class Image:
    """A verified device image.

    manifest: the decoded JSON manifest; dag: KernelDAG with kernel binaries (bytes) per target;
    weights: name -> read-only array mapped from the file; golden_inputs / golden_outputs: name ->
    array; golden_atol / golden_rtol: the self-test tolerance; targets: kernel targets present;
    precision: {target: "fp32" | "tf32"}, each target's math precision (fp32 in older images);
    sections: the section table (list of layout.Section); plan(target): the MemoryPlan.
    close() unmaps the file (arrays from `weights` must not be used after it). The arrays are made
    (with numpy) on first use.
    """

    def __init__(self, path, manifest, dag, plans, tolerances, sections, mm):
        self.path, self.manifest, self.dag, self.sections = path, manifest, dag, sections
        self.targets = list(manifest["targets"])
        self.precision = mf.target_precisions(manifest)
        self.name = manifest["model"]["name"]
        self._plans, self._mm = plans, mm
        self.golden_atol, self.golden_rtol = tolerances["atol"], tolerances["rtol"]
        self._arrays = None  # (weights, golden inputs, golden outputs), made on first use

    @property
    def weights(self) -> dict:
        return self._tensors()[0]

    @property
    def golden_inputs(self) -> dict:
        return self._tensors()[1]

    @property
    def golden_outputs(self) -> dict:
        return self._tensors()[2]

    def _tensors(self) -> tuple:
        if self._arrays is None:
            if self._mm is None:
                raise ImageError(f"image {self.path} is closed")
            doc, mm, by_name = self.manifest, self._mm, {s.name: s for s in self.sections}
            weights = {name: _array(mm, by_name[sec], self.dag.buffers[name]) for name, sec in doc["weights"].items()}
            golden = [{name: _array(mm, by_name[sec], self.dag.buffers[name]).copy()
                       for name, sec in doc["golden"][key].items()} for key in ("inputs", "outputs")]
            self._arrays = (weights, *golden)
        return self._arrays

    def plan(self, target: str):
        if target not in self._plans:
            raise ImageError(f"image {self.path} has no plan for target {target!r}; it has {self.targets}")
        return self._plans[target]

    def pick_target(self, device_targets) -> str:
        """The first of a device's targets (best first) this image has kernels for."""
        for t in device_targets:
            if t in self._plans:
                return t
        raise ImageError(f"image {self.path} has kernels for {self.targets}; the device runs {list(device_targets)}")

    def close(self):
        if self._arrays is not None:
            self._arrays = ({}, *self._arrays[1:])  # the golden arrays are copies and stay usable
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a weight array; the mapping goes with it
                pass
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_image(path, target: str | None = None) -> Image:
    """Verify and open the image at `path`; with `target`, also require kernels for it.
    Any damage, truncation, tampering, unsupported version or missing target raises ImageError."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang us
    except OSError as e:
        raise ImageError(f"cannot open image {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"image {path} is not a regular file")
        head = os.pread(fd, HEADER_SIZE_B, 0)
        _, table_size_B = unpack_header(head, st.st_size)
        sections = unpack_table(head, os.pread(fd, table_size_B, HEADER_SIZE_B), st.st_size)
        mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {e}") from None
    finally:
        os.close(fd)
    try:
        image = _verify(path, mm, sections)
    except BaseException:
        mm.close()
        raise
    if target is not None:
        image.pick_target([target])
    return image


def _verify(path, mm, sections) -> Image:
    for start, end in padding_ranges(sections):
        if mm[start:end].count(0) != end - start:
            raise ImageError(f"padding [{start}, {end}) is not zero (damaged image)")
    damaged = _first_damaged(mm, sections)
    if damaged is not None:
        raise ImageError(f"{damaged.kind_name} section {damaged.name!r} is damaged (SHA-256 mismatch)")
    by_name = {s.name: s for s in sections}
    doc = mf.decode(mm[sections[0].offset_B:sections[0].offset_B + sections[0].size_B])
    if sum(s.kind == KIND_MANIFEST for s in sections) != 1:
        raise ImageError("an image has exactly one manifest section")
    dag, plans, tolerances = mf.check_manifest(doc, by_name)
    for kernel in dag.kernels.values():
        kernel.binaries = {t: _bytes(mm, by_name[sec]) for t, sec in kernel.binaries.items()}
    return Image(path, doc, dag, plans, tolerances, sections, mm)


def _first_damaged(mm, sections):
    """The first section, in table order, whose SHA-256 does not match (None when all do). Sections
    are hashed on up to HASH_THREADS threads: hashlib releases the GIL while it hashes, and the
    weights (most of an image) are hashed before anything else can start."""
    good = [False] * len(sections)
    todo = iter(range(len(sections)))  # shared by the threads; each next() is atomic under the GIL
    view = memoryview(mm)

    def hash_some():
        for i in todo:
            s = sections[i]
            good[i] = hashlib.sha256(view[s.offset_B:s.offset_B + s.size_B]).digest() == s.sha256

    helpers = [threading.Thread(target=hash_some, name="kernelos-sha256", daemon=True)
               for _ in range(min(HASH_THREADS, _usable_cores(), len(sections)) - 1)]
    try:
        for t in helpers:
            t.start()
        hash_some()
    finally:
        for t in helpers:
            t.join()
        view.release()
    return next((s for s, ok in zip(sections, good) if not ok), None)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _bytes(mm, s) -> bytes:
    return mm[s.offset_B:s.offset_B + s.size_B]


def _array(mm, s, spec):
    import numpy as np  # here, not at the top: boot reads the image while numpy still imports
    arr = np.frombuffer(mm, dtype=np.dtype(spec.dtype), count=s.size_B // np.dtype(spec.dtype).itemsize,
                        offset=s.offset_B)
    return arr.reshape(spec.shape)
