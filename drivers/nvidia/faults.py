"""What the driver can tell about a fault: the channel's error notifier and the kernel's Xid lines.

RM (GSP-RM on Hopper) writes an NvNotification at index 0 of the channel's error notifier when it
kills the channel (robust-channel error, nvidia-hopper.md 5.3); dmesg carries "NVRM: Xid" lines.
"""

import ctypes
import os
import struct
import time

# ROBUST_CHANNEL_* codes (src/common/sdk/nvidia/inc/nverror.h), the ones a compute user meets
RC_ERRORS = {
    8: "GR engine timeout", 13: "graphics engine exception (SM warp error: illegal instruction, address or register)",
    31: "MMU fault (GPU memory access to an unmapped or protected address)", 32: "PBDMA error (bad pushbuffer)",
    43: "channel killed (reset channel verification error)", 45: "preemptive channel removal",
    69: "graphics class error (bad method or QMD)", 79: "GPU has fallen off the bus",
    109: "context switch timeout", 119: "GSP RPC timeout", 154: "GPU recovery action changed",
}


def read_notifier(addr: int) -> tuple:
    """(timestamp_ns, info32, info16, status) of the NvNotification at addr."""
    return struct.unpack("<QIHH", ctypes.string_at(addr, 16))


def notifier_error(addr: int) -> str | None:
    """A description if RM wrote an error into the notifier at addr, else None."""
    ts, info32, info16, status = read_notifier(addr)
    if not (info32 or status):
        return None
    what = RC_ERRORS.get(info32, "robust-channel error")
    return f"RC error {info32} ({what}), engine {info16}, status {status:#x}"


def xid_lines(since_monotonic_s: float, limit: int = 6) -> list:
    """Recent 'NVRM: Xid' kernel log lines newer than since_monotonic_s (needs /dev/kmsg read access)."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    lines = []
    try:
        while True:
            try:
                rec = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:
                continue  # EPIPE: a record was overwritten; keep reading
            head, _, msg = rec.partition(";")
            fields = head.split(",")
            if "Xid" in msg and len(fields) > 2 and int(fields[2]) / 1e6 >= since_monotonic_s:
                lines.append(msg.strip())
    finally:
        os.close(fd)
    return lines[-limit:]


def now_s() -> float:
    """CLOCK_MONOTONIC seconds, the clock /dev/kmsg timestamps use."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)
