"""Loading cpu programs: an ELF shared object from bytes, via memfd_create + dlopen."""

import os
import platform

from hal.errors import DeviceError, InvalidArgument
from hal.program import Program

# ELF e_machine of the hosts we know (the device's arch is cpu-<platform.machine()>).
E_MACHINE = {"x86_64": 62, "aarch64": 183, "riscv64": 243, "ppc64le": 21, "s390x": 22}
E_MACHINE_NAMES = {v: k for k, v in E_MACHINE.items()}
ET_DYN = 3
PT_LOAD = 1


def check_elf(binary: bytes, name: str):
    """Refuse what is not a 64-bit little-endian shared object for this host, saying which."""
    if len(binary) < 64 or binary[:4] != b"\x7fELF":
        raise InvalidArgument(f"binary for kernel {name!r} is not an ELF shared object (starts with {binary[:8]!r}); "
                              f"cpu programs are .so files from drivers.cpu.compile")
    if binary[4] != 2 or binary[5] != 1:
        raise InvalidArgument(f"binary for kernel {name!r} is not a 64-bit little-endian ELF")
    e_type = int.from_bytes(binary[16:18], "little")
    e_machine = int.from_bytes(binary[18:20], "little")
    want = E_MACHINE.get(platform.machine())
    if want is not None and e_machine != want:
        built = E_MACHINE_NAMES.get(e_machine, f"e_machine {e_machine}")
        raise InvalidArgument(f"binary for kernel {name!r} is built for {built}; this device is cpu-{platform.machine()}")
    if e_type != ET_DYN:
        raise InvalidArgument(f"binary for kernel {name!r} is an ELF of type {e_type}, not a shared object (3)")
    _check_extents(binary, name)


def _check_extents(binary: bytes, name: str):
    """Every header table and loadable segment must lie inside the bytes: dlopen maps a truncated
    file past its end and the loader dies of SIGBUS instead of failing."""
    u16 = lambda off: int.from_bytes(binary[off:off + 2], "little")  # noqa: E731
    u64 = lambda off: int.from_bytes(binary[off:off + 8], "little")  # noqa: E731
    size_B = len(binary)
    ph_off, ph_size, ph_num = u64(32), u16(54), u16(56)
    sh_off, sh_size, sh_num = u64(40), u16(58), u16(60)
    if ph_off + ph_size * ph_num > size_B or sh_off + sh_size * sh_num > size_B or ph_num == 0:
        raise InvalidArgument(f"binary for kernel {name!r} is truncated or damaged: its ELF header tables "
                              f"end past its {size_B} B")
    for i in range(ph_num):
        ph = ph_off + i * ph_size
        p_type, p_offset, p_filesz = int.from_bytes(binary[ph:ph + 4], "little"), u64(ph + 8), u64(ph + 32)
        if p_type == PT_LOAD and p_offset + p_filesz > size_B:
            raise InvalidArgument(f"binary for kernel {name!r} is truncated: segment {i} ends at "
                                  f"{p_offset + p_filesz} B, the binary has {size_B} B")


class CpuProgram(Program):
    """A dlopen'd kernel. The memfd stays open while loaded so its /proc/self/fd path stays unique
    (glibc reuses a loaded object whose path matches)."""

    def __init__(self, device, binary: bytes, name: str, meta):
        super().__init__(device, name, meta)
        check_elf(binary, name)
        ffi, lib = device._ffi, device._lib
        self._fd = os.memfd_create(f"kos-{name}", os.MFD_CLOEXEC)
        try:
            view = memoryview(binary)
            while view:
                view = view[os.write(self._fd, view):]
            err = ffi.new("char[]", 512)
            self._handle = lib.kos_dlopen(f"/proc/self/fd/{self._fd}".encode(), err, 512)
            if self._handle == ffi.NULL:
                raise DeviceError(f"cannot load kernel {name!r}: {ffi.string(err).decode(errors='replace')}")
            self.fn = lib.kos_dlsym(self._handle, name.encode())
            if not self.fn:
                lib.kos_dlclose(self._handle)
                raise InvalidArgument(f"the binary has no entry {name!r} (is the kernel declared with KOS_KERNEL({name})?)")
        except BaseException:
            os.close(self._fd)
            raise

    def close(self):
        if not self.closed:
            self.closed = True
            self.device.programs_closed += 1
            self.device._retire(self._unload)

    def _unload(self):
        self.device._lib.kos_dlclose(self._handle)
        os.close(self._fd)
        self.device._unloaded(self)
