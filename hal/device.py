"""Device: one opened accelerator (or the cpu), and the factory of everything on it."""

from dataclasses import asdict, dataclass, field

from .errors import DeviceClosed, InvalidArgument
from .signal import timeline_value

DEFAULT_TIMEOUT_S = 10.0


@dataclass
class DeviceInfo:
    """Identity of a device as `hal.probe()` reports it.

    spec: what `hal.open` takes ("cpu", "nv:0"); vendor: "cpu" | "nvidia" | "amd";
    arch: the kernel target it runs ("cpu-x86_64", "sm_90", "gfx1100"); memory_B: usable memory;
    compute_units: cores / SMs / CUs; extra: driver details (PCI bus, driver and firmware versions).
    How a model's inputs and outputs should reach the kernels where device memory is not
    host-visible (kernelos/model.py; 0, the default, stages them all through the copy queue):
    input_write_max_B: inputs up to this size are written by the compute queue itself from its
    command stream (CommandStream.write), with no copy-queue hand-off; output_in_place_max_B:
    outputs up to this size are written by the kernels in place in host-visible memory.
    """

    spec: str
    vendor: str
    arch: str
    name: str
    memory_B: int
    compute_units: int
    extra: dict = field(default_factory=dict)
    input_write_max_B: int = 0
    output_in_place_max_B: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Device:
    """An opened device. Drivers subclass it; users get one from `hal.open(spec)`.

    Contract:
    - alloc(size_B, host_visible=False) -> Buffer. size_B >= 1. Memory that does not fit raises
      OutOfDeviceMemory (never a crash); a bad size raises InvalidArgument.
    - signal(value=0) -> Signal, a new 64-bit timeline.
    - queue(kind="compute", index=0) -> Queue; the device owns its queues.
    - load_program(binary, name, meta) -> Program. A binary that is not for this device's arch,
      or lacks the entry `name`, raises DeviceError/InvalidArgument saying which.
    - targets: kernel targets whose binaries load here (info.arch first).
    - memory_map() -> list of {"va", "size_B", "kind"} for live allocations (for the shell).
    - close() releases every queue, buffer, signal and program and the driver's own resources
      (fds, mappings, threads); it may be called twice; later use raises DeviceClosed.
      Devices are context managers.
    """

    def __init__(self, info: DeviceInfo):
        self.info, self.spec = info, info.spec
        self.closed = False
        self.targets = (info.arch,)

    # --- the contract ----------------------------------------------------------------------
    def alloc(self, size_B: int, host_visible: bool = False):
        self._check_open()
        if not isinstance(size_B, int) or size_B < 1:
            raise InvalidArgument(f"alloc size_B must be a positive int, got {size_B!r}")
        return self._alloc(size_B, host_visible)

    def signal(self, value: int = 0):
        self._check_open()
        return self._signal(timeline_value(value))

    def queue(self, kind: str = "compute", index: int = 0):
        self._check_open()
        return self._queue(kind, index)

    def load_program(self, binary: bytes, name: str, meta):
        self._check_open()
        return self._load_program(bytes(binary), name, meta)

    def memory_map(self) -> list:
        raise NotImplementedError

    def close(self):
        if not self.closed:
            try:
                self._close()
            finally:
                self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Device {self.spec} {self.info.name} ({self.info.arch}){' closed' if self.closed else ''}>"

    def _check_open(self):
        if self.closed:
            raise DeviceClosed(f"device {self.spec} is closed")

    # --- host <-> buffer transfers used by Buffer.read/write ------------------------------------
    def _write(self, buf, mv: memoryview, offset_B: int):
        """Default: host-visible buffers are written in place; others through a staging copy."""
        if buf.host_visible:
            self._host_view(buf)[offset_B:offset_B + mv.nbytes] = mv
            return
        stage = self.alloc(max(mv.nbytes, 1), host_visible=True)
        try:
            stage.view()[:mv.nbytes] = mv
            self._copy_sync(buf, offset_B, stage, 0, mv.nbytes)
        finally:
            stage.free()

    def _read(self, buf, size_B: int, offset_B: int) -> bytes:
        if buf.host_visible:
            return bytes(self._host_view(buf)[offset_B:offset_B + size_B])
        stage = self.alloc(max(size_B, 1), host_visible=True)
        try:
            self._copy_sync(stage, 0, buf, offset_B, size_B)
            return bytes(stage.view()[:size_B])
        finally:
            stage.free()

    def _copy_sync(self, dst, dst_offset_B, src, src_offset_B, size_B, timeout_s=DEFAULT_TIMEOUT_S):
        done = self.signal(0)
        try:
            self.queue("copy").stream().copy(dst, src, size_B, dst_offset_B, src_offset_B).signal(done, 1).submit()
            done.wait(1, timeout_s)
        finally:
            done.close()

    # --- driver side ----------------------------------------------------------------------
    def _alloc(self, size_B: int, host_visible: bool):
        raise NotImplementedError

    def _free(self, buf):
        raise NotImplementedError

    def _host_view(self, buf) -> memoryview:
        raise NotImplementedError

    def _signal(self, value: int):
        raise NotImplementedError

    def _queue(self, kind: str, index: int):
        raise NotImplementedError

    def _load_program(self, binary: bytes, name: str, meta):
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError
