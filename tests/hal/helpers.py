"""Small helpers the conformance tests share."""

import os

POISON_BYTE = 0xA5


def poison(buf):
    """Fill a buffer with a byte pattern no correct kernel or copy writes."""
    buf.write(bytes([POISON_BYTE]) * buf.size_B)


def process_resources() -> dict:
    """Open fds, mappings and threads of this process (what a device must give back on close)."""
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return {"fds": len(os.listdir("/proc/self/fd")), "maps": maps, "threads": len(os.listdir("/proc/self/task"))}
