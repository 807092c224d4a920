"""The build pipeline: ONNX model -> device image with kernels compiled ahead of time per target.

    result = build_image("model.onnx", "model.kimg", ["cpu", "sm_90"], shapes={"x": (1, 784)})
    print(result.summary_text())
"""

import os
import platform
from dataclasses import dataclass

import onnx

from hal.errors import GraphError, ImageError
from kernelos.image import write_image
from kernelos.image.manifest import PRECISIONS, precision_tolerance

from . import infer, onnx_import, rewrite
from .compile import compile_kernels
from .golden import golden_inputs, reference_outputs
from .lowering import Lowering
from .progress import Progress

CPU_TARGET = f"cpu-{platform.machine()}"
NVIDIA_TARGETS = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_100")


def resolve_targets(names) -> list:
    """CLI target names -> kernel targets: "cpu" is this host's cpu target; sm_XX as given."""
    out = []
    for n in names:
        t = CPU_TARGET if n == "cpu" else n
        if t != CPU_TARGET and t not in NVIDIA_TARGETS:
            raise GraphError(f"unknown target {n!r}: expected cpu (= {CPU_TARGET}) or one of {', '.join(NVIDIA_TARGETS)}")
        if t not in out:
            out.append(t)
    if not out:
        raise GraphError("no target given; use --target cpu and/or --target sm_90")
    return out


def check_precision(precision) -> str:
    """The build's math precision (fp32 | tf32), or GraphError naming the choices."""
    if precision not in PRECISIONS:
        raise GraphError(f"unknown math precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def target_precision(target: str, precision: str) -> str:
    """The math a target's kernels do in a build of `precision`: a cpu target always computes fp32."""
    return "fp32" if target == CPU_TARGET else precision


def lower_model(model, targets, shapes=None, constants=None, fusion=True, progress=None, precision="fp32"):
    """Import, infer, fold, fuse and lower; returns the Lowering (graph, dag, specs, weights).
    precision tf32: GPU GEMMs and convolutions on tensor cores in TF32 (kernelos/builder/gemm_tf32.py)."""
    progress = progress or Progress(quiet=True)
    graph = onnx_import.load(model, shapes, constants)
    progress.stage(f"import: {len(graph.nodes)} nodes, opset {graph.opset}, inputs "
                   + ", ".join(f"{n}{list(graph.value(n).shape)}" for n in graph.inputs))
    infer.infer_and_fold(graph)
    folded_bn = rewrite.fold_batchnorm_into_conv(graph)
    low = Lowering(graph, targets, check_precision(precision))
    low.run(fusion)
    launches = sum(1 for n in low.dag.nodes if hasattr(n, "kernel"))
    progress.stage(f"lowering: {len(graph.nodes)} nodes after folding ({folded_bn} BatchNorm folded into Conv) -> "
                   f"{launches} launches of {len(low.specs)} distinct kernels, {len(low.dag.buffers)} buffers")
    return low


def _verify_on_cpu(path, progress):
    from kernelos.model import load_model
    with load_model(path, "cpu") as model:
        result = model.self_test()
    progress.stage(f"verify on cpu: {result}")
    if not result.passed:
        raise ImageError(f"{path}: the cpu kernels disagree with the reference runtime ({result}); "
                         "the image was written for inspection but should not be booted")


@dataclass
class BuildResult:
    path: str
    targets: list
    kernels: dict       # target -> distinct kernels compiled
    launches: int
    weight_B: int
    image_B: int
    arena_B: dict       # target -> arena size
    precision: dict     # target -> math precision (fp32 | tf32)
    dag: object
    golden_inputs: dict
    golden_outputs: dict

    def summary_text(self) -> str:
        lines = [f"image {self.path}: {self.image_B:,} B",
                 f"  weights {self.weight_B:,} B, {self.launches} launches"]
        for t in self.targets:
            lines.append(f"  {t}: {self.kernels[t]} kernels, arena {self.arena_B[t]:,} B, math {self.precision[t]}")
        return "\n".join(lines)


def build_image(model, output, targets, shapes=None, constants=None, fusion=True, progress=None,
                seed: int = 0, model_info: dict | None = None, verify: bool = False,
                precision: str = "fp32") -> BuildResult:
    """Build the image. verify: when the cpu is a target, load the image on the cpu device and run
    its self-test (the golden pair) before returning; ImageError if the kernels disagree.
    precision: fp32 (default) or tf32 (GPU GEMMs and convolutions on tensor cores; the cpu target
    still computes fp32); recorded per target in the manifest. An image with a tf32 target gets the
    looser TF32 self-test tolerance (kernelos.image.manifest.precision_tolerance) unless model_info
    sets one."""
    progress = progress or Progress(quiet=True)
    targets = resolve_targets(targets)
    precision = check_precision(precision)
    proto = onnx_import.read_model(model)
    low = lower_model(proto, targets, shapes, constants, fusion, progress, precision)
    kernels = compile_kernels(low.dag, low.specs, targets, progress)
    gin = golden_inputs(low.graph, seed)
    feeds = dict(gin, **{k: v for k, v in (constants or {}).items()})
    gout = reference_outputs(proto, feeds, [b.name for b in low.dag.by_role("output")])
    per_target = {t: target_precision(t, precision) for t in targets}
    # the looser TF32 tolerance only where some target really computes in TF32
    tolerance = precision_tolerance("tf32" if "tf32" in per_target.values() else "fp32", gout)
    info = {"builder": "kernelos.builder", "source": os.fspath(model) if not isinstance(model, onnx.ModelProto) else None,
            "opset": low.graph.opset, "producer": proto.producer_name or None,
            "golden_atol": tolerance["atol"], "golden_rtol": tolerance["rtol"], **(model_info or {})}
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(output))), exist_ok=True)
    summary = write_image(output, low.dag, low.weights, gin, gout, info, per_target)
    progress.stage(f"image write: {summary.path} ({summary.size_B:,} B, {summary.sections} sections; math "
                   + ", ".join(f"{t} {p}" for t, p in per_target.items())
                   + f"; self-test tolerance atol {info['golden_atol']:.3g} rtol {info['golden_rtol']:.3g})")
    if verify and CPU_TARGET in targets:
        _verify_on_cpu(summary.path, progress)
    return BuildResult(summary.path, targets, kernels, sum(1 for n in low.dag.nodes if hasattr(n, "kernel")),
                       sum(w.nbytes for w in low.weights.values()), summary.size_B,
                       {t: p.arena_B for t, p in summary.plans.items()}, per_target, low.dag, gin, gout)
