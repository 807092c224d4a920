"""ONNX backend node tests for the ops the builder supports, through the product path: build an
image for the cpu (kernelos.builder), load it on the cpu device (kernelos.model), run each test
data set and compare with the expected outputs at the case's own tolerances.

    python tools/onnx_conformance.py                 # all cases -> docs/onnx-conformance.md
    python tools/onnx_conformance.py --op Conv -v    # one op, print each case

The cases come from onnx.backend.test.case.node (the generators behind the on-disk node tests).
A case belongs to an op when its graph holds only that op (besides Constant); "_expanded" variants
are function expansions into other ops and are listed separately. Inputs that a static-shape
compiler needs at build time (a Reshape's shape, Slice's starts, reduce axes...) are bound to the
case's values with build_image(constants=...), which `kernelos build --const` also offers.
"""

import argparse
import collections
import datetime
import os
import platform
import re
import sys
import tempfile
import time
import warnings

import numpy as np
from onnx import numpy_helper

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hal.errors import KernelosError  # noqa: E402
from kernelos.builder.build import build_image  # noqa: E402
from kernelos.builder.graph import UnsupportedModel  # noqa: E402
from kernelos.builder.ops import REGISTRY  # noqa: E402
from kernelos.model import load_model  # noqa: E402

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "onnx-conformance.md")
NEEDS_CONST = re.compile(r"must be a build-time constant; '(.*?)' is computed at run time")


def collect(ops=None, expanded=False):
    """[(op, case)] for the supported ops (or `ops`), sorted by op then case name."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    by_name = {c.name: c for c in cases}
    out = []
    for c in cases:
        m = re.match(r"(.*?)_expanded(_.*)?$", c.name)
        if bool(m) != expanded:
            continue
        base = by_name.get(m.group(1) + (m.group(2) or "")) or by_name.get(m.group(1)) if m else c
        op = _op_of(base) if base else None
        if op in REGISTRY and (not ops or op in ops):
            out.append((op, c))
    return sorted(out, key=lambda oc: (oc[0], oc[1].name))


def _op_of(case):
    types = {n.op_type for n in case.model.graph.node}
    if len(types) > 1:
        types -= {"Constant"}
    return types.pop() if len(types) == 1 else None


def _array(t):
    return numpy_helper.to_array(t) if hasattr(t, "dims") else np.asarray(t)


def input_names(case) -> list:
    g = case.model.graph
    inits = {i.name for i in g.initializer}
    return [i.name for i in g.input if i.name not in inits]


def with_bindings(case, build):
    """build(constants) with the case's shape-like inputs bound at build time, as many as the
    builder asks for; returns (result, constants)."""
    names, consts = input_names(case), {}
    while True:
        try:
            return build(consts), consts
        except KernelosError as e:
            m = NEEDS_CONST.search(str(e))
            if not m or m.group(1) not in names or m.group(1) in consts:
                raise
            consts[m.group(1)] = _array(case.data_sets[0][0][names.index(m.group(1))])


def run_case(case, workdir) -> tuple:
    """(status, detail): status is pass, fail (wrong numbers), unsupported (a documented limit:
    the builder refused the model with UnsupportedModel) or error (anything else)."""
    g = case.model.graph
    names, image = input_names(case), os.path.join(workdir, case.name + ".kimg")
    try:
        _, consts = with_bindings(case, lambda c: build_image(case.model, image, ["cpu"], constants=c))
        with load_model(image, "cpu") as model:
            for inputs, expected in case.data_sets:
                feed = {n: _array(v) for n, v in zip(names, inputs) if n not in consts}
                got = model.run(feed, poison=True)
                for out, want in zip([o.name for o in g.output], expected):
                    want = _array(want)
                    have = got[out]
                    if have.shape != want.shape or have.dtype != want.dtype:
                        return "fail", f"{out}: got {have.dtype}{list(have.shape)}, expected {want.dtype}{list(want.shape)}"
                    if not np.allclose(have, want, rtol=case.rtol, atol=case.atol, equal_nan=True):
                        err = np.abs(have.astype(np.float64) - want.astype(np.float64)).max()
                        return "fail", f"{out}: max abs error {err:.3g} (rtol {case.rtol}, atol {case.atol})"
        return "pass", "bound at build time: " + ", ".join(consts) if consts else ""
    except UnsupportedModel as e:
        return "unsupported", "; ".join(why for _, _, why in e.problems)
    except KernelosError as e:
        return "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        if os.path.exists(image):
            os.unlink(image)


def run_all(pairs, verbose=False):
    results = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="kos-conf-") as tmp:
        for op, case in pairs:
            status, detail = run_case(case, tmp)
            results[op].append((case.name, status, detail))
            if verbose:
                print(f"{status:12} {op:20} {case.name} {detail}", flush=True)
    return results


def render(results, expanded, seconds) -> str:
    total = sum(len(v) for v in results.values())
    passed = sum(1 for v in results.values() for _, s, _ in v if s == "pass")
    unsupported = sum(1 for v in results.values() for _, s, _ in v if s == "unsupported")
    dtype_refused = sum(1 for v in results.values() for _, s, d in v if s == "unsupported" and "dtype" in d)
    lines = [
        "# ONNX backend node tests on the cpu device",
        "",
        "Generated by `python tools/onnx_conformance.py` (do not edit by hand): each case of onnx's node",
        "tests for a supported op is built into an image for the cpu (`kernelos.builder`), loaded on the",
        "cpu device and run; outputs are compared with the case's expected outputs at its own tolerances.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; host: {platform.node()} "
        f"({platform.machine()}); onnx {__import__('onnx').__version__}; {seconds:.0f} s",
        f"- **{passed} / {total} cases pass ({100.0 * passed / max(total, 1):.1f}%)**; "
        f"{unsupported} refused as unsupported (documented limits below), "
        f"{total - passed - unsupported} failed or errored",
        f"- excluding the {dtype_refused} cases whose tensors have a dtype outside the kernel library "
        f"(bfloat16, float8, float4, int4/uint4, int2/uint2): {passed} / {total - dtype_refused} "
        f"({100.0 * passed / max(total - dtype_refused, 1):.1f}%)",
        f"- excluding every refused case: {passed} / {total - unsupported} "
        f"({100.0 * passed / max(total - unsupported, 1):.1f}%)",
        "",
        "| op | cases | passed | failed | unsupported |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for op, rows in sorted(results.items()):
        c = collections.Counter(s for _, s, _ in rows)
        lines.append(f"| {op} | {len(rows)} | {c['pass']} | {c['fail'] + c['error']} | {c['unsupported']} |")
    lines += ["", "## Cases that do not pass", "", "| op | case | status | detail |", "| --- | --- | --- | --- |"]
    for op, rows in sorted(results.items()):
        for name, status, detail in rows:
            if status != "pass":
                lines.append(f"| {op} | {name} | {status} | {detail.replace('|', '/')} |")
    if expanded:
        ep = sum(1 for v in expanded.values() for _, s, _ in v if s == "pass")
        et = sum(len(v) for v in expanded.values())
        lines += ["", "## Function-expanded variants (`_expanded`)", "",
                  f"These spell a supported op out in other ops (some unsupported): {ep} / {et} pass.", "",
                  "| op | cases | passed | unsupported | failed |", "| --- | ---: | ---: | ---: | ---: |"]
        for op, rows in sorted(expanded.items()):
            c = collections.Counter(s for _, s, _ in rows)
            lines.append(f"| {op} | {len(rows)} | {c['pass']} | {c['unsupported']} | {c['fail'] + c['error']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", action="append", help="only these ops (repeatable); prints instead of writing the doc")
    ap.add_argument("--no-expanded", action="store_true", help="skip the _expanded variants")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--output", default=DOC)
    args = ap.parse_args(argv)
    t0 = time.time()
    results = run_all(collect(args.op), args.verbose)
    expanded = {} if args.no_expanded or args.op else run_all(collect(expanded=True), args.verbose)
    text = render(results, expanded, time.time() - t0)
    if args.op:
        print(text)
    else:
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}")
        print("\n".join(text.splitlines()[7:11]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
