"""`python -m boot IMAGE [--device SPEC] [--count N] [--profile] ...`: the boot sequence on its own,
with the arguments of `kernelos boot` but without importing the rest of the kernelos command (the
builder, flashing, the shell): what an appliance's /init runs, and the shortest path from process
start to the first result."""

import argparse
import sys

from .command import DESCRIPTION, add_arguments, run
from .entry import run_command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m boot", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    return run_command(run, args, "boot")


if __name__ == "__main__":
    sys.exit(main())
