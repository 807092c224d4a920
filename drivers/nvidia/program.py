"""NvProgram: a cubin kernel loaded into VRAM, with what the QMD and cbank0 need to launch it.

Every allocated PROGBITS section of the cubin goes into one image (section alignment kept),
relocations are applied against the image's GPU address, and the image is written through BAR1.
"""

import struct

import hal
from hal import DeviceError, ImageError, InvalidArgument

from . import cbank0, qmd as qmdlib
from .cubin import SHF_ALLOC, SHT_PROGBITS, SHT_RELA, SHT_REL, Cubin

R_CUDA_64, R_CUDA_ABS32_LO_32, R_CUDA_ABS32_HI_32 = 2, 0x38, 0x39
PREFETCH_SLACK_B = 0x1000     # instruction prefetch runs past the end of the code


def layout_image(cubin: Cubin) -> tuple:
    """({section index: offset_B}, size_B) of the loadable sections."""
    offsets, pos = {}, 0
    for s in cubin.sections:
        if s.type == SHT_PROGBITS and s.flags & SHF_ALLOC and s.size:
            align = max(s.align, 128 if s.name.startswith(".text.") else 16)
            pos = (pos + align - 1) // align * align
            offsets[s.index] = pos
            pos += s.size
    return offsets, pos


def relocate(cubin: Cubin, image: bytearray, offsets: dict, base_va: int):
    for rel in cubin.sections:
        if rel.type not in (SHT_RELA, SHT_REL) or rel.info not in offsets:
            continue
        entry = 24 if rel.type == SHT_RELA else 16
        for i in range(len(rel.data) // entry):
            off, info = struct.unpack_from("<QQ", rel.data, i * entry)
            addend = struct.unpack_from("<q", rel.data, i * entry + 16)[0] if rel.type == SHT_RELA else 0
            sym = cubin.symbols[info >> 32]
            if sym.shndx not in offsets:
                raise ImageError(f"relocation in {rel.name} against {sym.name!r}, which is not loaded")
            target = base_va + offsets[sym.shndx] + sym.value + addend
            at = offsets[rel.info] + off
            kind = info & 0xFFFFFFFF
            if kind == R_CUDA_64:
                struct.pack_into("<Q", image, at, target)
            elif kind == R_CUDA_ABS32_LO_32:
                struct.pack_into("<I", image, at + 4, target & 0xFFFFFFFF)
            elif kind == R_CUDA_ABS32_HI_32:
                struct.pack_into("<I", image, at + 4, target >> 32)
            else:
                raise ImageError(f"unsupported cubin relocation type {kind:#x} in {rel.name}")


class NvProgram(hal.Program):
    def __init__(self, device, binary: bytes, name: str, meta: hal.KernelMeta):
        try:
            cubin = Cubin(binary)
        except ImageError as e:
            raise DeviceError(f"cannot load {name!r} on {device.spec}: {e}") from None
        if cubin.sm != device.sm:
            raise DeviceError(f"cubin is for sm_{cubin.sm}, {device.spec} is sm_{device.sm}: compile for "
                              f"{device.info.arch}")
        attrs = cubin.kernel(name)
        if not isinstance(meta, hal.KernelMeta):
            raise InvalidArgument(f"load_program needs a hal.KernelMeta for {name!r}, got {type(meta).__name__}")
        self._check_params(name, meta, attrs)
        super().__init__(device, name, hal.KernelMeta(
            params=meta.params, max_threads=min(meta.max_threads, attrs.max_threads), shared_B=attrs.shared_B,
            regs=attrs.regs, extra={"local_B": attrs.local_B, "barriers": attrs.barriers, "sm": attrs.sm,
                                    "param_base": attrs.param_base, **meta.extra}))
        self.attrs = attrs
        offsets, size_B = layout_image(cubin)
        self.image = device.memory.alloc_vram(size_B + PREFETCH_SLACK_B, cpu_map=True)
        image = bytearray(size_B)
        for index, off in offsets.items():
            image[off:off + cubin.sections[index].size] = cubin.sections[index].data
        relocate(cubin, image, offsets, self.image.va)
        device._host_view_at(self.image.va, size_B)[:] = image
        text = cubin.by_name[attrs.text]
        self.code_va, self.code_B = self.image.va + offsets[text.index], text.size
        # constant banks other than 0 (module __constant__ data, compiler constants) map to QMD slots
        self.cbufs = {}
        for s in cubin.sections:
            if s.name.startswith(".nv.constant") and s.index in offsets and not s.name.startswith(".nv.constant0"):
                bank = int(s.name[len(".nv.constant"):].split(".")[0])
                if "." not in s.name[len(".nv.constant"):] or s.name.endswith("." + name):
                    self.cbufs[bank] = (self.image.va + offsets[s.index], s.size)
        # the stack starts at STACK_TOP inside each thread's 16 MB local window and grows down, so the
        # per-thread local size counts the bytes above the stack top as well (Out Of Range Address otherwise)
        self.local_B = attrs.local_B + (cbank0.LOCAL_WINDOW_TOP - cbank0.STACK_TOP) if attrs.local_B else 0
        device.ensure_local_memory(self.local_B)
        self.table = qmdlib.TABLE_BY_COMPUTE_CLASS[device.classes["compute"]]

    @staticmethod
    def _check_params(name, meta, attrs):
        offsets, _ = meta.layout()
        sizes = {p: hal.PARAM_TYPES[p][1] for p in hal.PARAM_TYPES}
        declared = [(off, sizes[t]) for off, t in offsets]
        actual = [(off, size) for _, off, size in attrs.params]
        if declared != actual:
            raise InvalidArgument(f"kernel {name!r}: meta params {list(meta.params)} give (offset, size) {declared}, "
                                  f"the cubin has {actual}")

    def close(self):
        if not self.closed and not self.device.closed:
            self.device.free_when_done(self.image)     # a submitted launch may still fetch its code
        super().close()
