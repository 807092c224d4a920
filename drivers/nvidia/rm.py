"""RM transport: ioctls on /dev/nvidiactl and /dev/nvidiaN, with typed errors.

Every RM call returns an NV_STATUS inside its parameter block; a non-zero one raises RmError
naming the call, the object and the status string from classes/rm_status.py. The fd rules
(which escape goes to which node, one mmap context per file) are in nvidia-hopper.md 3.1.
"""

import ctypes
import os

from hal import DeviceError, OutOfDeviceMemory

from .classes.objects import NV01_MEMORY_SYSTEM_OS_DESCRIPTOR
from .classes.rm_status import RM_STATUS
from .structs import ffi, libc

NV_IOCTL_MAGIC = ord("F")
# NV_ESC_* numbers (kernel-open/common/inc/nv-ioctl-numbers.h, arch/nvalloc/unix/include/nv_escape.h)
ESC_CARD_INFO, ESC_REGISTER_FD = 200, 201
ESC_RM_ALLOC_MEMORY, ESC_RM_FREE, ESC_RM_CONTROL, ESC_RM_ALLOC = 0x27, 0x29, 0x2A, 0x2B
ESC_RM_MAP_MEMORY, ESC_RM_MAP_MEMORY_DMA = 0x4E, 0x57

PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 1, 2, 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x4000, 0x100000
MAP_FAILED = 2**64 - 1
OOM_STATUSES = {"NV_ERR_NO_MEMORY", "NV_ERR_INSUFFICIENT_RESOURCES"}


class RmError(DeviceError):
    """An RM or UVM call failed: carries the call name, the NV_STATUS code and its name."""

    def __init__(self, call: str, status: int, detail: str = ""):
        self.call, self.status = call, status
        self.status_name, text = RM_STATUS.get(status, (f"NV_STATUS {status:#x}", "unknown status"))
        super().__init__(f"{call} failed: {self.status_name} ({text}){' ' + detail if detail else ''}")


def rm_check(call: str, status: int, detail: str = ""):
    if status:
        err = RmError(call, status, detail)
        if err.status_name in OOM_STATUSES:
            raise OutOfDeviceMemory(str(err)) from err
        raise err


def ioctl_request(nr: int, size_B: int) -> int:
    """_IOWR('F', nr, size): every RM ioctl is read-write."""
    return 0xC0000000 | (size_B << 16) | (NV_IOCTL_MAGIC << 8) | nr


def ioctl(fd: int, request: int, params, call: str):
    """ioctl(2) on a cffi struct pointer; an OS-level failure becomes DeviceError naming the call."""
    if libc.ioctl(fd, request, params) != 0:
        errno = ffi.errno
        raise DeviceError(f"{call}: ioctl failed: {os.strerror(errno)} (errno {errno})")


def nv_ioctl(fd: int, nr: int, params, call: str):
    ioctl(fd, ioctl_request(nr, ffi.sizeof(params[0])), params, call)


def open_node(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise DeviceError(f"cannot open {path}: {e.strerror}") from None


def mmap(addr: int, size_B: int, prot: int, flags: int, fd: int = -1, what: str = "mmap") -> int:
    got = int(ffi.cast("uintptr_t", libc.mmap(ffi.cast("void *", addr), size_B, prot, flags, fd, 0)))
    if got == MAP_FAILED:
        errno = ffi.errno
        raise DeviceError(f"{what}: mmap of {size_B} B at {addr:#x} failed: {os.strerror(errno)}")
    return got


def munmap(addr: int, size_B: int):
    libc.munmap(ffi.cast("void *", addr), size_B)


def host_view(addr: int, size_B: int) -> memoryview:
    """A writable memoryview over mapped memory at addr (no copy)."""
    return memoryview((ctypes.c_char * size_B).from_address(addr)).cast("B")


class RmFile:
    """The RM control node (/dev/nvidiactl) and the calls made through it."""

    def __init__(self):
        self.fd = open_node("/dev/nvidiactl")

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def alloc(self, parent: int, hclass: int, params=None, root: int = 0, handle: int = 0, what: str = "") -> int:
        """RM_ALLOC of an object of class hclass under parent; returns its handle."""
        p = ffi.new("NVOS21_PARAMETERS *", {"hRoot": root, "hObjectParent": parent, "hObjectNew": handle,
                                            "hClass": hclass})
        if params is not None:
            p.pAllocParms = int(ffi.cast("uintptr_t", params))
            p.paramsSize = ffi.sizeof(params[0])
        nv_ioctl(self.fd, ESC_RM_ALLOC, p, "RM_ALLOC")
        rm_check(f"RM_ALLOC class {hclass:#06x}{' (' + what + ')' if what else ''}", p.status, f"under {parent:#x}")
        return p.hObjectNew

    def free(self, root: int, parent: int, handle: int):
        p = ffi.new("NVOS00_PARAMETERS *", {"hRoot": root, "hObjectParent": parent, "hObjectOld": handle})
        nv_ioctl(self.fd, ESC_RM_FREE, p, "RM_FREE")
        rm_check(f"RM_FREE {handle:#x}", p.status)

    def free_client(self, client: int):
        """Free a client and with it every object it owns."""
        self.free(client, client, client)

    def control(self, client: int, obj: int, cmd: int, params, what: str = ""):
        """RM_CONTROL cmd on obj with a cffi params struct (filled in place)."""
        p = ffi.new("NVOS54_PARAMETERS *", {"hClient": client, "hObject": obj, "cmd": cmd,
                                            "params": int(ffi.cast("uintptr_t", params)),
                                            "paramsSize": ffi.sizeof(params[0])})
        nv_ioctl(self.fd, ESC_RM_CONTROL, p, "RM_CONTROL")
        rm_check(f"RM_CONTROL {cmd:#010x}{' (' + what + ')' if what else ''}", p.status)
        return params

    def map_memory(self, client: int, device: int, memory: int, size_B: int, map_fd: int, flags: int = 0):
        """RM_MAP_MEMORY: set up the mmap context of map_fd for memory (then mmap map_fd at offset 0)."""
        p = ffi.new("nv_ioctl_nvos33_parameters_with_fd *")
        p.params.hClient, p.params.hDevice, p.params.hMemory = client, device, memory
        p.params.length, p.params.flags, p.fd = size_B, flags, map_fd
        nv_ioctl(self.fd, ESC_RM_MAP_MEMORY, p, "RM_MAP_MEMORY")
        rm_check(f"RM_MAP_MEMORY {memory:#x}", p.params.status)

    def map_memory_dma(self, struct_name: str, client: int, device: int, dma: int, memory: int, size_B: int,
                       va: int, flags: int):
        p = ffi.new(struct_name + " *", {"hClient": client, "hDevice": device, "hDma": dma, "hMemory": memory,
                                         "length": size_B, "flags": flags, "dmaOffset": va})
        nv_ioctl(self.fd, ESC_RM_MAP_MEMORY_DMA, p, "RM_MAP_MEMORY_DMA")
        rm_check(f"RM_MAP_MEMORY_DMA {memory:#x} at {va:#x}", p.status)
        if p.dmaOffset != va:
            raise DeviceError(f"RM_MAP_MEMORY_DMA placed {memory:#x} at {p.dmaOffset:#x}, asked for {va:#x}")

    def card_info(self, max_cards: int = 64):
        cards = ffi.new("nv_ioctl_card_info_t[]", max_cards)
        ioctl(self.fd, ioctl_request(ESC_CARD_INFO, ffi.sizeof(cards)), cards, "CARD_INFO")
        # owning copies: an element of `cards` would dangle once the array is collected
        return [ffi.new("nv_ioctl_card_info_t *", cards[i]) for i in range(max_cards) if cards[i].valid]


def alloc_os_memory(dev_fd: int, client: int, device: int, handle: int, addr: int, size_B: int, flags: int):
    """RM_ALLOC_MEMORY of NV01_MEMORY_SYSTEM_OS_DESCRIPTOR over host pages at addr (on /dev/nvidiaN)."""
    p = ffi.new("nv_ioctl_nvos02_parameters_with_fd *")
    p.params.hRoot, p.params.hObjectParent, p.params.hObjectNew = client, device, handle
    p.params.hClass, p.params.flags = NV01_MEMORY_SYSTEM_OS_DESCRIPTOR, flags
    p.params.pMemory, p.params.limit = addr, size_B - 1
    p.fd = -1
    nv_ioctl(dev_fd, ESC_RM_ALLOC_MEMORY, p, "RM_ALLOC_MEMORY")
    rm_check("RM_ALLOC_MEMORY (OS descriptor)", p.params.status, f"{size_B} B at {addr:#x}")
    return p.params.hObjectNew


def register_fd(dev_fd: int, ctl_fd: int):
    p = ffi.new("nv_ioctl_register_fd_t *", {"ctl_fd": ctl_fd})
    nv_ioctl(dev_fd, ESC_REGISTER_FD, p, "REGISTER_FD")
