"""`kernelos demo`: build the demo MLP as ONNX, build its image for the cpu and every NVIDIA GPU
present, then boot it (self-test, timed inferences) on the best device present."""

import argparse
import os

import onnx

import hal

NAME = "demo"
HELP = "build the demo MLP image (cpu + GPUs present) and boot it"


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return parse


def add_arguments(p):
    p.add_argument("--output", default="out/demo.kimg", help="image path (the ONNX model goes next to it)")
    p.add_argument("--count", type=_int_at_least(0), default=200, help="timed inferences after the self-test (default 200)")
    p.add_argument("--device", default=None, help="boot on this device instead of the best present (cpu, nv:0)")
    p.add_argument("--width", type=_int_at_least(1), default=1024, help="MLP width (default 1024)")
    p.add_argument("--layers", type=_int_at_least(1), default=4, help="MLP layers (default 4)")


def gpu_targets() -> list:
    """Kernel targets of the NVIDIA GPUs present (their arch, e.g. sm_90)."""
    return sorted({d.arch for d in hal.probe() if d.arch.startswith("sm_")})


def run(args) -> int:
    from boot.sequence import boot
    from kernelos.builder.build import build_image
    from kernelos.builder.demo_model import demo_mlp
    from kernelos.builder.progress import Progress

    model = demo_mlp(args.width, args.layers)
    onnx_path = os.path.splitext(args.output)[0] + ".onnx"
    os.makedirs(os.path.dirname(os.path.abspath(onnx_path)), exist_ok=True)
    onnx.save(model, onnx_path)
    targets = ["cpu"] + gpu_targets()
    print(f"demo: {onnx_path} ({model.graph.name}); building for {', '.join(targets)}", flush=True)
    result = build_image(onnx_path, args.output, targets, progress=Progress())
    print(result.summary_text(), flush=True)
    return boot(args.output, device=args.device, count=args.count)
