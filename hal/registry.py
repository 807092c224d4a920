"""Finding drivers, devices and kernel compilers by name.

The HAL knows drivers only by module path: a driver package exposes

    VENDOR: str                      spec prefix ("cpu", "nv", "amd")
    probe() -> list[DeviceInfo]      devices present; raises DeviceNotFound(reason) when the
                                     driver cannot run here at all (no /dev node, no module)
    open(index: int) -> Device
    TARGET_PREFIXES: tuple           kernel targets it compiles for ("cpu-", "sm_")
    compile(source, name, target, options=()) -> bytes   (CompileError with the log on failure)
    preload() (optional)             import what open() needs, touching no device

so importing hal never imports a driver, and a missing driver costs nothing.
"""

import importlib

from .errors import CompileError, DeviceNotFound

# spec prefix -> driver module, in order of preference for "the best device present".
DRIVERS = {"nv": "drivers.nvidia", "amd": "drivers.amd", "cpu": "drivers.cpu"}


def _driver(prefix: str):
    try:
        return importlib.import_module(DRIVERS[prefix])
    except KeyError:
        raise DeviceNotFound(f"unknown device kind {prefix!r}; known: {', '.join(DRIVERS)}") from None


def probe_report():
    """(devices, reasons): every device present, best first, and why each absent driver is absent."""
    devices, reasons = [], {}
    for prefix in DRIVERS:
        try:
            devices.extend(_driver(prefix).probe())
        except DeviceNotFound as e:
            reasons[prefix] = str(e)
        except ImportError as e:
            reasons[prefix] = f"driver not installed: {e}"
    return devices, reasons


def probe():
    """DeviceInfo of every device present, best first (GPUs before the cpu)."""
    return probe_report()[0]


def parse_spec(spec: str):
    """'cpu' -> ('cpu', 0); 'nv:1' -> ('nv', 1). DeviceNotFound on a malformed spec."""
    prefix, _, index = spec.partition(":")
    if prefix not in DRIVERS or (index and not index.isdecimal()):  # isdigit() passes "²"
        raise DeviceNotFound(f"bad device spec {spec!r}: expected one of cpu, nv:N, amd:N")
    return prefix, int(index or 0)


def open(spec: str):  # noqa: A001 - the HAL's name for it, like builtins.open
    """Open the device named by spec ('cpu', 'nv:0', 'amd:0')."""
    prefix, index = parse_spec(spec)
    return _driver(prefix).open(index)


def preload(spec: str):
    """Import the driver of `spec` and what its open() needs (its optional preload()), touching no
    device, so that a helper thread can do it while the caller does other work (boot: while the image
    is verified). Any error is left for open(), which imports the same modules and raises it."""
    try:
        prefix, _ = parse_spec(spec)
        getattr(_driver(prefix), "preload", lambda: None)()
    except Exception:
        pass


def compile(source: str, name: str, target: str, options=()) -> bytes:  # noqa: A001
    """Compile kernel source for a target ('cpu-x86_64', 'sm_90', ...) with that driver's compiler."""
    for prefix in DRIVERS:
        try:
            drv = _driver(prefix)
        except ImportError:
            continue
        if target.startswith(getattr(drv, "TARGET_PREFIXES", ())):
            return drv.compile(source, name, target, options)
    raise CompileError(f"no compiler for target {target!r}")
