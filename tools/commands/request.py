"""`kernelos request IMAGE|SOCKET|HOST:PORT --input NAME=FILE.npy ...`: ask a serving `kernelos boot`."""

import json
import os

from boot.client import Client
from boot.protocol import default_socket_path

from tools.tensor_files import describe, parse_inputs, write_outputs

NAME = "request"
HELP = "send an inference (or --stats / --info) to a running `kernelos boot`"


def add_arguments(p):
    p.add_argument("target", metavar="IMAGE|SOCKET|HOST:PORT",
                   help="the image that `kernelos boot` serves (its default socket), a UNIX socket, or tcp://HOST:PORT")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", default=[], help="an input tensor (repeat)")
    p.add_argument("--output-dir", metavar="DIR", help="write each output as DIR/NAME.npy")
    p.add_argument("--stats", action="store_true", help="print the server's inference count and latency percentiles")
    p.add_argument("--info", action="store_true", help="print the served model's inputs and outputs")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for a reply")


def address_of(target: str) -> str:
    """A socket path, a TCP address, or the default socket of an image file."""
    if os.path.isfile(target):
        return default_socket_path(target)
    return target


def run(args) -> int:
    with Client(address_of(args.target), timeout_s=args.timeout) as client:
        if args.stats or args.info:
            reply = client.stats() if args.stats else client.info()
            print(json.dumps({k: v for k, v in reply.items() if k not in ("ok", "id")}, indent=2))
            return 0
        outputs = client.infer(parse_inputs(args.input))
    print(describe(outputs))
    if args.output_dir:
        for path in write_outputs(outputs, args.output_dir):
            print(f"wrote {path}")
    return 0
