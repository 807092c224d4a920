"""Writing a device image: validate, plan, lay out, write atomically."""

import hashlib
import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from hal.errors import ImageError

from ..dag import KernelDAG
from ..planner import plan_memory
from . import manifest as mf
from .layout import KIND_GOLDEN, KIND_KERNEL, KIND_MANIFEST, KIND_WEIGHT, Section, layout_offsets, pack_header


@dataclass
class ImageSummary:
    """What write_image wrote: path, file size, targets, sections and the plan report per target."""

    path: str
    size_B: int
    targets: list
    sections: int
    plans: dict = field(default_factory=dict)  # target -> MemoryPlan

    def __str__(self):
        lines = [f"{self.path}: {self.size_B} B, {self.sections} sections, targets {', '.join(self.targets)}"]
        return "\n".join(lines + ["  " + p.report() for p in self.plans.values()])


def _tensors(given: dict, dag: KernelDAG, role: str, what: str) -> list:
    """[(spec, C-contiguous array)] for every buffer of `role`, checking names, shapes and dtypes."""
    if not isinstance(given, dict):
        raise ImageError(f"{what} must be a dict of name -> numpy array")
    specs = dag.by_role(role)
    if sorted(given) != sorted(b.name for b in specs):
        raise ImageError(f"{what} have names {sorted(given)}; the DAG's {role} buffers are {sorted(b.name for b in specs)}")
    out = []
    for b in specs:
        arr = given[b.name]
        if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(b.dtype) or arr.shape != b.shape:
            got = f"{arr.dtype}{list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise ImageError(f"{what} {b.name!r} is {got}; the DAG wants {b.dtype}{list(b.shape)}")
        out.append((b, np.ascontiguousarray(arr)))
    return out


def write_image(path, dag: KernelDAG, weights: dict, golden_inputs: dict, golden_outputs: dict,
                model_info: dict | None = None, precision: dict | None = None) -> ImageSummary:
    """Write `dag` with its kernels, weights and golden pair as a device image at `path`.

    Targets are those any kernel has a binary for (dag.kernels[k].binaries[target]); the DAG must
    validate for every one of them (GraphError names the node otherwise) and is planned per target.
    weights / golden_inputs / golden_outputs must name exactly the DAG's weight / input / output
    buffers with their shapes and dtypes (ImageError otherwise). model_info is stored as the
    manifest's model.info (JSON-serialisable); its optional "golden_atol" / "golden_rtol" set the
    self-test tolerance (default 1e-4 each, |out - golden| <= atol + rtol * |golden|).
    precision: {target: "fp32" | "tf32"}, the math precision of each target's kernels, stored as
    the manifest's "precision" (targets not named are fp32; a name that is not a target, or another
    value, is an ImageError).
    The file appears complete or not at all: written to a temporary file in the same directory,
    fsync'ed, then renamed over `path`; on any failure the temporary file is removed (an OS error,
    such as a missing directory or a full disk, raises ImageError naming the path).
    """
    model_info = dict(model_info or {})
    targets = sorted({t for k in dag.kernels.values() for t, b in k.binaries.items() if b})
    if not targets:
        raise ImageError("no kernel has a binary for any target; compile the kernels first")
    for t in targets:
        dag.validate(t)
    precision = dict(precision or {})
    if set(precision) - set(targets):
        raise ImageError(f"precision names targets {sorted(set(precision) - set(targets))} the kernels are not built for")
    doc_precision = mf.target_precisions({"targets": targets, "precision": {t: precision.get(t, "fp32") for t in targets}})
    plans = {t: plan_memory(dag, t) for t in targets}
    w = _tensors(weights, dag, "weight", "weights")
    gi = _tensors(golden_inputs, dag, "input", "golden inputs")
    go = _tensors(golden_outputs, dag, "output", "golden outputs")

    payloads, doc = [], {"kernels": {t: {} for t in targets}, "weights": {}, "golden": {"inputs": {}, "outputs": {}}}
    for t in targets:
        for i, k in enumerate(dag.kernels.values()):
            payloads.append((KIND_KERNEL, f"k/{t}/{i}", memoryview(bytes(k.binaries[t]))))
            doc["kernels"][t][k.name] = payloads[-1][1]
    for group, prefix, tensors, kind in ((doc["weights"], "w", w, KIND_WEIGHT),
                                         (doc["golden"]["inputs"], "gi", gi, KIND_GOLDEN),
                                         (doc["golden"]["outputs"], "go", go, KIND_GOLDEN)):
        for i, (b, arr) in enumerate(tensors):
            payloads.append((kind, f"{prefix}/{i}", memoryview(arr).cast("B")))
            group[b.name] = payloads[-1][1]
    doc["golden"].update({key: mf.golden_tolerance(f"model_info['golden_{key}']",
                                                   model_info.get(f"golden_{key}", default))
                          for key, default in (("atol", mf.DEFAULT_ATOL), ("rtol", mf.DEFAULT_RTOL))})
    doc.update(format=mf.FORMAT, version=1, model={"name": dag.name, "info": model_info}, targets=targets,
               inputs=mf.tensor_specs(dag, "input"), outputs=mf.tensor_specs(dag, "output"), dag=dag.to_dict(),
               plans={t: p.to_dict() for t, p in plans.items()}, precision=doc_precision)
    try:
        manifest = mf.encode(doc)
    except (TypeError, ValueError) as e:
        raise ImageError(f"model_info must be JSON-serialisable (no NaN): {e}") from None
    payloads.insert(0, (KIND_MANIFEST, "manifest", memoryview(manifest)))

    offsets = layout_offsets([p[2].nbytes for p in payloads])
    sections = [Section(kind, name, off, data.nbytes, hashlib.sha256(data).digest())
                for (kind, name, data), off in zip(payloads, offsets)]
    size_B = offsets[-1] + payloads[-1][2].nbytes
    try:
        _write_atomically(os.fspath(path), pack_header(sections, size_B), zip(offsets, (p[2] for p in payloads)))
    except OSError as e:
        raise ImageError(f"cannot write image {os.fspath(path)}: {e.strerror or e}") from None
    return ImageSummary(os.fspath(path), size_B, targets, len(sections), plans)


def _write_atomically(path: str, head: bytes, chunks):
    directory = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp: its files are 0600, and the rename would keep that mode; an image gets
    # the mode any new file gets here (0666 less the umask), like the output of cp or a compiler.
    tmp = os.path.join(directory, f".kimg-{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for offset_B, data in chunks:
                f.write(b"\0" * (offset_B - f.tell()))
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
