"""Signals: 64-bit timelines in pinned host memory that the GPU writes with semaphore releases.

Slots are 16 bytes and 16-byte aligned: [value | GPU time]. Every release is the HW-verified
"64-bit payload with timestamp" form, which writes both words (a misaligned release is a PBDMA
SEMAPHORE error, Xid 32). A signal used by `Queue.timestamp` reads back the time word.
"""

import time

import hal

SLOT_B = 16
POOL_B = 0x10000
SPIN_S = 0.002           # spin this long before yielding the CPU between polls
HEALTH_EVERY_S = 0.05    # how often a wait checks the channels' error notifiers


class SignalPool:
    """Fixed-size slots carved from pinned host allocations."""

    def __init__(self, device):
        self.device, self.free_slots, self.pools = device, [], []

    def take(self) -> int:
        if not self.free_slots:
            a = self.device.memory.alloc_host(POOL_B)
            self.pools.append(a)
            self.free_slots = [a.va + i * SLOT_B for i in range(POOL_B // SLOT_B)][::-1]
        return self.free_slots.pop()

    def give(self, slot: int):
        self.free_slots.append(slot)


class NvSignal(hal.Signal):
    def __init__(self, device, slot: int, value: int):
        super().__init__(device, slot)
        self.slot, self.reads_time = slot, False
        self.word = device.ffi.cast("volatile uint64_t *", self.va)
        self.word[0] = value
        self.word[1] = 0

    def _read(self) -> int:
        return self.word[1] if self.reads_time else self.word[0]

    def _write(self, value: int):
        self.word[1 if self.reads_time else 0] = value

    def _wait(self, value: int, timeout_s: float):
        word, start = self.word + (1 if self.reads_time else 0), time.perf_counter()
        if word[0] >= value:
            return
        if self.device.pending_fault:
            self.device.check_health()
        seen_progress = self.device.progress_mark()
        next_check = start + HEALTH_EVERY_S
        while True:
            now = time.perf_counter()
            if word[0] >= value:
                return
            if now >= next_check:
                self.device.check_health()
                next_check = now + HEALTH_EVERY_S
            if now - start > timeout_s:
                self.device.on_timeout(self, value, timeout_s, seen_progress)
                return
            if now - start > SPIN_S:
                time.sleep(50e-6)

    def _free(self):
        self.device.signals.give(self.slot)
