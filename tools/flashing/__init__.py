"""Firmware flashing over USB with pyusb: DFU 1.1, ST DfuSe, and the ASM2464 USB-to-PCIe bridge.

The CLI is tools/flash.py (also `kernelos flash`); the protocol logic lives here, one module per
concept. The tests drive it against virtual devices (tests/flash/), through a pyusb backend.
"""
