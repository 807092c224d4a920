"""Who the GPU is: device objects, engine classes, UUID, GR limits, and the DeviceInfo that
`hal.probe()` and `kernelos info` show (name, PCI id and bus, memory, SMs, driver, VBIOS, GSP).
"""

import os

from hal import DeviceError, DeviceInfo, DeviceNotFound

from . import rm
from .classes import controls, objects
from .structs import ffi

# Model inputs up to INPUT_WRITE_MAX_B go inline in the compute pushbuffer (I2M, ~7 GB/s), outputs up
# to OUTPUT_IN_PLACE_MAX_B are written by the kernels straight into pinned host memory (PCIe speed, as
# a copy): one compute submit, no copy-engine hand-off (~15 us per direction). `python -m bench.host_io
# sizes` on an H200 (BENCHMARKS.md): inline beats the copy queue up to between 64 and 256 KiB; output
# in place never lost, up to 16 MiB tried; kernels reading inputs in host memory lose badly with reuse.
INPUT_WRITE_MAX_B, OUTPUT_IN_PLACE_MAX_B = 128 << 10, 16 << 20


def driver_version(rmf, client: int) -> str:
    p = rmf.control(client, client, controls.NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION_V2,
                    ffi.new("NV0000_CTRL_SYSTEM_GET_BUILD_VERSION_V2_PARAMS *"), "driver version")
    return ffi.string(p.driverVersionBuffer).decode()


def open_device(rmf, client: int, card) -> tuple:
    """(device, subdevice) handles of the GPU described by a CARD_INFO entry."""
    ids = rmf.control(client, client, controls.NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2,
                      ffi.new("NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS *", {"gpuId": card.gpu_id}), "GPU id info")
    device = rmf.alloc(client, objects.NV01_DEVICE_0, ffi.new("NV0080_ALLOC_PARAMETERS *", {
        "deviceId": ids.deviceInstance, "hClientShare": client}), root=client, what="device")
    subdevice = rmf.alloc(device, objects.NV20_SUBDEVICE_0, ffi.new("NV2080_ALLOC_PARAMETERS *"), root=client,
                          what="subdevice")
    return device, subdevice


def class_list(rmf, client: int, device: int) -> list:
    p = ffi.new("NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS *")
    rmf.control(client, device, controls.NV0080_CTRL_CMD_GPU_GET_CLASSLIST, p, "class list size")
    classes = ffi.new("uint32_t[]", p.numClasses)
    p.classList = int(ffi.cast("uintptr_t", classes))
    rmf.control(client, device, controls.NV0080_CTRL_CMD_GPU_GET_CLASSLIST, p, "class list")
    return list(classes)


def engine_classes(rmf, client: int, device: int) -> dict:
    present = class_list(rmf, client, device)
    out = {}
    for kind, family in (("usermode", objects.USERMODE), ("gpfifo", objects.GPFIFO), ("compute", objects.COMPUTE),
                         ("copy", objects.COPY)):
        out[kind] = objects.pick(family, present)
        if out[kind] is None:
            raise DeviceError(f"this GPU lists no supported {kind} class (known: "
                              f"{', '.join(family.values())}); Ampere or newer is required")
    return out


def copy_engines(rmf, client: int, subdevice: int) -> list:
    """NV2080 engine types of the copy engines present (COPY0..COPY9)."""
    p = rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
                    ffi.new("NV2080_CTRL_GPU_GET_ENGINES_V2_PARAMS *"), "engine list")
    return [e for e in p.engineList[0:p.engineCount] if objects.ENGINE_TYPE_COPY0 <= e <= objects.ENGINE_TYPE_COPY9]


def uuid(rmf, client: int, subdevice: int) -> bytes:
    p = rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GPU_GET_GID_INFO,
                    ffi.new("NV2080_CTRL_GPU_GET_GID_INFO_PARAMS *", {"flags": controls.GID_FORMAT_BINARY,
                                                                      "length": 16}), "GPU UUID")
    return bytes(p.data[0:16])


def gr_info(rmf, client: int, subdevice: int) -> dict:
    wanted = {"sm_version": controls.GR_INFO_SM_VERSION, "max_warps_per_sm": controls.GR_INFO_MAX_WARPS_PER_SM,
              "gpcs": controls.GR_INFO_LITTER_NUM_GPCS, "tpc_per_gpc": controls.GR_INFO_LITTER_NUM_TPC_PER_GPC,
              "sm_per_tpc": controls.GR_INFO_LITTER_NUM_SM_PER_TPC}
    items = ffi.new("NV_CTRL_INFO[]", [{"index": i} for i in wanted.values()])
    rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GR_GET_INFO, ffi.new(
        "NV2080_CTRL_GR_GET_INFO_PARAMS *", {"grInfoListSize": len(wanted),
                                             "grInfoList": int(ffi.cast("uintptr_t", items))}), "GR info")
    out = {k: items[i].data for i, k in enumerate(wanted)}
    sm_order = rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GR_GET_GLOBAL_SM_ORDER,
                           ffi.new("NV2080_CTRL_GR_GET_GLOBAL_SM_ORDER_PARAMS *"), "SM count")
    out["sm_count"] = sm_order.numSm
    return out


def _info_list(rmf, client, subdevice, cmd, struct_name, list_field, indices, what) -> list:
    p = ffi.new(struct_name + " *")
    setattr(p, list_field.replace("List", "ListSize"), len(indices))
    for i, index in enumerate(indices):
        getattr(p, list_field)[i].index = index
    rmf.control(client, subdevice, cmd, p, what)
    return [getattr(p, list_field)[i].data for i in range(len(indices))]


def firmware(rmf, client: int, subdevice: int) -> dict:
    """VBIOS and GSP firmware versions; a control the GPU refuses gives 'unavailable (status)'."""
    out = {}
    try:
        rev, oem = _info_list(rmf, client, subdevice, controls.NV2080_CTRL_CMD_BIOS_GET_INFO_V2,
                              "NV2080_CTRL_BIOS_GET_INFO_V2_PARAMS", "biosInfoList",
                              (controls.BIOS_INFO_REVISION, controls.BIOS_INFO_OEM_REVISION), "VBIOS version")
        out["vbios"] = f"{rev >> 24 & 0xFF:02X}.{rev >> 16 & 0xFF:02X}.{rev >> 8 & 0xFF:02X}.{rev & 0xFF:02X}.{oem & 0xFF:02X}"
    except rm.RmError as e:
        out["vbios"] = f"unavailable ({e.status_name})"
    try:
        p = rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GSP_GET_FEATURES,
                        ffi.new("NV2080_CTRL_GSP_GET_FEATURES_PARAMS *"), "GSP features")
        out["gsp_firmware"] = ffi.string(ffi.cast("char *", p.firmwareVersion)).decode() if p.bValid else "no GSP"
    except rm.RmError as e:
        out["gsp_firmware"] = f"unavailable ({e.status_name})"
    return out


def device_info(rmf, client, device, subdevice, card, index, driver, gr, classes) -> DeviceInfo:
    name = rmf.control(client, subdevice, controls.NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
                       ffi.new("NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS *"), "GPU name")
    total_kb, = _info_list(rmf, client, subdevice, controls.NV2080_CTRL_CMD_FB_GET_INFO_V2,
                           "NV2080_CTRL_FB_GET_INFO_V2_PARAMS", "fbInfoList", (controls.FB_INFO_TOTAL_RAM_SIZE_KB,),
                           "memory size")
    sm = ((gr["sm_version"] >> 8) & 0xF) * 10 + (gr["sm_version"] & 0xF)
    pci = card.pci_info
    extra = {"pci_id": f"{pci.vendor_id:04x}:{pci.device_id:04x}",
             "pci_bus": f"{pci.domain:04x}:{pci.bus:02x}:{pci.slot:02x}.{pci.function}",
             "driver": driver, **firmware(rmf, client, subdevice),
             "classes": ", ".join(f"{k} {v:#06x}" for k, v in classes.items())}
    return DeviceInfo(spec=f"nv:{index}", vendor="nvidia", arch=f"sm_{sm}",
                      name=ffi.string(ffi.cast("char *", name.ascii)).decode(), memory_B=total_kb * 1024,
                      compute_units=gr["sm_count"], extra=extra,
                      input_write_max_B=INPUT_WRITE_MAX_B, output_in_place_max_B=OUTPUT_IN_PLACE_MAX_B)


def probe_all() -> list:
    """DeviceInfo of every NVIDIA GPU, through a short-lived RM client (no channels, no UVM)."""
    try:
        rmf = rm.RmFile()
    except DeviceError as e:
        raise DeviceNotFound(f"no /dev/nvidiactl ({e}): NVIDIA open kernel module not loaded") from None
    try:
        client = rmf.alloc(0, objects.NV01_ROOT_CLIENT, what="client")
        try:
            driver = driver_version(rmf, client)
            out = []
            for index, card in enumerate(rmf.card_info()):
                dev_fd = rm.open_node(f"/dev/nvidia{card.minor_number}")   # RM refuses the device without it
                try:
                    rm.register_fd(dev_fd, rmf.fd)
                    device, subdevice = open_device(rmf, client, card)
                    classes = engine_classes(rmf, client, device)
                    out.append(device_info(rmf, client, device, subdevice, card, index, driver,
                                           gr_info(rmf, client, subdevice), classes))
                finally:
                    os.close(dev_fd)
            return out
        finally:
            rmf.free_client(client)
    finally:
        rmf.close()
