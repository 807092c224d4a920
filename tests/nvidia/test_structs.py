"""RM/UVM structure layouts against the sizes in nvidia-hopper.md 3.2 (x86-64, 580 and 570 headers),
ioctl request words, the VA allocator and RM status naming. No GPU needed."""

import pytest

from drivers.nvidia import rm
from drivers.nvidia.structs import ffi, layout
from drivers.nvidia.vaspace import VaAllocator
from hal import InvalidArgument, OutOfDeviceMemory

SIZES = {
    "NVOS00_PARAMETERS": 16, "NVOS02_PARAMETERS": 48, "nv_ioctl_nvos02_parameters_with_fd": 56,
    "NVOS21_PARAMETERS": 32, "NVOS33_PARAMETERS": 48, "nv_ioctl_nvos33_parameters_with_fd": 56,
    "NVOS46_PARAMETERS_580": 64, "NVOS46_PARAMETERS_570": 56, "NVOS54_PARAMETERS": 32,
    "NV0080_ALLOC_PARAMETERS": 56, "NV2080_ALLOC_PARAMETERS": 4, "NV_MEMORY_VIRTUAL_ALLOCATION_PARAMS": 24,
    "NV_VASPACE_ALLOCATION_PARAMETERS_580": 56, "NV_VASPACE_ALLOCATION_PARAMETERS_570": 48,
    "NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS": 20, "NV_CTXSHARE_ALLOCATION_PARAMETERS": 12,
    "NV_MEMORY_ALLOCATION_PARAMS": 128, "NV_CHANNEL_ALLOC_PARAMS": 368, "NV_HOPPER_USERMODE_A_PARAMS": 2,
    "NV83DE_ALLOC_PARAMETERS": 12, "nv_ioctl_card_info_t": 72, "NvNotification": 16,
    "NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS": 16, "NV2080_CTRL_GR_GET_INFO_PARAMS": 32,
    "NV2080_CTRL_GPU_GET_GID_INFO_PARAMS": 268, "NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS": 32,
    "NV0000_CTRL_SYSTEM_GET_BUILD_VERSION_V2_PARAMS": 1032, "NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS": 4,
    "NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS": 3, "UVM_INITIALIZE_PARAMS": 16, "UVM_REGISTER_GPU_PARAMS": 40,
    "UVM_REGISTER_GPU_VASPACE_PARAMS": 32, "UVM_REGISTER_CHANNEL_PARAMS": 56,
    "UVM_CREATE_EXTERNAL_RANGE_PARAMS": 24, "UVM_MAP_EXTERNAL_ALLOCATION_PARAMS": 9264,
    "nv_ioctl_rm_api_version_t": 72,
}
OFFSETS = [("NV_CHANNEL_ALLOC_PARAMS", "instanceMem", 144), ("NV_CHANNEL_ALLOC_PARAMS", "tpcConfigID", 360),
           ("NV_MEMORY_ALLOCATION_PARAMS", "size", 64), ("NV_MEMORY_ALLOCATION_PARAMS", "numaNode", 120),
           ("NVOS46_PARAMETERS_580", "dmaOffset", 48), ("NVOS46_PARAMETERS_570", "dmaOffset", 40),
           ("NV_VASPACE_ALLOCATION_PARAMETERS_580", "vaBase", 40), ("nv_ioctl_card_info_t", "gpu_id", 16),
           ("nv_ioctl_card_info_t", "minor_number", 56), ("UVM_REGISTER_CHANNEL_PARAMS", "base", 32)]


@pytest.mark.parametrize("name", SIZES)
def test_struct_size(name):
    assert ffi.sizeof(name) == SIZES[name]


@pytest.mark.parametrize("struct,field,offset", OFFSETS)
def test_field_offset(struct, field, offset):
    assert ffi.offsetof(struct, field) == offset


def test_layout_by_driver_branch():
    assert ffi.sizeof(layout(580)["NVOS46_PARAMETERS"]) == 64 and ffi.sizeof(layout(595)["NVOS46_PARAMETERS"]) == 64
    assert ffi.sizeof(layout(570)["NV_VASPACE_ALLOCATION_PARAMETERS"]) == 48


def test_ioctl_request_words():
    assert rm.ioctl_request(rm.ESC_RM_ALLOC, ffi.sizeof("NVOS21_PARAMETERS")) == 0xC020462B
    assert rm.ioctl_request(rm.ESC_RM_CONTROL, ffi.sizeof("NVOS54_PARAMETERS")) == 0xC020462A
    assert rm.ioctl_request(rm.ESC_RM_FREE, ffi.sizeof("NVOS00_PARAMETERS")) == 0xC0104629
    assert rm.ioctl_request(rm.ESC_RM_MAP_MEMORY, ffi.sizeof("nv_ioctl_nvos33_parameters_with_fd")) == 0xC038464E
    assert rm.ioctl_request(rm.ESC_RM_MAP_MEMORY_DMA, ffi.sizeof("NVOS46_PARAMETERS_580")) == 0xC0404657
    assert rm.ioctl_request(rm.ESC_CARD_INFO, 64 * ffi.sizeof("nv_ioctl_card_info_t")) == 0xD20046C8


def test_rm_errors_name_the_call_and_status():
    with pytest.raises(rm.RmError, match=r"RM_ALLOC class 0x0080 failed: NV_ERR_INSUFFICIENT_PERMISSIONS"):
        rm.rm_check("RM_ALLOC class 0x0080", 0x1B)
    with pytest.raises(OutOfDeviceMemory, match="NV_ERR_NO_MEMORY"):
        rm.rm_check("RM_ALLOC class 0x0040", 0x51)
    rm.rm_check("anything", 0)


def test_va_allocator_alignment_reuse_and_exhaustion():
    va = VaAllocator(0x10000, 0x100000)
    a = va.alloc(0x1000)
    b = va.alloc(0x3000, 0x10000)
    assert a == 0x10000 and b % 0x10000 == 0 and b >= a + 0x1000
    va.free(a)
    assert va.alloc(0x800) == a                # first fit reuses the hole
    va.free(a)
    va.free(b)
    assert va.free_ranges == [(0x10000, 0x100000)] and va.free_B() == 0x100000   # coalesced
    with pytest.raises(OutOfDeviceMemory):
        va.alloc(0x200000)
    with pytest.raises(InvalidArgument):
        va.free(0x12345)
    with pytest.raises(InvalidArgument):
        va.alloc(0x1000, 3)
