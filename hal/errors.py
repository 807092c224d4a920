"""Typed errors of the HAL contract.

Every failure a user can reach is one of these, with a message that says what happened and,
where there is one, what to do about it. Drivers raise them; nothing above the HAL needs to know
a driver's own error codes.
"""


class KernelosError(Exception):
    """Base of every error kernelos raises on purpose."""


class DeviceError(KernelosError):
    """The device or its driver refused or failed an operation (bad argument, driver call failed)."""


class DeviceNotFound(DeviceError):
    """`hal.open(spec)` named a device that is not present, or a spec that is malformed."""


class OutOfDeviceMemory(DeviceError):
    """An allocation did not fit in the device's free memory (or its arena)."""


class DeviceFault(DeviceError):
    """Work on the device faulted (bad address, illegal instruction). The queue that ran it is no
    longer trustworthy: the driver has torn it down or marked it dead, and says which."""


class DeviceTimeout(DeviceError):
    """A wait did not see the expected value within its timeout (a hung kernel, a missing signal)."""


class InvalidArgument(DeviceError):
    """A HAL call got arguments that do not match the contract (wrong type, size, count, range)."""


class DeviceClosed(DeviceError):
    """An object was used after its device (or the object itself) was closed or freed."""


class ImageError(KernelosError):
    """A device image is damaged, truncated, of the wrong version, or has no kernels for the device.
    Always raised before any device work."""


class GraphError(KernelosError):
    """A kernel DAG is invalid (cycle, unknown or undersized buffer, missing kernel); the message
    names the node and the buffer."""


class CompileError(KernelosError):
    """A kernel source failed to compile; the message carries the compiler's log."""
