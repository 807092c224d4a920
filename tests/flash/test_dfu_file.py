"""The .dfu suffix, its CRC, and the DfuSe container (file formats only, no device)."""

import os
import struct

import pytest

from tools.flashing import dfu_file
from tools.flashing.errors import DeviceMismatch, FirmwareFileError


def crc32_reflected_no_final_xor(data: bytes) -> int:
    """Independent bitwise reference of dfu-util's CRC rule (poly 0xEDB88320, init ~0, no final XOR)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc


def test_suffix_crc_matches_bitwise_reference_and_layout():
    payload = os.urandom(777)
    data = dfu_file.add_suffix(payload, 0x1209, 0x70D0, 0x0102)
    assert len(data) == len(payload) + 16
    bcd, pid, vid, bcd_dfu, sig, length, crc = struct.unpack("<HHHH3sBI", data[-16:])
    assert (bcd, pid, vid, bcd_dfu, sig, length) == (0x0102, 0x70D0, 0x1209, 0x0100, b"UFD", 16)
    assert crc == crc32_reflected_no_final_xor(data[:-4])
    f = dfu_file.load(data)
    assert f.payload == payload and f.suffix.id_vendor == 0x1209


@pytest.mark.parametrize("where", [0, 100, -16, -6, -1])
def test_any_flipped_byte_is_refused_as_damaged(where):
    data = bytearray(dfu_file.add_suffix(os.urandom(300), 0x1209, 0x70D0))
    data[where] ^= 0x40
    with pytest.raises(FirmwareFileError, match="CRC mismatch|invalid|bcdDFU|no DFU suffix"):
        dfu_file.load(bytes(data))


def test_file_without_suffix_needs_explicit_permission():
    raw = os.urandom(64)
    with pytest.raises(FirmwareFileError, match="no DFU suffix.*--allow-no-suffix"):
        dfu_file.load(raw)
    assert dfu_file.load(raw, allow_no_suffix=True).payload == raw


def test_suffix_device_match_rules():
    s = dfu_file.load(dfu_file.add_suffix(b"x" * 10, 0x1209, 0x70D0, 0x0102)).suffix
    s.check_device([(0x1209, 0x70D0, 0x0102)])
    s.check_device([(0x1209, 0x70D1, 0x0102), (0x1209, 0x70D0, 0x0999)])   # runtime IDs + DFU-mode bcd
    with pytest.raises(DeviceMismatch, match="1209:70d0.*use the firmware built"):
        s.check_device([(0x1209, 0x7777, 0x0102)])
    with pytest.raises(DeviceMismatch, match="bcdDevice 0x0102"):
        s.check_device([(0x1209, 0x70D0, 0x0200)])
    wildcard = dfu_file.load(dfu_file.add_suffix(b"x" * 10)).suffix
    wildcard.check_device([(0xABCD, 0x1234, 0x0001)])


def test_dfuse_container_round_trip_and_truncation():
    elems = [(0x08000800, os.urandom(1500)), (0x08002000, os.urandom(10))]
    payload = dfu_file.build_dfuse([dfu_file.DfuseTarget(0, "Internal Flash", elems)])
    (t,) = dfu_file.parse_dfuse(payload)
    assert t.alt == 0 and t.name == "Internal Flash" and t.elements == elems
    for cut in (5, 11, 11 + 274 + 4, len(payload) - 1):
        with pytest.raises(FirmwareFileError):
            dfu_file.parse_dfuse(payload[:cut])
    bad = bytearray(payload)
    bad[11:17] = b"Tarxet"
    with pytest.raises(FirmwareFileError, match="Target"):
        dfu_file.parse_dfuse(bytes(bad))
