"""The HAL: the one contract every kernelos driver implements.

    import hal
    hal.probe()                 # [DeviceInfo, ...] best first
    dev = hal.open("cpu")       # or "nv:0", "amd:0"

See Device, Buffer, Queue/CommandStream, Signal, Program for the contract of each object, and
hal.errors for the typed errors. Conformance: tests/hal/ runs against every driver present.
"""

from .buffer import Buffer
from .device import DEFAULT_TIMEOUT_S, Device, DeviceInfo
from .errors import (CompileError, DeviceClosed, DeviceError, DeviceFault, DeviceNotFound, DeviceTimeout, GraphError,
                     ImageError, InvalidArgument, KernelosError, OutOfDeviceMemory)
from .program import PARAM_TYPES, KernelMeta, Program
from .queue import QUEUE_KINDS, CommandStream, Queue, Var, resolve
from .registry import DRIVERS, compile, open, parse_spec, preload, probe, probe_report
from .signal import Signal

__all__ = [
    "Buffer", "CommandStream", "CompileError", "DEFAULT_TIMEOUT_S", "DRIVERS", "Device", "DeviceClosed",
    "DeviceError", "DeviceFault", "DeviceInfo", "DeviceNotFound", "DeviceTimeout", "GraphError", "ImageError",
    "InvalidArgument", "KernelMeta", "KernelosError", "OutOfDeviceMemory", "PARAM_TYPES", "Program",
    "QUEUE_KINDS", "Queue", "Signal", "Var", "compile", "open", "parse_spec", "preload", "probe", "probe_report",
    "resolve",
]
