"""`python -m bench.startup_trace IMAGE [boot arguments]`: `python -m boot` with a start-up timeline.

Prints (to stderr, after boot's own output) one line per event on the clock of process start:
the imports of interest (on which thread, how long, nested imports included), every RM and UVM
ioctl (RM_ALLOC with its class, RM_CONTROL with its command, UVM calls by name), the driver's
bring-up steps and the boot sequence's stages (image verification, device pick, model load,
self-test), then the ioctl time summed by call. Issue 9's first-result figure is made of these.

Process start: STARTUP_TRACE_SPAWN_NS in the environment (time.time_ns() of the parent just
before it started this process; precise), else /proc/self/stat starttime (10 ms ticks).
Tracing adds a few microseconds per ioctl and per import; the untraced command is the figure.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time

T_START = time.perf_counter()
EVENTS = []                 # (start_s, end_s, thread, kind, what, depth)
IMPORT_MIN_S = 2e-3         # imports shorter than this are left out of the timeline
_depth = threading.local()
ESC_NAMES = {0x27: "RM_ALLOC_MEMORY", 0x29: "RM_FREE", 0x4E: "RM_MAP_MEMORY", 0x57: "RM_MAP_MEMORY_DMA",
             200: "CARD_INFO", 201: "REGISTER_FD"}


def _record(kind: str, what: str, t0: float, t1: float, depth: int = 0):
    EVENTS.append((t0, t1, threading.current_thread().name, kind, what, depth))


def _timed(kind: str, what, fn):
    """fn wrapped to record each call as an event; what(args) names it."""
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _record(kind, what(args) if callable(what) else what, t0, time.perf_counter())
    wrapper.__wrapped__ = fn
    return wrapper


def _ioctl_name(call: str, request: int, params) -> str:
    if call == "RM_ALLOC":
        return f"RM_ALLOC {params.hClass:#06x}"
    if call == "RM_CONTROL":
        return f"RM_CONTROL {params.cmd:#010x}"
    return call


def _patch_rm(mod):
    fn = mod.ioctl

    def ioctl(fd, request, params, call):
        t0 = time.perf_counter()
        try:
            return fn(fd, request, params, call)
        finally:
            _record("ioctl", _ioctl_name(call, request, params), t0, time.perf_counter())
    mod.ioctl = ioctl


def _patch_device(mod):
    step = mod.NvDevice._step

    def _step(self, name):
        t0 = self._t
        step(self, name)
        _record("step", f"bring-up {name}", t0, self._t)
    mod.NvDevice._step = _step


def _patch_image(mod):
    mod.read_image = _timed("stage", "read_image (verify)", mod.read_image)


def _patch_sequence(mod):
    mod.pick_device = _timed("stage", "pick_device (hal.open)", mod.pick_device)
    mod._import_runtime = _timed("stage", "background imports (numpy, kernelos.model)", mod._import_runtime)


def _patch_model(mod):
    mod.LoadedModel._setup = _timed("stage", "model load (arena, weights, programs)", mod.LoadedModel._setup)
    mod.LoadedModel.self_test = _timed("stage", "self-test", mod.LoadedModel.self_test)


PATCHES = {"drivers.nvidia.rm": _patch_rm, "drivers.nvidia.device": _patch_device, "kernelos.image": _patch_image,
           "boot.sequence": _patch_sequence, "kernelos.model": _patch_model}


class _TimedLoader(importlib.abc.Loader):
    def __init__(self, name: str, loader):
        self.name, self.loader = name, loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        t0 = time.perf_counter()
        try:
            self.loader.exec_module(module)
        finally:
            _depth.n = depth
            t1 = time.perf_counter()
            if t1 - t0 >= IMPORT_MIN_S:
                _record("import", self.name, t0, t1, depth)
        if self.name in PATCHES:
            PATCHES[self.name](module)

    def __getattr__(self, item):          # get_resource_reader, is_package, ... of the real loader
        return getattr(self.loader, item)


class _TimedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _TimedLoader(name, spec.loader)
                return spec
        return None


def _start_offset_s() -> tuple:
    """(seconds from process start to T_START, source)."""
    spawn_ns = os.environ.get("STARTUP_TRACE_SPAWN_NS")
    if spawn_ns:
        return (time.time_ns() - int(spawn_ns)) / 1e9 - (time.perf_counter() - T_START), "parent's spawn time"
    from boot.timing import process_age_s
    age_s, source = process_age_s()
    return age_s - (time.perf_counter() - T_START), source


def report(offset_s: float, source: str, out=sys.stderr):
    print(f"--- start-up timeline (ms from process start; process start: {source}; tracer started at "
          f"{offset_s * 1e3:.1f} ms) ---", file=out)
    for t0, t1, thread, kind, what, depth in sorted(EVENTS):
        print(f"{(t0 - T_START + offset_s) * 1e3:9.2f} {(t1 - t0) * 1e3:8.2f}  {thread[:16]:16s} {kind:6s} "
              f"{'  ' * depth}{what}", file=out)
    totals = {}
    for t0, t1, _, kind, what, _ in EVENTS:
        if kind == "ioctl":
            n, s = totals.get(what, (0, 0.0))
            totals[what] = (n + 1, s + t1 - t0)
    print("--- ioctl time by call (count, total ms) ---", file=out)
    for what, (n, s) in sorted(totals.items(), key=lambda r: -r[1][1]):
        print(f"{s * 1e3:9.2f} ms {n:4d}x  {what}", file=out)
    print(f"{sum(s for _, s in totals.values()) * 1e3:9.2f} ms in all ioctls", file=out)


def main(argv=None) -> int:
    offset_s, source = _start_offset_s()
    sys.meta_path.insert(0, _TimedFinder())
    from boot.__main__ import main as boot_main
    try:
        return boot_main(argv)
    finally:
        report(offset_s, source)


if __name__ == "__main__":
    sys.exit(main())
