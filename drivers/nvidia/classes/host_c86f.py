"""Host (esched) methods of HOPPER_CHANNEL_GPFIFO_A (0xC86F), offsets < 0x100 on any subchannel.

From open-gpu-kernel-modules class/clc86f.h and open-gpu-doc clc56f.h (nvidia-hopper.md 4.3);
Ampere's C56F has the same offsets. Also the GPFIFO entry and USERD layout (4.1).
"""

METHODS = {
    0x00: "SET_OBJECT", 0x08: "NOP", 0x20: "NON_STALL_INTERRUPT", 0x24: "FB_FLUSH",
    0x28: "MEM_OP_A", 0x2C: "MEM_OP_B", 0x30: "MEM_OP_C", 0x34: "MEM_OP_D", 0x50: "SET_REFERENCE",
    0x5C: "SEM_ADDR_LO", 0x60: "SEM_ADDR_HI", 0x64: "SEM_PAYLOAD_LO", 0x68: "SEM_PAYLOAD_HI",
    0x6C: "SEM_EXECUTE", 0x78: "WFI", 0x80: "YIELD", 0x84: "CLEAR_FAULTED",
}
SET_OBJECT, NON_STALL_INTERRUPT, SEM_ADDR_LO, SEM_EXECUTE, WFI = 0x00, 0x20, 0x5C, 0x6C, 0x78

# SEM_EXECUTE fields
SEM_OPERATION = {0: "ACQUIRE", 1: "RELEASE", 2: "ACQ_STRICT_GEQ", 3: "ACQ_CIRC_GEQ", 4: "ACQ_AND", 5: "ACQ_NOR",
                 6: "REDUCTION"}
SEM_OP_RELEASE, SEM_OP_ACQ_CIRC_GEQ = 1, 3
SEM_RELEASE_WFI = 1 << 20
SEM_PAYLOAD_SIZE_64BIT = 1 << 24
SEM_RELEASE_TIMESTAMP = 1 << 25
WFI_SCOPE_ALL = 1

# GPFIFO entry: (va & ~3) | (ndwords << 42) | LEVEL/SYNC bits; only 40 VA bits fit.
GP_ENTRY_LENGTH_SHIFT = 42
GP_ENTRY_VA_LIMIT = 1 << 40
# USERD (HopperAControlGPFifo) byte offsets; usermode doorbell offset (NOTIFY_CHANNEL_PENDING).
USERD_GP_GET, USERD_GP_PUT = 0x88, 0x8C
USERMODE_DOORBELL = 0x90
USERMODE_SIZE_B = 0x10000
