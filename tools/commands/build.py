"""`kernelos build`: ONNX model -> device image with kernels compiled ahead of time per target."""

import numpy as np

from hal.errors import GraphError
from kernelos.image.manifest import PRECISIONS

NAME = "build"
HELP = "build a device image from an ONNX model (kernels compiled for each --target)"
DESCRIPTION = """Build a device image from an ONNX model.

  kernelos build model.onnx -o model.kimg --target cpu --target sm_90
  kernelos build resnet.onnx -o r.kimg --target cpu --shape input=1,3,224,224
  kernelos build resnet.onnx -o r.kimg --target sm_90 --precision tf32

Targets: cpu (this host's cpu device), sm_80, sm_86, sm_89, sm_90, sm_100 (NVIDIA, compiled with
NVRTC; no GPU needed). Unsupported ops are listed all at once (exit 2).

Math precision (--precision, recorded per target in the image): fp32 (default) everywhere, or tf32:
the GPU targets' GEMMs and convolutions multiply on tensor cores with TF32 inputs (10-bit mantissa,
fp32 accumulation), the rest stays fp32, and a cpu target still computes fp32. A tf32 image's
boot self-test uses the looser TF32 tolerance (1e-2 of the output's scale)."""


def add_arguments(p):
    p.add_argument("model", help="the ONNX model file")
    p.add_argument("-o", "--output", required=True, help="the image file to write (.kimg)")
    p.add_argument("--target", action="append", default=[], help="cpu or sm_80..sm_100; repeat for several (default: cpu)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix a dynamic input shape, e.g. --shape input=1,3,224,224")
    p.add_argument("--const", action="append", default=[], metavar="NAME=FILE.npy",
                   help="bind an input to a fixed array at build time (e.g. a shape or axes input)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="math precision of the GPU GEMMs/convolutions (default fp32; cpu targets always fp32)")
    p.add_argument("--no-fusion", action="store_true", help="one kernel per node (for debugging)")
    p.add_argument("--seed", type=int, default=0, help="seed of the golden input (default 0)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the self-test on the cpu device after writing (done when cpu is a target)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def parse_shapes(items) -> dict:
    shapes = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise GraphError(f"--shape {item!r}: expected NAME=D0,D1,... with integer dims") from None
        if not name or any(d < 0 for d in shapes[name]):
            raise GraphError(f"--shape {item!r}: expected NAME=D0,D1,... with non-negative dims")
    return shapes


def parse_consts(items) -> dict:
    out = {}
    for item in items:
        name, _, path = item.partition("=")
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
            raise GraphError(f"--const {item!r}: cannot load {path!r}: {e}") from None
    return out


def run(args) -> int:
    from kernelos.builder.build import build_image
    from kernelos.builder.progress import Progress

    result = build_image(args.model, args.output, args.target or ["cpu"], parse_shapes(args.shape),
                         parse_consts(args.const), fusion=not args.no_fusion, progress=Progress(quiet=args.quiet),
                         seed=args.seed, verify=not args.no_verify, precision=args.precision)
    print(result.summary_text())
    return 0
