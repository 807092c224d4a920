"""The boot sequence: verify the image, pick and bring up the device, load, self-test, report
timings, then serve (or stop after a counted run).

    boot("demo.kimg")                        # best device present, serve on the default socket
    boot("demo.kimg", device="cpu", count=200)   # self-test + 200 timed inferences, then exit
"""

import os
import sys
import time

import hal
from hal.errors import ImageError
from kernelos.image import read_image

from .background import Background, quick_switches
from .timing import process_age_s

DEFAULT_LATENCY_RUNS = 100
WAIT_NOTE_S = 1e-3  # a wait for the helper thread's imports is reported from this long on
WARMUP_RUNS = 5


def fallback_note(chosen, devices, absent) -> str | None:
    """When the best device for the image is the cpu: one line saying why no accelerator is used
    (each absent driver's reason, each GPU present without kernels in the image). None otherwise."""
    if chosen.vendor != "cpu":
        return None
    reasons = [f"{prefix}: {why}" for prefix, why in absent.items()]
    reasons += [f"{d.spec} ({d.arch}) present but the image has no kernels for it" for d in devices if d.vendor != "cpu"]
    return f"no accelerator ({'; '.join(reasons) or 'none found'}): falling back to the cpu device"


def pick_device(image, spec: str | None = None, say=None):
    """Open `spec`, or the best device present whose arch the image has kernels for; say(line)
    is told when that means falling back to the cpu device."""
    if spec:
        dev = hal.open(spec)
        try:
            image.pick_target(dev.targets)
        except ImageError:
            dev.close()
            raise
        return dev
    devices, absent = hal.probe_report()
    for info in devices:
        if info.arch in image.targets:
            note = fallback_note(info, devices, absent)
            if note and say:
                say(note)
            return hal.open(info.spec)
    present = ", ".join(f"{d.spec} ({d.arch})" for d in devices) or "none"
    raise ImageError(f"image has kernels for {image.targets}; devices present: {present}; absent: {absent}")


def _import_runtime():
    """What loading and the self-test need and verifying the image and bring-up do not: numpy
    (0.1-0.2 s of Python, the largest item of the start-up) and the model loader. Runs on a helper
    thread beside the hashing of the image and the device bring-up, both of which release the GIL.
    OPENBLAS_NUM_THREADS=1 (unless set, and only where numpy is not loaded yet): the boot process
    does no BLAS work, and OpenBLAS otherwise starts a worker thread per core at import, which spin
    beside the bring-up."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy  # noqa: F401
    import kernelos.model  # noqa: F401


def bring_up(image_path, spec: str | None, say) -> tuple:
    """(verified image, opened device): the image fully verified first (nothing touches a device
    before), then the device picked and brought up, while a helper thread imports numpy and the
    model loader (joined before returning, so a wait for it shows in the next step's time). With a
    device spec, a second helper imports its driver meanwhile (hal.preload: no device work)."""
    with quick_switches():
        imports = Background(_import_runtime, "kernelos-imports")
        driver = Background(lambda: hal.preload(spec), "driver-imports") if spec else None
        image = read_image(image_path)
        try:
            say(f"image {image_path}: model {image.name!r}, {len(image.sections)} sections, "
                f"{image.sections[-1].offset_B + image.sections[-1].size_B} B, targets {', '.join(image.targets)}; "
                "verified (header, table, SHA-256 of every section, manifest)")
            if driver is not None:
                driver.result()          # hal.open would wait for the same imports
            dev = pick_device(image, spec, say)
            try:
                say(f"device {dev.spec}: {dev.info.name} ({dev.info.arch}), {dev.info.memory_B / 2**30:.1f} GiB"
                    + _steps_note(dev))
                waited_s = time.perf_counter()
                imports.result()
                waited_s = time.perf_counter() - waited_s
                if waited_s >= WAIT_NOTE_S:
                    say(f"waited {_fmt_s(waited_s)} for numpy and the model loader (imported beside the bring-up)")
            except BaseException:
                dev.close()
                raise
        except BaseException:
            image.close()
            raise
    return image, dev


def _steps_note(dev) -> str:
    """'; bring-up: step ms, ...' where the driver records its bring-up steps (`bringup_s`), else ''."""
    steps = getattr(dev, "bringup_s", None)
    if not steps:
        return ""
    return "; bring-up: " + ", ".join(f"{step} {s * 1e3:.1f} ms" for step, s in steps.items())


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


def boot(image_path, device: str | None = None, count: int | None = None, unix_path: str | None = None,
         tcp: str | None = None, out=None, profile_runs: int = 0) -> int:
    """Run the boot sequence; returns the exit code (0 ok, 1 self-test failed). Typed errors
    (ImageError, DeviceError, ...) propagate to the caller, which prints them. profile_runs > 0:
    after the self-test, print the per-node timeline of that many profiled inferences
    (kernelos/profile.py)."""
    out = out or sys.stdout
    t0 = time.perf_counter()

    def say(msg: str):
        print(f"[{time.perf_counter() - t0:8.3f} s] {msg}", file=out, flush=True)

    image, dev = bring_up(image_path, device, say)
    with image:
        from kernelos.model import load_model  # already imported by bring_up's helper thread
        with load_model(image, dev) as model:
            say(f"loaded {len(model.dag.kernels)} kernels, {len(image.weights)} weights, {len(model.dag.nodes)} "
                f"nodes; {model.plan.report()}")
            result = model.self_test()
            age_s, source = process_age_s()
            say(str(result))
            say(f"time from process start to first result: {_fmt_s(age_s)} (process start: {source})")
            if not result.passed:
                say("self-test failed: not serving")
                return 1
            if profile_runs:
                from kernelos.profile import profile
                say("profiling (timestamps around every node)")
                print(profile(model, runs=profile_runs).format(), file=out, flush=True)
            _report_latency(model, count if count is not None else DEFAULT_LATENCY_RUNS, say)
            if count is None:
                from .protocol import default_socket_path
                _serve(model, unix_path or default_socket_path(image_path), tcp, say)
    return 0


def _report_latency(model, runs: int, say):
    import statistics
    golden = model.image.golden_inputs
    for _ in range(min(WARMUP_RUNS, runs)):
        model.run(golden)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.run(golden)
        times.append(time.perf_counter() - t)
    if times:
        times.sort()
        say(f"steady-state latency: median {_fmt_s(statistics.median(times))} per inference over {runs} "
            f"(p90 {_fmt_s(times[int(0.9 * (len(times) - 1))])}, min {_fmt_s(times[0])}); "
            f"{model.submits_per_inference} submit(s) per inference")


def _serve(model, unix_path: str, tcp: str | None, say):
    import signal
    import threading

    from .server import Server
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if threading.current_thread() is threading.main_thread() else None
    try:
        with Server(model, unix_path=unix_path, tcp=tcp) as server:
            say(f"serving {model.image.name!r} on {', '.join(server.addresses)} (Ctrl-C to stop)")
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            say(f"stopping: {server.stats.as_dict()['count']} inferences served")
    finally:  # also when the server cannot start: SIGTERM must not stay a no-op
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
