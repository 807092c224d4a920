"""The image manifest: a JSON document (never pickle) that describes everything else in the image.

    {"format": "kernelos-image", "version": 1,
     "model":   {"name": str, "info": {...}},
     "inputs":  [{"name", "shape", "dtype"}], "outputs": [...],
     "targets": ["cpu-x86_64", ...],
     "dag":     KernelDAG.to_dict(),
     "kernels": {target: {kernel name: section name}},
     "weights": {weight buffer name: section name},
     "golden":  {"inputs": {name: section}, "outputs": {name: section}, "atol": float, "rtol": float},
     "plans":   {target: MemoryPlan.to_dict()},
     "precision": {target: "fp32" | "tf32"}}      (optional; absent in older images: all fp32)

`precision` is the math precision of each target's kernels: fp32 everywhere, or tf32 where the
GEMMs and convolutions of a GPU target multiply on tensor cores in TF32 (fp32 accumulation); a cpu
target always computes fp32, so a tf32 build records "fp32" for it.

`check_manifest` checks the document against the sections present and returns the parsed DAG and
plans; every problem is an ImageError that names the field.
"""

import json

from hal.errors import GraphError, ImageError

from ..dag import KernelDAG
from ..planner import MemoryPlan, verify_plan
from .layout import KIND_GOLDEN, KIND_KERNEL, KIND_MANIFEST, KIND_WEIGHT, VERSION

FORMAT = "kernelos-image"
MANIFEST_MAX_B = 64 << 20
DEFAULT_ATOL, DEFAULT_RTOL = 1e-4, 1e-4
PRECISIONS = ("fp32", "tf32")
# issue 9: TF32 output within 1e-2 of the float64 reference, relative to the output's scale
TF32_REL_TOL = 1e-2


def tensor_specs(dag: KernelDAG, role: str) -> list:
    return [{"name": b.name, "shape": list(b.shape), "dtype": b.dtype} for b in dag.by_role(role)]


def encode(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def decode(data: bytes) -> dict:
    if len(data) > MANIFEST_MAX_B:
        raise ImageError(f"manifest is {len(data)} B, over the {MANIFEST_MAX_B} B limit")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ImageError(f"manifest is not valid JSON: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise ImageError("manifest must be a JSON object")
    return doc


def _field(doc: dict, key: str, kind, where: str = "manifest"):
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ImageError(f"{where}.{key} must be a {getattr(kind, '__name__', kind)}, got {value!r:.100}")
    return value


def _section_map(doc: dict, key: str, where: str) -> dict:
    m = _field(doc, key, dict, where)
    if not all(isinstance(v, str) for v in m.values()):
        raise ImageError(f"{where}.{key} must map names to section names")
    return m


def check_manifest(doc: dict, sections: dict) -> tuple:
    """(dag, plans by target, golden tolerances) from a decoded manifest, after checking it against
    `sections` (name -> Section): every referenced section exists with the right kind and size, and
    every section is referenced exactly once."""
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ImageError(f"manifest says format {doc.get('format')!r} version {doc.get('version')!r}; "
                         f"expected {FORMAT!r} version {VERSION}")
    model = _field(doc, "model", dict)
    _field(model, "name", str, "manifest.model")
    _field(model, "info", dict, "manifest.model")
    targets = _field(doc, "targets", list)
    if not targets or not all(isinstance(t, str) and t for t in targets) or len(set(targets)) != len(targets):
        raise ImageError(f"manifest.targets must be distinct non-empty names, got {targets!r:.200}")
    try:
        dag = KernelDAG.from_dict(_field(doc, "dag", dict))
        dag.validate()
    except GraphError as e:
        raise ImageError(f"manifest DAG is invalid: {e}") from None
    for role, key in (("input", "inputs"), ("output", "outputs")):
        if _field(doc, key, list) != [{"name": b.name, "shape": list(b.shape), "dtype": b.dtype}
                                       for b in dag.by_role(role)]:
            raise ImageError(f"manifest.{key} does not match the DAG's {role} buffers")

    used = {}  # section name -> (kind, size_B or None)

    def use(section_name: str, kind: int, size_B, what: str):
        s = sections.get(section_name)
        if s is None or s.kind != kind:
            raise ImageError(f"{what}: section {section_name!r} is missing or of the wrong kind")
        if size_B is not None and s.size_B != size_B:
            raise ImageError(f"{what}: section {section_name!r} is {s.size_B} B, expected {size_B} B")
        if section_name in used:
            raise ImageError(f"{what}: section {section_name!r} is used twice")
        used[section_name] = s

    kernels = _field(doc, "kernels", dict)
    plans_doc = _field(doc, "plans", dict)
    if sorted(kernels) != sorted(targets) or sorted(plans_doc) != sorted(targets):
        raise ImageError(f"manifest.kernels and manifest.plans must cover exactly the targets {targets}")
    plans = {}
    for t in targets:
        by_kernel = _section_map(kernels, t, "manifest.kernels")
        if sorted(by_kernel) != sorted(dag.kernels):
            raise ImageError(f"manifest.kernels[{t!r}] lists {sorted(by_kernel)}, the DAG has {sorted(dag.kernels)}")
        for k, sec in by_kernel.items():
            use(sec, KIND_KERNEL, None, f"kernel {k!r} for {t!r}")
            if sections[sec].size_B == 0:
                raise ImageError(f"kernel {k!r} for {t!r}: section {sec!r} is empty")
        try:
            plans[t] = MemoryPlan.from_dict(plans_doc[t] if isinstance(plans_doc[t], dict) else {})
            if plans[t].target != t:
                raise GraphError(f"plan is for {plans[t].target!r}")
            verify_plan(dag, plans[t])
        except GraphError as e:
            raise ImageError(f"memory plan for {t!r}: {e}") from None

    weights = _section_map(doc, "weights", "manifest")
    if sorted(weights) != sorted(b.name for b in dag.by_role("weight")):
        raise ImageError(f"manifest.weights lists {sorted(weights)}, the DAG's weights are "
                         f"{sorted(b.name for b in dag.by_role('weight'))}")
    for name, sec in weights.items():
        use(sec, KIND_WEIGHT, dag.buffers[name].nbytes, f"weight {name!r}")

    golden = _field(doc, "golden", dict)
    tolerances = {}
    for key in ("atol", "rtol"):
        tolerances[key] = golden_tolerance(f"manifest.golden.{key}", golden.get(key))
    for role, key in (("input", "inputs"), ("output", "outputs")):
        m = _section_map(golden, key, "manifest.golden")
        if sorted(m) != sorted(b.name for b in dag.by_role(role)):
            raise ImageError(f"manifest.golden.{key} must cover exactly the DAG's {role}s")
        for name, sec in m.items():
            use(sec, KIND_GOLDEN, dag.buffers[name].nbytes, f"golden {role} {name!r}")

    target_precisions(doc)
    unused = sorted(n for n, s in sections.items() if s.kind != KIND_MANIFEST and n not in used)
    if unused:
        raise ImageError(f"sections {unused} are not referenced by the manifest")
    for k, kernel in dag.kernels.items():  # section names for now; the reader puts the bytes in
        kernel.binaries = {t: kernels[t][k] for t in targets}
    try:
        for t in targets:
            dag.validate(t)
    except GraphError as e:
        raise ImageError(f"manifest DAG is invalid: {e}") from None
    return dag, plans, tolerances


def golden_tolerance(what: str, tol) -> float:
    """A self-test tolerance as a float, or ImageError unless it is a finite number >= 0."""
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 <= tol < 1e30:
        raise ImageError(f"{what} must be a non-negative number, got {tol!r}")
    return float(tol)


def target_precisions(doc: dict) -> dict:
    """{target: math precision} of a decoded manifest: its "precision" map (every target, each one
    of PRECISIONS), or fp32 for every target where an older image has none; ImageError otherwise."""
    targets = doc.get("targets") or []
    if "precision" not in doc:
        return {t: "fp32" for t in targets}
    prec = doc["precision"]
    if (not isinstance(prec, dict) or sorted(prec) != sorted(targets)
            or not all(isinstance(p, str) and p in PRECISIONS for p in prec.values())):
        raise ImageError(f"manifest.precision must map each target {targets} to one of {', '.join(PRECISIONS)}, "
                         f"got {prec!r:.200}")
    return dict(prec)


def precision_tolerance(precision: str, golden_outputs: dict) -> dict:
    """The self-test tolerance {"atol", "rtol"} an image of `precision` gets by default: 1e-4 each for
    fp32; for tf32 the issue's bound, rtol 1e-2 and atol 1e-2 x the largest |golden output| (so an
    element near zero in an output of large scale is held to the scale, as the e2e check does)."""
    if precision not in PRECISIONS:
        raise ImageError(f"math precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return {"atol": DEFAULT_ATOL, "rtol": DEFAULT_RTOL}
    import numpy as np
    finite = [np.abs(a[np.isfinite(a)]) for a in (np.asarray(v, dtype=np.float64) for v in golden_outputs.values())]
    scale = max((float(a.max()) for a in finite if a.size), default=0.0)
    return {"atol": TF32_REL_TOL * scale, "rtol": TF32_REL_TOL}
