"""`kernelos flash`: the firmware flasher (tools/flash.py) as a kernelos subcommand."""

from tools import flash

NAME = "flash"
HELP = "flash firmware over USB: DFU 1.1 / DfuSe devices, ASM2464 USB-to-PCIe bridges"
DESCRIPTION = flash.DESCRIPTION + "\n" + flash.epilog()


def add_arguments(p):
    flash.add_arguments(p)


def run(args) -> int:
    return flash.run_args(args)
