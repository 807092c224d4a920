"""tools/flash.py against the test models, for a demo without hardware (state is not kept
between runs: every run starts from fresh models).

    python -m tests.flash.simulate samples DIR   write app.dfu (for the DFU model) and bridge-v0.2.bin
    python -m tests.flash.simulate ARGS...       run `flash.py ARGS` with three virtual devices present:
                                                 a DFU 1.1 device (runtime mode), an ST DfuSe ROM
                                                 bootloader and an ASM2464 bridge running "custom v0.1"
"""

import os
import random
import sys

from tools import flash
from tools.flashing import bridge_image, dfu_file

from .model_bridge import BridgeModel
from .model_dfu import DfuModel
from .model_dfuse import DfuseModel
from .virtual_usb import VirtualUsbBackend


def _bytes(seed: int, size_B: int) -> bytes:
    return random.Random(seed).randbytes(size_B)


def models():
    dfu = DfuModel(firmware=_bytes(1, 6000))
    bridge = BridgeModel(flash_image=bridge_image.build(b"custom v0.1\0" + _bytes(2, 3000)), config=_bytes(3, 256))
    return [dfu, DfuseModel(), bridge]


def write_samples(directory: str):
    os.makedirs(directory, exist_ok=True)
    dfu = DfuModel()
    files = {"app.dfu": dfu_file.add_suffix(_bytes(4, 9000), dfu.vid, dfu.runtime_pid, dfu.bcd_device),
             "bridge-v0.2.bin": bridge_image.build(b"custom v0.2\0" + _bytes(5, 3500))}
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        print(os.path.join(directory, name))


def main(argv) -> int:
    if argv[:1] == ["samples"] and len(argv) == 2:
        write_samples(argv[1])
        return 0
    return flash.main(argv, backend=VirtualUsbBackend(*models()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
