"""cffi declarations of the RM and UVM ioctl structures (x86-64, open kernel module).

Sizes follow the 580 headers (shared/design/nvidia-hopper.md section 3.2); where 570 differs
(NVOS46 56 vs 64 B, NV_VASPACE_ALLOCATION_PARAMETERS 48 vs 56 B) both layouts are declared and
`layout(driver_major)` picks the names to use. tests/nvidia/test_structs.py checks every size.
"""

from .cache import load_ffi

CDEF = r"""
typedef uint32_t NvHandle;

/* --- RM escapes --------------------------------------------------------------------------- */
typedef struct { NvHandle hRoot, hObjectParent, hObjectOld; uint32_t status; } NVOS00_PARAMETERS;
typedef struct { NvHandle hRoot, hObjectParent, hObjectNew; uint32_t hClass; uint32_t flags;
                 uint64_t pMemory; uint64_t limit; uint32_t status; } NVOS02_PARAMETERS;
typedef struct { NVOS02_PARAMETERS params; int fd; } nv_ioctl_nvos02_parameters_with_fd;
typedef struct { NvHandle hRoot, hObjectParent, hObjectNew; uint32_t hClass; uint64_t pAllocParms;
                 uint32_t paramsSize; uint32_t status; } NVOS21_PARAMETERS;
typedef struct { NvHandle hClient, hDevice, hMemory; uint64_t offset; uint64_t length; uint64_t pLinearAddress;
                 uint32_t status; uint32_t flags; } NVOS33_PARAMETERS;
typedef struct { NVOS33_PARAMETERS params; int fd; } nv_ioctl_nvos33_parameters_with_fd;
typedef struct { NvHandle hClient, hDevice, hDma, hMemory; uint64_t offset; uint64_t length; uint32_t flags;
                 uint32_t flags2; uint32_t kindOverride; uint64_t dmaOffset; uint32_t status; } NVOS46_PARAMETERS_580;
typedef struct { NvHandle hClient, hDevice, hDma, hMemory; uint64_t offset; uint64_t length; uint32_t flags;
                 uint64_t dmaOffset; uint32_t status; } NVOS46_PARAMETERS_570;
typedef struct { NvHandle hClient, hObject; uint32_t cmd; uint32_t flags; uint64_t params; uint32_t paramsSize;
                 uint32_t status; } NVOS54_PARAMETERS;
typedef struct { int ctl_fd; } nv_ioctl_register_fd_t;
typedef struct { uint32_t cmd; uint32_t reply; char versionString[64]; } nv_ioctl_rm_api_version_t;
typedef struct { uint32_t domain; uint8_t bus, slot, function; uint16_t vendor_id, device_id; } nv_pci_info_t;
typedef struct { uint8_t valid; nv_pci_info_t pci_info; uint32_t gpu_id; uint16_t interrupt_line;
                 uint64_t reg_address; uint64_t reg_size; uint64_t fb_address; uint64_t fb_size;
                 uint32_t minor_number; uint8_t dev_name[10]; } nv_ioctl_card_info_t;

/* --- allocation parameters ------------------------------------------------------------------ */
typedef struct { uint32_t deviceId; NvHandle hClientShare, hTargetClient, hTargetDevice; uint32_t flags;
                 uint64_t vaSpaceSize; uint64_t vaStartInternal; uint64_t vaLimitInternal; uint32_t vaMode; }
                 NV0080_ALLOC_PARAMETERS;
typedef struct { uint32_t subDeviceId; } NV2080_ALLOC_PARAMETERS;
typedef struct { uint64_t offset; uint64_t limit; NvHandle hVASpace; } NV_MEMORY_VIRTUAL_ALLOCATION_PARAMS;
typedef struct { uint32_t index; uint32_t flags; uint64_t vaSize; uint64_t vaStartInternal; uint64_t vaLimitInternal;
                 uint32_t bigPageSize; uint64_t vaBase; uint32_t pasid; } NV_VASPACE_ALLOCATION_PARAMETERS_580;
typedef struct { uint32_t index; uint32_t flags; uint64_t vaSize; uint64_t vaStartInternal; uint64_t vaLimitInternal;
                 uint32_t bigPageSize; uint64_t vaBase; } NV_VASPACE_ALLOCATION_PARAMETERS_570;
typedef struct { NvHandle hObjectError, hObjectEccError, hVASpace; uint32_t engineType;
                 uint8_t bIsCallingContextVgpuPlugin; } NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS;
typedef struct { NvHandle hVASpace; uint32_t flags; uint32_t subctxId; } NV_CTXSHARE_ALLOCATION_PARAMETERS;
typedef struct { uint32_t owner, type, flags, width, height; int32_t pitch; uint32_t attr, attr2, format,
                 comprCovg, zcullCovg; uint64_t rangeLo; uint64_t rangeHi; uint64_t size; uint64_t alignment;
                 uint64_t offset; uint64_t limit; uint64_t address; uint32_t ctagOffset; NvHandle hVASpace;
                 uint32_t internalflags; uint32_t tag; uint32_t numaNode; } NV_MEMORY_ALLOCATION_PARAMS;
typedef struct { uint64_t base; uint64_t size; uint32_t addressSpace; uint32_t cacheAttrib; } NV_MEMORY_DESC_PARAMS;
typedef struct { NvHandle hObjectError, hObjectBuffer; uint64_t gpFifoOffset; uint32_t gpFifoEntries; uint32_t flags;
                 NvHandle hContextShare, hVASpace; NvHandle hUserdMemory[8]; uint64_t userdOffset[8];
                 uint32_t engineType, cid, subDeviceId; NvHandle hObjectEccError;
                 NV_MEMORY_DESC_PARAMS instanceMem, userdMem, ramfcMem, mthdbufMem;
                 NvHandle hPhysChannelGroup; uint32_t internalFlags;
                 NV_MEMORY_DESC_PARAMS errorNotifierMem, eccErrorNotifierMem;
                 uint32_t ProcessID, SubProcessID; uint32_t encryptIv[3]; uint32_t decryptIv[3];
                 uint32_t hmacNonce[8]; uint32_t tpcConfigID; } NV_CHANNEL_ALLOC_PARAMS;
typedef struct { uint8_t bBar1Mapping; uint8_t bPriv; } NV_HOPPER_USERMODE_A_PARAMS;
typedef struct { uint32_t version; uint32_t engineType; } NVB0B5_ALLOCATION_PARAMETERS;
typedef struct { NvHandle hDebuggerClient_Obsolete, hAppClient, hClass3dObject; } NV83DE_ALLOC_PARAMETERS;
typedef struct { uint64_t timeStamp; uint32_t info32; uint16_t info16; uint16_t status; } NvNotification;

/* --- controls ------------------------------------------------------------------------------- */
typedef struct { uint32_t index; uint32_t data; } NV_CTRL_INFO;
typedef struct { char driverVersionBuffer[256]; char versionBuffer[256]; char driverBranch[256]; char titleBuffer[256];
                 uint32_t changelistNumber; uint32_t officialChangelistNumber; }
                 NV0000_CTRL_SYSTEM_GET_BUILD_VERSION_V2_PARAMS;
typedef struct { uint32_t gpuId, gpuFlags, deviceInstance, subDeviceInstance; uint32_t sliStatus;
                 uint32_t boardId, gpuInstance; int32_t numaId; } NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS;
typedef struct { uint32_t numClasses; uint64_t classList; } NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS;
typedef struct { uint32_t grInfoListSize; uint64_t grInfoList; uint8_t grRouteInfo[16]; } NV2080_CTRL_GR_GET_INFO_PARAMS;
typedef struct { uint32_t index, flags, length; uint8_t data[256]; } NV2080_CTRL_GPU_GET_GID_INFO_PARAMS;
typedef struct { uint32_t gpuNameStringFlags; uint8_t ascii[128]; } NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS;
typedef struct { uint32_t fbInfoListSize; NV_CTRL_INFO fbInfoList[128]; } NV2080_CTRL_FB_GET_INFO_V2_PARAMS;
typedef struct { uint32_t biosInfoListSize; NV_CTRL_INFO biosInfoList[15]; } NV2080_CTRL_BIOS_GET_INFO_V2_PARAMS;
typedef struct { uint32_t gspFeatures; uint8_t bValid; uint8_t bDefaultGspRmGpu; uint8_t firmwareVersion[64]; }
                 NV2080_CTRL_GSP_GET_FEATURES_PARAMS;
typedef struct { uint16_t ids[9]; } NV2080_SM_ORDER_ENTRY;
typedef struct { NV2080_SM_ORDER_ENTRY globalSmId[512]; uint16_t numSm; uint16_t numTpc; uint64_t grRouteInfo[2]; }
                 NV2080_CTRL_GR_GET_GLOBAL_SM_ORDER_PARAMS;
typedef struct { uint32_t engineCount; uint32_t engineList[84]; } NV2080_CTRL_GPU_GET_ENGINES_V2_PARAMS;
typedef struct { uint32_t workSubmitToken; } NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS;
typedef struct { uint8_t bEnable; uint8_t bSkipSubmit; uint8_t bSkipEnable; } NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS;

/* --- UVM ------------------------------------------------------------------------------------ */
typedef struct { uint8_t uuid[16]; } NvProcessorUuid;
typedef struct { uint64_t flags; uint32_t rmStatus; } UVM_INITIALIZE_PARAMS;
typedef struct { int32_t uvmFd; uint32_t rmStatus; } UVM_MM_INITIALIZE_PARAMS;
typedef struct { NvProcessorUuid gpu_uuid; uint8_t numaEnabled; int32_t numaNodeId; int32_t rmCtrlFd; NvHandle hClient;
                 NvHandle hSmcPartRef; uint32_t rmStatus; } UVM_REGISTER_GPU_PARAMS;
typedef struct { NvProcessorUuid gpu_uuid; uint32_t rmStatus; } UVM_UNREGISTER_GPU_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; int32_t rmCtrlFd; NvHandle hClient; NvHandle hVaSpace; uint32_t rmStatus; }
                 UVM_REGISTER_GPU_VASPACE_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; int32_t rmCtrlFd; NvHandle hClient; NvHandle hChannel; uint64_t base;
                 uint64_t length; uint32_t rmStatus; } UVM_REGISTER_CHANNEL_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; NvHandle hClient; NvHandle hChannel; uint32_t rmStatus; }
                 UVM_UNREGISTER_CHANNEL_PARAMS;
typedef struct { uint64_t base; uint64_t length; uint32_t rmStatus; } UVM_CREATE_EXTERNAL_RANGE_PARAMS;
typedef struct { NvProcessorUuid gpuUuid; uint32_t gpuMappingType, gpuCachingType, gpuFormatType, gpuElementBits,
                 gpuCompressionType; } UvmGpuMappingAttributes;
typedef struct { uint64_t base; uint64_t length; uint64_t offset; UvmGpuMappingAttributes perGpuAttributes[256];
                 uint64_t gpuAttributesCount; int32_t rmCtrlFd; NvHandle hClient; NvHandle hMemory; uint32_t rmStatus; }
                 UVM_MAP_EXTERNAL_ALLOCATION_PARAMS;
typedef struct { uint64_t base; uint64_t length; uint32_t rmStatus; } UVM_FREE_PARAMS;

/* --- libc ----------------------------------------------------------------------------------- */
int ioctl(int fd, unsigned long request, void *arg);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int munmap(void *addr, size_t length);
int madvise(void *addr, size_t length, int advice);
"""

ffi = load_ffi("structs", CDEF)
libc = ffi.dlopen(None)


def layout(driver_major: int) -> dict:
    """Names of the version-dependent structures for a driver branch (580+ or older)."""
    suffix = "_580" if driver_major >= 580 else "_570"
    return {"NVOS46_PARAMETERS": "NVOS46_PARAMETERS" + suffix,
            "NV_VASPACE_ALLOCATION_PARAMETERS": "NV_VASPACE_ALLOCATION_PARAMETERS" + suffix}
