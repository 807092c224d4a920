"""Cubin (CUDA ELF) parsing: sections, symbols, .nv.info attributes, per-kernel launch facts.

Module-wide attributes in `.nv.info` (REGCOUNT, FRAME_SIZE, MIN_STACK_SIZE) are keyed by symbol
index; they are matched to the kernel's own symbol (taking the last record instead gives a too
small register count for multi-function cubins: Xid 13, nvidia-hopper.md 2.2).
"""

import struct
from dataclasses import dataclass, field

from hal import ImageError, InvalidArgument

EM_CUDA = 190
SHT_PROGBITS, SHT_SYMTAB, SHT_NOBITS, SHT_RELA, SHT_REL = 1, 2, 8, 4, 9
SHT_NV_INFO = 0x70000000
SHF_ALLOC = 0x2

# EIATTR ids (nvidia-hopper.md 2.2)
EIATTR_MAX_THREADS, EIATTR_PARAM_CBANK, EIATTR_FRAME_SIZE, EIATTR_MIN_STACK_SIZE = 0x05, 0x0A, 0x11, 0x12
EIATTR_KPARAM_INFO, EIATTR_CBANK_PARAM_SIZE, EIATTR_MAXREG_COUNT, EIATTR_CRS_STACK_SIZE = 0x17, 0x19, 0x1B, 0x1E
EIATTR_REGCOUNT, EIATTR_NUM_BARRIERS, EIATTR_REQNTID = 0x2F, 0x4C, 0x10
EIFMT_SVAL = 4


@dataclass
class Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    align: int
    link: int
    info: int
    data: bytes


@dataclass
class Symbol:
    index: int
    name: str
    value: int
    size: int
    shndx: int


@dataclass
class KernelAttrs:
    """What the QMD and cbank0 need to know about one kernel."""

    name: str
    sm: int
    text: str                      # section holding the entry
    regs: int
    barriers: int
    shared_B: int                  # static shared memory
    local_B: int                   # per-thread local memory (frame + stack + CRS)
    param_base: int                # offset of the first parameter in cbank0
    param_size_B: int
    cbank0_size_B: int
    params: list = field(default_factory=list)   # [(ordinal, offset_B, size_B)]
    max_threads: int = 1024


class Cubin:
    """A parsed cubin; raises ImageError for anything that is not a well-formed CUDA ELF."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        d = self.data
        if len(d) < 64 or d[:4] != b"\x7fELF" or d[4] != 2 or d[5] != 1:
            raise ImageError("not a 64-bit little-endian ELF: this is not a cubin")
        (self.type, self.machine, _, _, _, shoff, self.flags, _, _, _, shentsize, shnum,
         shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)
        if self.machine != EM_CUDA:
            raise ImageError(f"ELF machine {self.machine} is not EM_CUDA (190): not a cubin")
        if shoff + shnum * shentsize > len(d) or shentsize < 64:
            raise ImageError("cubin is truncated (section headers past the end)")
        raw = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
        for (_, stype, _, _, off, size, *_rest) in raw:
            if stype != SHT_NOBITS and off + size > len(d):
                raise ImageError("cubin is truncated (a section runs past the end)")
        names = raw[shstrndx]
        self.sections = []
        for i, (nm, stype, flags, _, off, size, link, info, align, _) in enumerate(raw):
            name = self._cstr(names[4], nm)
            data = b"" if stype == SHT_NOBITS else d[off:off + size]
            self.sections.append(Section(i, name, stype, flags, size, max(align, 1), link, info, data))
        self.by_name = {s.name: s for s in self.sections}
        self.symbols = self._symbols()

    def _cstr(self, table_off: int, off: int) -> str:
        end = self.data.index(b"\0", table_off + off)
        return self.data[table_off + off:end].decode(errors="replace")

    def _symbols(self) -> list:
        symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
        if symtab is None:
            return []
        strtab_off = struct.unpack_from("<Q", self.data, self._shoff_of(symtab.link))[0]
        out = []
        for i in range(len(symtab.data) // 24):
            nm, _info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", symtab.data, i * 24)
            out.append(Symbol(i, self._cstr(strtab_off, nm), value, size, shndx))
        return out

    def _shoff_of(self, index: int) -> int:
        shoff, shentsize = struct.unpack_from("<Q", self.data, 40)[0], struct.unpack_from("<H", self.data, 58)[0]
        return shoff + index * shentsize + 24  # sh_offset field

    @property
    def sm(self) -> int:
        """SM number from e_flags: bits 15:8 for ELF ABI version >= 8, else bits 7:0."""
        return (self.flags >> 8) & 0xFF if self.data[8] >= 8 else self.flags & 0xFF

    def kernels(self) -> list:
        return [s.name[len(".text."):] for s in self.sections if s.name.startswith(".text.")]

    @staticmethod
    def attributes(section: Section) -> list:
        """[(attr id, value or payload bytes)] of an .nv.info section."""
        out, d, i = [], section.data, 0
        while i + 4 <= len(d):
            fmt, attr, v = d[i], d[i + 1], struct.unpack_from("<H", d, i + 2)[0]
            if fmt == EIFMT_SVAL:
                out.append((attr, d[i + 4:i + 4 + v]))
                i += 4 + v
            else:
                out.append((attr, v))
                i += 4
        return out

    def kernel(self, name: str) -> KernelAttrs:
        text = self.by_name.get(".text." + name)
        sym = next((s for s in self.symbols if s.name == name and text and s.shndx == text.index), None)
        if text is None or sym is None:
            raise InvalidArgument(f"cubin has no kernel {name!r} (kernels: {self.kernels()}); "
                                  "declare it extern \"C\" __global__")
        per_sym = {}
        if ".nv.info" in self.by_name:
            for attr, payload in self.attributes(self.by_name[".nv.info"]):
                if isinstance(payload, bytes) and len(payload) == 8:
                    sym_index, value = struct.unpack("<II", payload)
                    if sym_index == sym.index:
                        per_sym[attr] = value
        info = self.by_name.get(".nv.info." + name)
        own = self.attributes(info) if info else []
        attrs = {a: v for a, v in own}
        param_base, param_size = 0, 0
        if isinstance(attrs.get(EIATTR_PARAM_CBANK), bytes):
            _, param_base, param_size = struct.unpack_from("<IHH", attrs[EIATTR_PARAM_CBANK])
        params = sorted(
            (struct.unpack_from("<H", p, 4)[0], struct.unpack_from("<H", p, 6)[0],
             (struct.unpack_from("<I", p, 8)[0] >> 18) & 0x3FFF)
            for a, p in own if a == EIATTR_KPARAM_INFO and isinstance(p, bytes) and len(p) >= 12)
        crs = struct.unpack_from("<I", attrs[EIATTR_CRS_STACK_SIZE])[0] if isinstance(
            attrs.get(EIATTR_CRS_STACK_SIZE), bytes) else 0
        max_threads = 1024
        for a in (EIATTR_MAX_THREADS, EIATTR_REQNTID):
            if isinstance(attrs.get(a), bytes) and len(attrs[a]) >= 12:
                x, y, z = struct.unpack_from("<III", attrs[a])
                max_threads = min(max_threads, max(x, 1) * max(y, 1) * max(z, 1))
        if EIATTR_REGCOUNT not in per_sym:
            raise ImageError(f"cubin has no EIATTR_REGCOUNT for kernel {name!r}")
        shared = self.by_name.get(".nv.shared." + name)
        cb0 = self.by_name.get(".nv.constant0." + name)
        local = per_sym.get(EIATTR_FRAME_SIZE, 0) + per_sym.get(EIATTR_MIN_STACK_SIZE, 0) + crs
        return KernelAttrs(
            name=name, sm=self.sm, text=text.name, regs=per_sym[EIATTR_REGCOUNT],
            barriers=attrs.get(EIATTR_NUM_BARRIERS, 0) if isinstance(attrs.get(EIATTR_NUM_BARRIERS), int) else 0,
            shared_B=shared.size if shared else 0, local_B=(local + 15) // 16 * 16,
            param_base=param_base, param_size_B=param_size,
            cbank0_size_B=cb0.size if cb0 else param_base + param_size, params=params, max_threads=max_threads)
