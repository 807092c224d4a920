"""Signal: a 64-bit timeline value in device-visible memory, written by the device."""

import math

from .errors import DeviceClosed, InvalidArgument


def timeline_value(value) -> int:
    """value as an int, or InvalidArgument unless it fits a 64-bit unsigned timeline."""
    value = int(value)
    if not 0 <= value < 1 << 64:
        raise InvalidArgument(f"signal values are 64-bit unsigned, got {value}")
    return value


class Signal:
    """A monotonically increasing 64-bit counter that queues write and wait on.

    Contract:
    - `value` reads the current value (a plain memory read, never blocks).
    - `set(value)` writes it from the host (e.g. to release a queue waiting on it); values outside
      0..2**64-1 raise InvalidArgument.
    - `wait(value, timeout_s)` returns once the counter is >= value; if that has not happened
      within timeout_s it raises DeviceTimeout naming the signal, the value wanted and the value
      seen. It never hangs: a negative or NaN timeout_s raises InvalidArgument; 0 polls once.
      A device fault seen while waiting raises DeviceFault.
    - A signal used by `Queue.timestamp` holds device time in nanoseconds instead of a count.
    - `close()` frees the memory; later use raises DeviceClosed.
    """

    def __init__(self, device, va: int):
        self.device, self.va = device, va
        self.closed = False

    def _check_live(self):
        if self.closed or self.device.closed:
            raise DeviceClosed(f"signal at {self.va:#x} is closed")

    @property
    def value(self) -> int:
        self._check_live()
        return self._read()

    def set(self, value: int):
        self._check_live()
        self._write(timeline_value(value))

    def wait(self, value: int, timeout_s: float = 10.0):
        self._check_live()
        timeout_s = float(timeout_s)
        if math.isnan(timeout_s) or timeout_s < 0:  # a NaN deadline would never expire
            raise InvalidArgument(f"timeout_s must be a number >= 0, got {timeout_s}")
        self._wait(int(value), timeout_s)

    def close(self):
        if not self.closed and not self.device.closed:
            self._free()
        self.closed = True

    # driver side
    def _read(self) -> int:
        raise NotImplementedError

    def _write(self, value: int):
        raise NotImplementedError

    def _wait(self, value: int, timeout_s: float):
        raise NotImplementedError

    def _free(self):
        raise NotImplementedError

    def __repr__(self):
        return f"<Signal at {self.va:#x} on {self.device.spec}>"
