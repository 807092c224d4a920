"""`kernelos shell`: an interactive Python session with a device open and the HAL at hand."""

import atexit
import os
import sys
import threading

import hal
from hal.errors import DeviceNotFound

CLOSE_MIN_TIMEOUT_S = 2.0  # closing gets at least this long, whatever --timeout-s says
EXIT_CLOSE_TIMED_OUT = 3

NAME = "shell"
HELP = "interactive Python shell with a device open (dev, hal, np and helpers; help() lists them)"
DESCRIPTION = """\
Opens the device and starts IPython (when installed) or the standard Python console with
  dev  the opened device     hal  the HAL     np  numpy
and helpers to allocate and read buffers, compile and launch kernels, wait on signals, and
inspect queues, signals, memory and decoded command streams. help() lists them.
Every wait times out (--timeout-s); Ctrl-C interrupts a wait; leaving closes the device."""


def add_arguments(p):
    p.add_argument("--device", metavar="SPEC", help="device to open: cpu, nv:N, amd:N (default: the best present)")
    p.add_argument("--no-ipython", action="store_true", help="use the standard Python console even if IPython is installed")
    p.add_argument("--timeout-s", type=float, default=5.0, help="timeout of the helpers' waits in seconds (default 5)")


def _best_spec() -> str:
    devices = hal.probe()
    if not devices:
        raise DeviceNotFound("no device present (kernelos info says why)")
    return devices[0].spec


def banner(dev) -> str:
    return (f"kernelos shell on {dev.spec} ({dev.info.arch}); dev.info has the details.\n"
            "dev, hal, np and helpers are loaded; help() lists them. Ctrl-D leaves.")


def close_device(dev, timeout_s: float):
    """Close dev, but never hang the shell on it: a kernel that never returns keeps its queue busy
    and a driver's close waits for it. Past timeout_s the process leaves without the clean close
    (the operating system reclaims the device's memory and file descriptors)."""
    closer = threading.Thread(target=dev.close, name="kernelos-shell-close", daemon=True)
    closer.start()
    closer.join(timeout_s)
    if closer.is_alive():
        print(f"closing {dev.spec} did not finish within {timeout_s:g} s (a kernel still running?); "
              "leaving without a clean close", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_CLOSE_TIMED_OUT)
    print(f"closed {dev.spec}")


def run(args) -> int:
    from tools.shell.console import interact
    from tools.shell.session import Session

    if not args.timeout_s > 0:  # also refuses NaN
        raise hal.InvalidArgument(f"--timeout-s must be positive, got {args.timeout_s}")
    dev = hal.open(args.device or _best_spec())
    atexit.register(dev.close)  # also on paths that skip the finally (an exit from inside IPython)
    try:
        session = Session(dev, timeout_s=args.timeout_s)
        interact(session.namespace(), banner(dev), use_ipython=not args.no_ipython)
    except SystemExit as e:  # exit() in the console
        return e.code if isinstance(e.code, int) else 0
    finally:
        close_device(dev, max(args.timeout_s, CLOSE_MIN_TIMEOUT_S))
    return 0
