"""The boot command's arguments and entry, shared by `kernelos boot IMAGE` (tools/commands/boot.py)
and `python -m boot IMAGE` (boot/__main__.py, the entry without the rest of the kernelos command)."""

import sys

from .sequence import boot

NAME = "boot"
HELP = "boot a device image: verify, load, self-test, report timings, then serve"
DESCRIPTION = """Boot a device image: verify it (refusing damaged, tampered or wrong-target images before any
device work), pick the best device it has kernels for (or --device), load kernels and weights, run
the self-test against the golden output, print the time from process start to the first result and
the steady-state latency, then serve requests (docs/serving-protocol.md) until interrupted.
With --count N: time N inferences after the self-test and exit instead of serving.
With --profile: also print a per-node timeline from device timestamps (start, gap before, duration
of every kernel and copy; host submit and wait time), the median of N profiled inferences
(--count N, default 20), then exit."""

DEFAULT_PROFILE_RUNS = 20


def add_arguments(p):
    p.add_argument("image", help="the device image (.kimg)")
    p.add_argument("--device", help="device spec (cpu, nv:0, amd:0); default: the best present for the image")
    p.add_argument("--count", type=int, metavar="N", help="time N inferences, then exit without serving")
    p.add_argument("--socket", help="UNIX socket to serve on (default: derived from the image path, see "
                                    "`kernelos request IMAGE`)")
    p.add_argument("--profile", action="store_true",
                   help="print a per-node timeline from device timestamps, then exit (N runs: --count)")
    p.add_argument("--tcp", metavar="[HOST:]PORT", help="also serve on TCP (HOST defaults to 127.0.0.1)")


def run(args) -> int:
    if args.count is not None and args.count < 0:
        print("boot: --count must be >= 0", file=sys.stderr)
        return 2  # a usage error, as argparse's own
    count = args.count
    if args.profile and count is None:
        count = DEFAULT_PROFILE_RUNS
    return boot(args.image, device=args.device, count=count, unix_path=args.socket, tcp=args.tcp,
                profile_runs=max(count, 1) if args.profile else 0)
