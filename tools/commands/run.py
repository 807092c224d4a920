"""`kernelos run IMAGE --input NAME=FILE.npy ... --output-dir DIR`: one inference from files."""

from boot.sequence import pick_device
from kernelos.image import read_image
from kernelos.model import load_model

from tools.tensor_files import describe, parse_inputs, write_outputs

NAME = "run"
HELP = "run one inference on inputs from .npy files, writing DIR/NAME.npy per output"


def add_arguments(p):
    p.add_argument("image", help="the device image (.kimg)")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", default=[], help="an input tensor (repeat)")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="where to write each output as NAME.npy")
    p.add_argument("--device", help="device spec (cpu, nv:0, ...); default: the best present for the image")


def run(args) -> int:
    inputs = parse_inputs(args.input)
    with read_image(args.image) as image:
        with load_model(image, pick_device(image, args.device)) as model:
            outputs = model.run(inputs)
            print(describe(outputs))
            for path in write_outputs(outputs, args.output_dir):
                print(f"wrote {path}")
    return 0
