"""QMD (queue meta data) builder: one launch descriptor from a field table (classes/qmd_v0N.py).

The compute class picks the table: V03 for Ampere/Ada, V04 for Hopper, V05 for Blackwell. The
fields set are those of the QMD that ran on the H100 (nvidia-hopper.md 1.3); every other bit is 0.
"""

from hal import InvalidArgument

from .classes import compute_cbc0, qmd_v03, qmd_v04, qmd_v05

TABLE_BY_COMPUTE_CLASS = {0xC6C0: qmd_v03, 0xC7C0: qmd_v03, 0xC9C0: qmd_v03, 0xCBC0: qmd_v04,
                          0xCDC0: qmd_v05, 0xCEC0: qmd_v05}
SHARED_RESERVED_B = 0x400                    # 1 KB per CTA reserved ahead of static shared memory
SM_CARVEOUTS_KB = (0, 8, 16, 32, 64, 100, 132, 164, 196, 228)
MAX_SM_CONFIG_KB = 228
SM_MAX_THREADS, SM_REGISTERS, SM_MAX_BLOCKS = 2048, 65536, 32   # per SM, sm_80..sm_90
CWD_MEMBAR_L1_NONE, CWD_MEMBAR_L1_SYSMEMBAR = 0, 1
RELEASE_FOUR_WORDS, RELEASE_MEMBAR_FE_SYSMEMBAR = 0, 1


class Qmd:
    """A QMD image being built: an int of SIZE_B*8 bits with named field access."""

    def __init__(self, table, raw: bytes | None = None):
        self.table, self.bits = table, int.from_bytes(raw, "little") if raw else 0

    def _range(self, name: str, index: int | None):
        if index is None:
            return self.table.FIELDS[name]
        hi, lo, stride = self.table.INDEXED[name]
        return hi + stride * index, lo + stride * index

    def set(self, name: str, value: int, index: int | None = None) -> "Qmd":
        hi, lo = self._range(name, index)
        width = hi - lo + 1
        if not 0 <= value < (1 << width):
            raise InvalidArgument(f"QMD field {name} ({width} bits) cannot hold {value:#x}")
        self.bits = (self.bits & ~(((1 << width) - 1) << lo)) | (value << lo)
        return self

    def get(self, name: str, index: int | None = None) -> int:
        hi, lo = self._range(name, index)
        return (self.bits >> lo) & ((1 << (hi - lo + 1)) - 1)

    def set_address(self, prefix: str, va: int, shift: int = 0, index: int | None = None) -> "Qmd":
        """A LOWER/UPPER pair holding va >> shift."""
        value = va >> shift
        self.set(prefix + "_LOWER", value & 0xFFFFFFFF, index)
        return self.set(prefix + "_UPPER", value >> 32, index)

    def to_bytes(self) -> bytes:
        return self.bits.to_bytes(self.table.SIZE_B, "little")


def sm_config(shared_B: int) -> int:
    """SM shared-memory config value (KB/4 + 1) of the smallest carveout holding shared_B."""
    kb = next((c for c in SM_CARVEOUTS_KB if c * 1024 >= shared_B), None)
    if kb is None:
        raise InvalidArgument(f"{shared_B} B of shared memory per block exceeds {MAX_SM_CONFIG_KB} KB")
    return kb // 4 + 1


def blocks_per_sm(threads: int, regs: int) -> int:
    """Blocks of this shape that one SM's threads and registers hold (shared memory aside); registers
    are allocated per warp in units of 256."""
    warps = (threads + 31) // 32
    regs_per_warp = (max(regs, 1) * 32 + 255) // 256 * 256
    return max(1, min(SM_MAX_THREADS // (warps * 32), SM_REGISTERS // (regs_per_warp * warps), SM_MAX_BLOCKS))


def carveout_target_B(smem_B: int, threads: int, regs: int) -> int:
    """Shared memory an SM should carve out for a launch: enough for as many blocks as its threads and
    registers allow (what the CUDA runtime's default carveout aims at), at most the largest carveout.
    The smallest carveout that holds one block (the former choice) left GEMMs at 1-2 blocks per SM."""
    return max(smem_B, min(smem_B * blocks_per_sm(threads, regs), MAX_SM_CONFIG_KB * 1024))


def sass_version(sm_version: int) -> int:
    """GR SM_VERSION (0x900) -> QMD SASS_VERSION (0x90)."""
    return ((sm_version & 0xF00) >> 4) | (sm_version & 0xF)


def build(table, *, program_va: int, program_size_B: int, regs: int, barriers: int, shared_B: int, local_B: int,
          sass: int, cbufs, grid, block) -> Qmd:
    """A launch QMD. cbufs: {index: (va, size_B)}; grid/block: 3-tuples."""
    q = Qmd(table)
    major, minor = table.VERSION
    q.set("QMD_MAJOR_VERSION", major).set("QMD_MINOR_VERSION", minor)
    q.set(*table.GRID_FLAG)
    if "SM_GLOBAL_CACHING_ENABLE" in table.FIELDS:
        q.set("SM_GLOBAL_CACHING_ENABLE", 1)
    q.set("QMD_GROUP_ID", 0x3F).set("SASS_VERSION", sass)
    q.set("API_VISIBLE_CALL_LIMIT", 1).set("SAMPLER_INDEX", 1)
    for cache in ("TEXTURE_HEADER", "TEXTURE_SAMPLER", "TEXTURE_DATA", "SHADER_DATA"):
        q.set(f"INVALIDATE_{cache}_CACHE", 1)
    # No membar inside a chain of dependent launches (0.71 vs 1.30 µs per kernel on H100, and a 100-step
    # read-modify-write chain stays exact: tests/nvidia); the last kernel before anything else gets SYSMEMBAR.
    q.set("CWD_MEMBAR_TYPE", CWD_MEMBAR_L1_NONE)
    q.set("BARRIER_COUNT", max(barriers, 1)).set("REGISTER_COUNT", regs)
    shifts = table.SHIFTS
    q.set_address("PROGRAM_ADDRESS", program_va, shifts["PROGRAM_ADDRESS"])
    q.set("PROGRAM_PREFETCH_ADDR_LOWER_SHIFTED", (program_va >> 8) & 0xFFFFFFFF)
    q.set("PROGRAM_PREFETCH_ADDR_UPPER_SHIFTED", program_va >> 40)
    q.set("PROGRAM_PREFETCH_SIZE", min(program_size_B >> 8, 0x1FF))
    smem_B = (SHARED_RESERVED_B + shared_B + 127) // 128 * 128
    q.set("SHARED_MEMORY_SIZE", smem_B >> shifts["SHARED_MEMORY_SIZE"])
    target_B = carveout_target_B(smem_B, block[0] * block[1] * block[2], regs)
    q.set("MIN_SM_CONFIG_SHARED_MEM_SIZE", sm_config(smem_B)).set("TARGET_SM_CONFIG_SHARED_MEM_SIZE", sm_config(target_B))
    q.set("MAX_SM_CONFIG_SHARED_MEM_SIZE", sm_config(max(target_B, 100 * 1024)))
    q.set("SHADER_LOCAL_MEMORY_HIGH_SIZE", local_B >> shifts["SHADER_LOCAL_MEMORY_HIGH_SIZE"])
    for index, (va, size_B) in cbufs.items():
        q.set_address("CONSTANT_BUFFER_ADDR", va, shifts["CONSTANT_BUFFER_ADDR"], index)
        q.set("CONSTANT_BUFFER_SIZE_SHIFTED4", (size_B + 15) >> 4, index)
        q.set("CONSTANT_BUFFER_VALID", 1, index).set("CONSTANT_BUFFER_INVALIDATE", 1, index)
    set_dims(q, grid, block)
    return q


def set_dims(q: Qmd, grid, block):
    for name, value in zip(("GRID_WIDTH", "GRID_HEIGHT", "GRID_DEPTH"), grid):
        q.set(name, value)
    for i, value in enumerate(block):
        q.set(f"CTA_THREAD_DIMENSION{i}", value)


def chain(q: Qmd, next_qmd_va: int):
    """Schedule the QMD at next_qmd_va when q completes (launch order without a host round trip)."""
    q.set("DEPENDENT_QMD0_POINTER", next_qmd_va >> 8)
    q.set("DEPENDENT_QMD0_ACTION", compute_cbc0.QMD_ACTION_SCHEDULE)
    q.set("DEPENDENT_QMD0_PREFETCH", 1).set("DEPENDENT_QMD0_ENABLE", 1)


def release(q: Qmd, va: int, payload: int):
    """Release semaphore 0 when the grid completes: 64-bit payload at va, GPU time at va+8, after a sysmembar."""
    q.set("RELEASE0_ADDR_LOWER", va & 0xFFFFFFFF).set("RELEASE0_ADDR_UPPER", va >> 32)
    q.set("RELEASE0_PAYLOAD_LOWER", payload & 0xFFFFFFFF).set("RELEASE0_PAYLOAD_UPPER", payload >> 32)
    q.set("RELEASE0_STRUCTURE_SIZE", RELEASE_FOUR_WORDS).set("RELEASE0_PAYLOAD64B", 1)
    q.set("RELEASE0_MEMBAR_TYPE", RELEASE_MEMBAR_FE_SYSMEMBAR).set("RELEASE0_ENABLE", 1)
    q.set("CWD_MEMBAR_TYPE", CWD_MEMBAR_L1_SYSMEMBAR)
