"""How long this process has existed: the clock for "time from process start to first result".

Linux: /proc/self/stat field 22 (starttime, clock ticks after boot) against /proc/uptime, so the
figure includes interpreter start-up and imports; resolution one clock tick (10 ms at CLK_TCK=100).
Elsewhere it falls back to the time this module was imported (says so in `source`).
"""

import os
import time

_IMPORTED_AT = time.monotonic()


def _age_from_proc() -> float:
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    start_ticks = int(fields[19])                  # field 22, starttime
    with open("/proc/uptime") as f:
        uptime_s = float(f.read().split()[0])
    return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")


def process_age_s() -> tuple:
    """(seconds since this process started, where the start time came from)."""
    try:
        return max(_age_from_proc(), 0.0), "/proc/self/stat starttime"
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT, "import of boot.timing (no /proc)"
