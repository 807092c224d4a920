"""GPU virtual-address allocator: first fit over free ranges, with alignment, coalescing frees.

Pure bookkeeping (no device calls), so it is unit-tested everywhere.
"""

import bisect

from hal import InvalidArgument, OutOfDeviceMemory


class VaAllocator:
    def __init__(self, base: int, size_B: int):
        self.base, self.size_B = base, size_B
        self.free_ranges = [(base, size_B)]          # sorted by address, never adjacent
        self.live = {}                               # va -> size_B

    def alloc(self, size_B: int, align_B: int = 0x1000) -> int:
        if size_B <= 0 or align_B <= 0 or align_B & (align_B - 1):
            raise InvalidArgument(f"bad VA request: {size_B} B aligned to {align_B}")
        for i, (start, length) in enumerate(self.free_ranges):
            va = (start + align_B - 1) & ~(align_B - 1)
            if va + size_B <= start + length:
                pieces = [(start, va - start), (va + size_B, start + length - va - size_B)]
                self.free_ranges[i:i + 1] = [(s, n) for s, n in pieces if n > 0]
                self.live[va] = size_B
                return va
        raise OutOfDeviceMemory(f"GPU VA space exhausted: no {size_B} B range aligned to {align_B:#x} "
                                f"in {self.size_B >> 30} GiB at {self.base:#x}")

    def free(self, va: int):
        size_B = self.live.pop(va, None)
        if size_B is None:
            raise InvalidArgument(f"VA {va:#x} is not allocated")
        i = bisect.bisect(self.free_ranges, (va, 0))
        start, end = va, va + size_B
        if i < len(self.free_ranges) and self.free_ranges[i][0] == end:
            end += self.free_ranges.pop(i)[1]
        if i > 0 and sum(self.free_ranges[i - 1]) == start:
            start = self.free_ranges[i - 1][0]
            i -= 1
            self.free_ranges.pop(i)
        self.free_ranges.insert(i, (start, end - start))

    def free_B(self) -> int:
        return sum(n for _, n in self.free_ranges)
