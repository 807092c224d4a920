"""`kernelos inspect IMAGE [--json]`: manifest, sections, checksums, targets, memory plans."""

import json

from kernelos.image import read_image

NAME = "inspect"
HELP = "verify a device image and print its manifest, sections, checksums and targets"


def add_arguments(p):
    p.add_argument("image", help="the device image (.kimg)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args) -> int:
    with read_image(args.image) as im:
        sections = [{"kind": s.kind_name, "name": s.name, "offset_B": s.offset_B, "size_B": s.size_B,
                     "sha256": s.sha256.hex()} for s in im.sections]
        if args.json:
            print(json.dumps({"path": str(args.image), "targets": im.targets, "precision": im.precision, "sections": sections,
                              "manifest": im.manifest}, indent=2))
            return 0
        m = im.manifest
        print(f"image {args.image}: verified; model {im.name!r}, format v{m['version']}, targets {', '.join(im.targets)}")
        print("  math   " + ", ".join(f"{t} {im.precision[t]}" for t in im.targets)
              + ("" if "precision" in m else " (no precision field: an older image, fp32)"))
        for key in ("inputs", "outputs"):
            for t in m[key]:
                print(f"  {key[:-1]:6} {t['name']}: {t['dtype']}{t['shape']}")
        if m["model"]["info"]:
            print(f"  info   {json.dumps(m['model']['info'])}")
        print(f"  DAG: {len(im.dag.nodes)} nodes, {len(im.dag.kernels)} kernels, {len(im.dag.buffers)} buffers; "
              f"golden tolerance atol {im.golden_atol:g} rtol {im.golden_rtol:g}")
        for node in im.dag.topo_order():
            what = f"launch {node.kernel}" if hasattr(node, "kernel") else f"copy {node.size_B} B"
            print(f"    {node.name}: {what}  reads {list(node.reads)} writes {list(node.writes)}")
        for t in im.targets:
            print(f"  plan {im.plan(t).report()}")
        print("  sections:")
        for s in sections:
            print(f"    {s['kind']:8} {s['name']:24} offset {s['offset_B']:>10}  size {s['size_B']:>10} B  sha256 {s['sha256']}")
    return 0
