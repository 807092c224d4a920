"""RM object class numbers (src/common/sdk/nvidia/inc/class/*.h, open-gpu-kernel-modules 580.142).

Engine classes come in families, newest first; the device's class list picks the first present,
so Ampere, Ada, Hopper and Blackwell each get their own (nvidia-hopper.md 3.3).
"""

NV01_ROOT_CLIENT = 0x0041
NV01_DEVICE_0 = 0x0080
NV20_SUBDEVICE_0 = 0x2080
NV01_MEMORY_SYSTEM = 0x003E
NV01_MEMORY_LOCAL_USER = 0x0040
NV01_MEMORY_VIRTUAL = 0x0070
NV01_MEMORY_SYSTEM_OS_DESCRIPTOR = 0x0071
FERMI_CONTEXT_SHARE_A = 0x9067
FERMI_VASPACE_A = 0x90F1
KEPLER_CHANNEL_GROUP_A = 0xA06C

USERMODE = {0xC761: "BLACKWELL_USERMODE_A", 0xC661: "HOPPER_USERMODE_A", 0xC561: "AMPERE_USERMODE_A",
            0xC461: "TURING_USERMODE_A"}
GPFIFO = {0xCA6F: "BLACKWELL_CHANNEL_GPFIFO_B", 0xC96F: "BLACKWELL_CHANNEL_GPFIFO_A",
          0xC86F: "HOPPER_CHANNEL_GPFIFO_A", 0xC56F: "AMPERE_CHANNEL_GPFIFO_A"}
COMPUTE = {0xCEC0: "BLACKWELL_COMPUTE_B", 0xCDC0: "BLACKWELL_COMPUTE_A", 0xCBC0: "HOPPER_COMPUTE_A",
           0xC9C0: "ADA_COMPUTE_A", 0xC7C0: "AMPERE_COMPUTE_B", 0xC6C0: "AMPERE_COMPUTE_A"}
COPY = {0xCAB5: "BLACKWELL_DMA_COPY_B", 0xC9B5: "BLACKWELL_DMA_COPY_A", 0xC8B5: "HOPPER_DMA_COPY_A",
        0xC7B5: "AMPERE_DMA_COPY_B", 0xC6B5: "AMPERE_DMA_COPY_A"}

# NV2080_ENGINE_TYPE_*: which engine a channel group runs on (cl2080_notification.h)
ENGINE_TYPE_GRAPHICS = 1
ENGINE_TYPE_COPY0, ENGINE_TYPE_COPY9 = 0x09, 0x12


def pick(family: dict, present) -> int | None:
    """The newest class of a family that the device lists, or None."""
    present = set(present)
    return next((c for c in family if c in present), None)
