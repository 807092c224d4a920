"""Waits that always end: a timeout on every wait, and Ctrl-C honoured while waiting.

A driver's Signal.wait may block inside native code where Python cannot deliver KeyboardInterrupt.
The shell therefore waits in short slices: between slices the interpreter runs and a pending
Ctrl-C raises KeyboardInterrupt at once, and the overall deadline raises DeviceTimeout.
"""

import time

from hal.errors import DeviceTimeout, InvalidArgument

SLICE_S = 0.05


def wait_signal(sig, value: int, timeout_s: float):
    """Return once sig.value >= value; DeviceTimeout after timeout_s; Ctrl-C interrupts."""
    if not timeout_s >= 0:  # also refuses NaN, which would never time out
        raise InvalidArgument(f"timeout_s must be >= 0, got {timeout_s}")
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_s = deadline - time.monotonic()
        try:
            sig.wait(value, max(0.0, min(SLICE_S, remaining_s)))
            return
        except DeviceTimeout:
            if remaining_s <= SLICE_S:
                raise DeviceTimeout(f"signal at {sig.va:#x} did not reach {value} within {timeout_s:g} s "
                                    f"(it is {sig.value})") from None
