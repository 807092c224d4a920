"""Program: a loaded kernel binary and its launch metadata.

Kernel parameters follow the C ABI of a struct of the declared parameter types, in order, with
natural alignment: the same layout CUDA uses for kernel params and our cpu kernels use for their
`args` struct. `pack_args` turns Python values into those bytes, once, at record time.
"""

import struct
from dataclasses import dataclass, field

from .errors import DeviceClosed, InvalidArgument

# param type -> (struct format, size_B); "ptr" is a device address (a Buffer, or a (Buffer, offset_B)).
PARAM_TYPES = {
    "ptr": ("Q", 8),
    "i32": ("i", 4),
    "u32": ("I", 4),
    "i64": ("q", 8),
    "u64": ("Q", 8),
    "f32": ("f", 4),
    "f64": ("d", 8),
}


@dataclass(frozen=True)
class KernelMeta:
    """What a launch needs to know about a kernel besides its code.

    params: parameter types in order (keys of PARAM_TYPES).
    max_threads: largest block (product of block dims) the kernel may be launched with.
    shared_B: static shared memory per block; regs: registers per thread (GPU drivers fill these
    from the binary). extra: driver-specific attributes kept for inspection.
    """

    params: tuple
    max_threads: int = 1024
    shared_B: int = 0
    regs: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = [p for p in self.params if p not in PARAM_TYPES]
        if unknown:
            raise InvalidArgument(f"unknown kernel parameter type(s) {unknown}; known: {sorted(PARAM_TYPES)}")

    def layout(self):
        """[(offset_B, type)] of each param and the total size_B of the packed args."""
        offsets, pos = [], 0
        for p in self.params:
            size_B = PARAM_TYPES[p][1]
            pos = (pos + size_B - 1) // size_B * size_B
            offsets.append((pos, p))
            pos += size_B
        return offsets, (pos + 7) // 8 * 8


class Program:
    """A kernel loaded on one device. Drivers subclass it and keep their handle on the object.

    Contract:
    - `name` is the kernel's entry symbol, `meta` its KernelMeta.
    - `pack_args(args)` validates count and types and returns the packed parameter bytes;
      InvalidArgument names the bad parameter.
    - `close()` releases the code; launching a closed program raises DeviceClosed.
    """

    def __init__(self, device, name: str, meta: KernelMeta):
        self.device, self.name, self.meta = device, name, meta
        self.closed = False

    def pack_args(self, args) -> bytes:
        if self.closed:
            raise DeviceClosed(f"program {self.name!r} was closed")
        if len(args) != len(self.meta.params):
            raise InvalidArgument(
                f"kernel {self.name!r} takes {len(self.meta.params)} args {list(self.meta.params)}, got {len(args)}")
        offsets, size_B = self.meta.layout()
        out = bytearray(size_B)
        for i, ((off, ptype), value) in enumerate(zip(offsets, args)):
            fmt = PARAM_TYPES[ptype][0]
            if ptype == "ptr":
                value = self._address_of(i, value)
            try:
                struct.pack_into("<" + fmt, out, off, value)
            except (struct.error, TypeError) as e:
                raise InvalidArgument(f"kernel {self.name!r} arg {i} ({ptype}): {value!r} does not fit: {e}") from None
        return bytes(out)

    def _address_of(self, i, value):
        from .buffer import Buffer

        offset_B = 0
        if isinstance(value, tuple) and len(value) == 2:
            value, offset_B = value
        if not isinstance(value, Buffer):
            raise InvalidArgument(f"kernel {self.name!r} arg {i} is a pointer: pass a Buffer or (Buffer, offset_B), got {type(value).__name__}")
        if value.device is not self.device:
            raise InvalidArgument(f"kernel {self.name!r} arg {i}: buffer belongs to {value.device.spec}, kernel to {self.device.spec}")
        return value.address(offset_B)

    def close(self):
        self.closed = True

    def __repr__(self):
        return f"<Program {self.name} on {self.device.spec} params={list(self.meta.params)}>"
