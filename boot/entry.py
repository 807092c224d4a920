"""How a command-line entry runs a command: typed kernelos errors print as one clear line (exit 2),
Ctrl-C exits 130, anything else is a bug and shows its traceback. Used by `python -m boot` and `kernelos`."""

import sys

from hal.errors import KernelosError


def run_command(run, args, label: str) -> int:
    try:
        return run(args) or 0
    except KernelosError as e:
        print(f"{label}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
