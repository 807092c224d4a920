"""cpu signals: 64-bit words in slab pages, one cache line each, written by executor threads."""

from hal.errors import DeviceFault, DeviceTimeout, OutOfDeviceMemory
from hal.signal import Signal

MAX_TIMEOUT_S = 1e9  # ~31 years: "forever" without overflowing the runtime's int64 ns
SIGNAL_STRIDE_B = 64  # one cache line per signal: no false sharing between queues


class SignalSlab:
    """Hands out signal words from page-sized mappings; pages are unmapped at device close."""

    def __init__(self, lib, page_B: int):
        self._lib, self._page_B = lib, page_B
        self._pages, self._free = [], []

    def take(self) -> int:
        if not self._free:
            page = self._lib.kos_map(self._page_B)
            if not page:
                raise OutOfDeviceMemory("cannot map a page for signals")
            self._pages.append(page)
            self._free.extend(range(page + self._page_B - SIGNAL_STRIDE_B, page - 1, -SIGNAL_STRIDE_B))
        return self._free.pop()

    def give(self, va: int):
        self._free.append(va)

    def close(self):
        for page in self._pages:
            self._lib.kos_unmap(page, self._page_B)
        self._pages, self._free = [], []


class CpuSignal(Signal):
    def _read(self) -> int:
        return self.device._lib.kos_signal_read(self.va)

    def _write(self, value: int):
        self.device._lib.kos_signal_set(self.device._rt, self.va, value)

    def _wait(self, value: int, timeout_s: float):
        dev = self.device
        timeout_ns = int(min(timeout_s, MAX_TIMEOUT_S) * 1e9)
        rc = dev._lib.kos_signal_wait(dev._rt, self.va, value & 0xFFFFFFFFFFFFFFFF, timeout_ns)
        if rc == 0:  # KOS_OK
            return
        if rc == dev._lib.KOS_TIMEOUT:
            raise DeviceTimeout(f"signal at {self.va:#x} did not reach {value} within {timeout_s} s "
                                f"(value seen {self._read()}); is a queue waiting on a signal nobody sets?")
        if rc == dev._lib.KOS_FAULT:
            raise DeviceFault(f"signal at {self.va:#x} did not reach {value} (value seen {self._read()}): "
                              f"{dev.fault_report()}")

    def _free(self):
        self.device._retire(lambda: self.device._signals.give(self.va))
