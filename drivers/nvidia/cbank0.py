"""Constant bank 0: the driver-owned prefix the SASS reads, then the kernel parameters.

Offsets per architecture (nvidia-hopper.md 2.1): sm_80/89 and sm_90 share the prefix (block dims
0x00, grid dims 0x0C, shared window 0x18, local window 0x20, stack top 0x28); sm_100/120 move the
windows and the stack to 0x2F0/0x2F8/0x37C. The parameter base always comes from the cubin's
EIATTR_PARAM_CBANK (0x210 on sm_90, 0x160 on sm_80/89, 0x380 on sm_100+).
"""

import struct
from dataclasses import dataclass

from hal import InvalidArgument

STACK_TOP = 0x00FFFDC0          # initial stack pointer inside the local window (tinygrad's value, [HW])
LOCAL_WINDOW_TOP = 0x01000000   # end of a thread's local window: the stack grows down from STACK_TOP


@dataclass(frozen=True)
class Cbank0Layout:
    block_dims: int
    grid_dims: int
    shared_window: int
    local_window: int
    stack_top: int


AMPERE_HOPPER = Cbank0Layout(block_dims=0x00, grid_dims=0x0C, shared_window=0x18, local_window=0x20, stack_top=0x28)
BLACKWELL = Cbank0Layout(block_dims=0x00, grid_dims=0x0C, shared_window=0x2F0, local_window=0x2F8, stack_top=0x37C)


def layout_for(sm: int) -> Cbank0Layout:
    if 80 <= sm < 100:
        return AMPERE_HOPPER
    if 100 <= sm < 130:
        return BLACKWELL
    raise InvalidArgument(f"no cbank0 layout for sm_{sm} (supported: sm_80..sm_121)")


def build(sm: int, size_B: int, param_base: int, params: bytes, grid, block, shared_window: int,
          local_window: int) -> bytes:
    """The cbank0 image for one launch (size rounded up to 16 bytes)."""
    lay = layout_for(sm)
    size_B = max(size_B, param_base + len(params), lay.stack_top + 4)
    out = bytearray((size_B + 15) // 16 * 16)
    struct.pack_into("<III", out, lay.block_dims, *block)
    struct.pack_into("<III", out, lay.grid_dims, *grid)
    struct.pack_into("<Q", out, lay.shared_window, shared_window)
    struct.pack_into("<Q", out, lay.local_window, local_window)
    struct.pack_into("<I", out, lay.stack_top, STACK_TOP)
    out[param_base:param_base + len(params)] = params
    return bytes(out)
