"""Build progress on stderr: timed stage lines and a progress bar for the kernel compiles
(redrawn in place on a terminal, a line per ~10% otherwise)."""

import sys
import time


class Progress:
    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def stage(self, msg: str):
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:7.2f} s] {msg}", file=self.stream, flush=True)

    def bar(self, total: int, label: str) -> "Bar":
        return Bar(self, total, label)


class Bar:
    WIDTH = 30

    def __init__(self, progress: Progress, total: int, label: str):
        self.p, self.total, self.label, self.done = progress, max(total, 1), label, 0
        self._last_decile = -1

    def tick(self, what: str = ""):
        self.done += 1
        if self.p.quiet:
            return
        filled = self.WIDTH * self.done // self.total
        line = (f"[{time.perf_counter() - self.p.t0:7.2f} s] {self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.total} {what}")
        if self.p.tty:
            end = "\n" if self.done >= self.total else ""
            print("\r" + line[:150].ljust(150), end=end, file=self.p.stream, flush=True)
        elif 10 * self.done // self.total != self._last_decile:
            self._last_decile = 10 * self.done // self.total
            print(line, file=self.p.stream, flush=True)
