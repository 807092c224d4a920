"""A byte-counting progress bar with the transfer rate, written to a stream (stderr by default).

Drawn on one line with carriage returns when the stream is a terminal, as a line every 10 % when it
is not (logs, CI), and not at all when disabled (--json, --quiet).
"""

import sys
import time


class Progress:
    def __init__(self, label: str, total_B: int, stream=None, enabled: bool = True, width: int = 30):
        self.label, self.total_B, self.width = label, max(int(total_B), 0), width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done_B = 0
        self._start_s = time.monotonic()
        self._tty = getattr(self.stream, "isatty", lambda: False)()
        self._last_decile = -1

    @property
    def rate_Bps(self) -> float:
        return self.done_B / max(time.monotonic() - self._start_s, 1e-6)

    def update(self, size_B: int):
        self.done_B += size_B
        if not self.enabled:
            return
        fraction = self.done_B / self.total_B if self.total_B else 1.0
        decile = int(fraction * 10)
        if self._tty:
            self.stream.write("\r" + self._line(fraction))
        elif decile != self._last_decile:
            self.stream.write(self._line(fraction) + "\n")
        self._last_decile = decile
        self.stream.flush()

    def finish(self):
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self, fraction: float) -> str:
        filled = int(min(fraction, 1.0) * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (f"{self.label:10} [{bar}] {self.done_B}/{self.total_B} B "
                f"{fraction * 100:5.1f}% {format_rate(self.rate_Bps)}")


def format_rate(rate_Bps: float) -> str:
    for unit, scale in (("MB/s", 1e6), ("kB/s", 1e3)):
        if rate_Bps >= scale:
            return f"{rate_Bps / scale:.1f} {unit}"
    return f"{rate_Bps:.0f} B/s"
