"""Buffer: device memory with a device address."""

from .errors import DeviceClosed, InvalidArgument


class Buffer:
    """A device allocation. Drivers create these from `Device.alloc`; users never construct them.

    Contract:
    - `va` is the device (virtual) address of byte 0; `size_B` the usable size.
    - `host_visible` buffers expose `view()`, a writable memoryview of exactly size_B bytes that
      aliases device memory (no copy). Others raise InvalidArgument from view().
    - `write(data, offset_B)` / `read(size_B, offset_B)` move bytes between host and this buffer,
      synchronously, for any buffer (drivers stage through a copy queue where not host-visible).
      Ranges outside [0, size_B) raise InvalidArgument; nothing is written then.
    - `free()` returns the memory; it may be called twice; any later use raises DeviceClosed.
    """

    def __init__(self, device, va: int, size_B: int, host_visible: bool):
        self.device, self.va, self.size_B, self.host_visible = device, va, size_B, host_visible
        self.freed = False

    def _check_live(self):
        if self.freed:
            raise DeviceClosed(f"buffer at {self.va:#x} ({self.size_B} B) was freed")
        if self.device.closed:
            raise DeviceClosed(f"device {self.device.spec} is closed")

    def check_range(self, offset_B: int, size_B: int, what: str = "range"):
        """Raise InvalidArgument unless [offset_B, offset_B + size_B) lies inside the buffer."""
        self._check_live()
        if offset_B < 0 or size_B < 0 or offset_B + size_B > self.size_B:
            raise InvalidArgument(
                f"{what} [{offset_B}, {offset_B + size_B}) is outside the buffer of {self.size_B} B at {self.va:#x}")

    def address(self, offset_B: int = 0) -> int:
        """Device address of byte offset_B (checked against the size)."""
        self.check_range(offset_B, 0, "address")
        return self.va + offset_B

    def view(self) -> memoryview:
        self._check_live()
        if not self.host_visible:
            raise InvalidArgument(f"buffer at {self.va:#x} is not host-visible; allocate with host_visible=True or use read()/write()")
        return self.device._host_view(self)

    def write(self, data, offset_B: int = 0):
        mv = memoryview(data).cast("B")
        self.check_range(offset_B, mv.nbytes, "write")
        self.device._write(self, mv, offset_B)

    def read(self, size_B: int | None = None, offset_B: int = 0) -> bytes:
        if size_B is None:
            size_B = self.size_B - offset_B
        self.check_range(offset_B, size_B, "read")
        return self.device._read(self, size_B, offset_B)

    def free(self):
        if not self.freed and not self.device.closed:
            self.device._free(self)
        self.freed = True

    def __repr__(self):
        state = " freed" if self.freed else ""
        return f"<Buffer {self.size_B} B at {self.va:#x} on {self.device.spec}{' host' if self.host_visible else ''}{state}>"
