"""Encodings of the NVIDIA driver, checked without a GPU (these run everywhere).

QMD field positions are checked against byte offsets and bit ranges read from the public headers
(open-gpu-doc clc6c0qmd.h, clcbc0qmd.h, clcdc0qmd.h; nvidia-hopper.md 1.2), written here
independently of the driver's tables; pushbuffers round-trip through the decoder.
"""

import random
import struct

import pytest

from drivers.nvidia import decode, pushbuf, qmd
from drivers.nvidia.classes import qmd_v03, qmd_v04, qmd_v05
from hal import InvalidArgument

TABLES = {"v03": qmd_v03, "v04": qmd_v04, "v05": qmd_v05}


def dword(q, i):
    return struct.unpack_from("<I", q.to_bytes(), 4 * i)[0]


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_qmd_fields_do_not_overlap(table):
    ranges = [(lo, hi, name) for name, (hi, lo) in table.FIELDS.items()]
    for name, (hi, lo, stride) in table.INDEXED.items():
        ranges += [(lo + i * stride, hi + i * stride, f"{name}({i})") for i in range(8 if stride < 64 else 4)]
    ranges.sort()
    for (lo1, hi1, n1), (lo2, hi2, n2) in zip(ranges, ranges[1:]):
        assert hi1 < lo2, f"{n1} [{hi1}:{lo1}] overlaps {n2} [{hi2}:{lo2}]"
    assert ranges[-1][1] < table.SIZE_B * 8


# (field, value, dword index, expected dword) from the public headers
V04_POSITIONS = [
    ("GRID_WIDTH", 0x12345678, 32, 0x12345678),            # byte 128
    ("CTA_THREAD_DIMENSION0", 0x1FF, 36, 0x1FF),            # byte 144
    ("CTA_THREAD_DIMENSION2", 7, 37, 7),                    # byte 148
    ("RELEASE0_ADDR_LOWER", 0xCAFE0, 20, 0xCAFE0),          # byte 80
    ("RELEASE0_PAYLOAD_LOWER", 0xABCD, 22, 0xABCD),         # byte 88
    ("DEPENDENT_QMD0_POINTER", 0x7654321, 14, 0x7654321),   # byte 56
    ("PROGRAM_ADDRESS_LOWER", 0x400100, 38, 0x400100),      # byte 152
    ("QMD_TYPE", 2, 0, 2 << 23),                            # 25:23
    ("QMD_MAJOR_VERSION", 4, 18, 4 << 4),                   # 583:580
    ("REGISTER_COUNT", 0x1FF, 37, 0x1FF << 16),             # 1208:1200
    ("SHARED_MEMORY_SIZE", 0x3FFFF, 18, 0x3FFFF << 8),      # 601:584
]
V03_POSITIONS = [
    ("GRID_WIDTH", 0x12345678, 12, 0x12345678),             # CTA_RASTER_WIDTH 415:384
    ("CTA_THREAD_DIMENSION0", 0x3FF, 18, 0x3FF << 16),      # 607:592
    ("REGISTER_COUNT", 0x1FF, 20, 0x1FF << 8),              # REGISTER_COUNT_V 656:648
    ("PROGRAM_ADDRESS_LOWER", 0x400100, 48, 0x400100),      # 1567:1536
    ("IS_QUEUE", 1, 4, 1 << 8),                             # 136
    ("QMD_MAJOR_VERSION", 3, 18, 3 << 4),                   # 583:580
]
V05_POSITIONS = [
    ("GRID_WIDTH", 0x12345678, 39, 0x12345678),             # 1279:1248
    ("CTA_THREAD_DIMENSION0", 0x3FF, 34, 0x3FF),            # 1103:1088
    ("QMD_TYPE", 2, 4, 2 << 23),                            # 153:151
    ("QMD_MAJOR_VERSION", 5, 14, 5 << 20),                  # 471:468
    ("PROGRAM_ADDRESS_LOWER", 0x40010, 32, 0x40010),        # PROGRAM_ADDRESS_LOWER_SHIFTED4 1055:1024
]


@pytest.mark.parametrize("table,positions", [(qmd_v04, V04_POSITIONS), (qmd_v03, V03_POSITIONS),
                                             (qmd_v05, V05_POSITIONS)], ids=["v04", "v03", "v05"])
def test_qmd_bit_positions_match_the_headers(table, positions):
    for field, value, index, expected in positions:
        q = qmd.Qmd(table).set(field, value)
        assert dword(q, index) == expected, field
        assert q.get(field) == value
        assert sum(q.to_bytes()) == sum(struct.pack("<I", expected)), f"{field} touched other bytes"


def test_qmd_constant_buffer_addresses_per_version():
    q4 = qmd.Qmd(qmd_v04).set_address("CONSTANT_BUFFER_ADDR", 0x12_3456_7800, 6, index=1)
    assert dword(q4, 48 + 2) == (0x12_3456_7800 >> 6) & 0xFFFFFFFF        # byte 192 + 8*1
    q3 = qmd.Qmd(qmd_v03).set_address("CONSTANT_BUFFER_ADDR", 0x12_3456_7800, 0, index=0)
    assert dword(q3, 32) == 0x34567800 and dword(q3, 33) & 0x1FFFF == 0x12  # 1055:1024, 1072:1056


def test_qmd_field_overflow_is_refused():
    with pytest.raises(InvalidArgument, match="REGISTER_COUNT"):
        qmd.Qmd(qmd_v04).set("REGISTER_COUNT", 512)


def test_qmd_build_for_hopper_sets_what_ran_on_the_h100():
    q = qmd.build(qmd_v04, program_va=0x40_0010_0000, program_size_B=0x300, regs=16, barriers=1, shared_B=0x800,
                  local_B=0x240, sass=0x90, cbufs={0: (0x40_0020_0000, 0x220)}, grid=(3, 2, 1), block=(32, 2, 1))
    assert (q.get("QMD_MAJOR_VERSION"), q.get("QMD_TYPE"), q.get("SASS_VERSION")) == (4, 2, 0x90)
    assert (q.get("GRID_WIDTH"), q.get("GRID_HEIGHT"), q.get("CTA_THREAD_DIMENSION1")) == (3, 2, 2)
    assert q.get("SHARED_MEMORY_SIZE") == 0xC00            # 1 KB reserved + 2 KB static
    assert q.get("MIN_SM_CONFIG_SHARED_MEM_SIZE") == 8 // 4 + 1
    assert q.get("CONSTANT_BUFFER_ADDR_LOWER", 0) == 0x40_0020_0000 >> 6 & 0xFFFFFFFF
    assert q.get("CONSTANT_BUFFER_SIZE_SHIFTED4", 0) == 0x22
    assert q.get("CONSTANT_BUFFER_VALID", 0) == 1 and q.get("CONSTANT_BUFFER_VALID", 1) == 0
    qmd.chain(q, 0x40_0030_0100)
    assert q.get("DEPENDENT_QMD0_POINTER") == 0x40_0030_01 and q.get("DEPENDENT_QMD0_ENABLE") == 1
    qmd.release(q, 0x40_0040_0010, 7)
    assert q.get("RELEASE0_ENABLE") == 1 and q.get("RELEASE0_PAYLOAD_LOWER") == 7
    assert q.get("CWD_MEMBAR_TYPE") == qmd.CWD_MEMBAR_L1_SYSMEMBAR


def test_carveout_holds_as_many_blocks_as_threads_and_registers_allow():
    """A 38 KB GEMM block of 256 threads at 47 registers: 5 fit by registers, so 190 KB -> the 196 KB carveout
    (the smallest one holding a single block, 64 KB, left 1 block per SM); capped at 228 KB; a block with
    no static shared memory keeps the small carveout."""
    smem_B = 0x400 + 38 * 1024
    assert qmd.blocks_per_sm(256, 47) == 5 and qmd.blocks_per_sm(1024, 32) == 2 and qmd.blocks_per_sm(32, 8) == 32
    assert qmd.sm_config(qmd.carveout_target_B(smem_B, 256, 47)) == 196 // 4 + 1
    assert qmd.carveout_target_B(100 * 1024, 256, 32) == 228 * 1024
    q = qmd.build(qmd_v04, program_va=0x40_0010_0000, program_size_B=0x300, regs=47, barriers=1, shared_B=38 * 1024,
                  local_B=0, sass=0x90, cbufs={}, grid=(96, 1, 1), block=(256, 1, 1))
    assert q.get("MIN_SM_CONFIG_SHARED_MEM_SIZE") == 64 // 4 + 1
    assert q.get("TARGET_SM_CONFIG_SHARED_MEM_SIZE") == q.get("MAX_SM_CONFIG_SHARED_MEM_SIZE") == 196 // 4 + 1
    assert qmd.sm_config(qmd.carveout_target_B(0x400, 256, 32)) == 8 // 4 + 1


def test_sm_config_and_sass_version():
    assert qmd.sm_config(0) == 1 and qmd.sm_config(32 * 1024) == 9 and qmd.sm_config(100 * 1024) == 0x1A
    assert qmd.sm_config(228 * 1024) == 58
    with pytest.raises(InvalidArgument):
        qmd.sm_config(229 * 1024)
    assert qmd.sass_version(0x900) == 0x90 and qmd.sass_version(0x806) == 0x86


def test_pushbuffer_round_trip_random():
    rng = random.Random(1234)
    from drivers.nvidia.classes import compute_cbc0, copy_c8b5
    pb, expected = pushbuf.Pushbuffer(), []
    for _ in range(200):
        sub, table = rng.choice([(1, compute_cbc0.METHODS), (4, copy_c8b5.METHODS)])
        method = rng.choice([m for m in table if m >= 0x100])
        if rng.random() < 0.3:
            value = rng.randrange(0x2000)
            pb.immediate(sub, method, value)
            expected.append((decode.method_name(sub, method), value))
        else:
            data = [rng.randrange(1 << 32) for _ in range(rng.randrange(1, 4))]
            pb.method(sub, method, *data)
            expected += [(decode.method_name(sub, method + 4 * i), d) for i, d in enumerate(data)]
    lines = decode.decode(pb.words)
    assert len(lines) == len(expected)
    for line, (name, value) in zip(lines, expected):
        assert line.startswith(f"{name} = {value:#x}"), line


def test_semaphore_methods_decode_with_fields():
    pb = pushbuf.Pushbuffer()
    at = pb.release(0x12_3456_7890, 0x1_0000_0002)
    pb.acquire(0x100, 5)
    assert (pb.words[at], pb.words[at + 1]) == (2, 1)
    lines = decode.decode(pb.words)
    assert lines[4] == "host.SEM_EXECUTE = 0x3100001 (RELEASE|WFI|64BIT|TIMESTAMP)"   # the HW-verified value
    assert lines[5].startswith("host.NON_STALL_INTERRUPT")
    assert lines[-1] == "host.SEM_EXECUTE = 0x1000003 (ACQ_CIRC_GEQ|64BIT)"
    with pytest.raises(InvalidArgument, match="16-byte"):
        pb.release(0x108, 1)


def test_bad_headers_and_truncation():
    with pytest.raises(InvalidArgument):
        pushbuf.header(pushbuf.SEC_OP_INC, 8, 0x100, 1)
    with pytest.raises(InvalidArgument):
        pushbuf.Pushbuffer().immediate(1, 0x100, 0x2000)
    words = pushbuf.Pushbuffer().method(1, 0x2B4, 1, 2, 3).words[:-1]
    with pytest.raises(ValueError, match="wants 3 words"):
        decode.decode(words)
    with pytest.raises(ValueError, match="not a method header"):
        decode.decode([0xE0000000])


def test_gp_entry_encoding():
    assert pushbuf.gp_entry(0x12_3456_7800, 7) == 0x12_3456_7800 | (7 << 42)
    with pytest.raises(InvalidArgument):
        pushbuf.gp_entry(1 << 40, 1)        # only 40 VA bits fit in a GP entry
    with pytest.raises(InvalidArgument):
        pushbuf.gp_entry(0x1002, 1)
