"""Pushbuffer decoder: words -> method names and fields, for the shell and for failing tests.

`decode(words, classes)` returns one line per method write, naming the subchannel's class
(subchannel -> method table) and decoding the fields of SEM_EXECUTE and LAUNCH_DMA.
"""

from .classes import compute_cbc0, copy_c8b5, host_c86f
from .pushbuf import SEC_OP_IMMD, SEC_OP_INC, SEC_OP_NON_INC, SEC_OP_ONE_INC

SUBCHANNEL_TABLES = {compute_cbc0.SUBCHANNEL: ("compute", compute_cbc0.METHODS),
                     copy_c8b5.SUBCHANNEL: ("copy", copy_c8b5.METHODS)}
SEC_OP_NAMES = {SEC_OP_INC: "INC", SEC_OP_NON_INC: "NON_INC", SEC_OP_IMMD: "IMMD", SEC_OP_ONE_INC: "ONE_INC"}


def method_name(subchannel: int, method: int) -> str:
    if method < 0x100:
        return "host." + host_c86f.METHODS.get(method, f"{method:#x}")
    engine, table = SUBCHANNEL_TABLES.get(subchannel, (f"sub{subchannel}", {}))
    return f"{engine}.{table.get(method, f'{method:#06x}')}"


def fields(name: str, value: int) -> str:
    if name == "host.SEM_EXECUTE":
        parts = [host_c86f.SEM_OPERATION.get(value & 7, f"OP{value & 7}")]
        parts += [flag for bit, flag in ((host_c86f.SEM_RELEASE_WFI, "WFI"), (host_c86f.SEM_PAYLOAD_SIZE_64BIT, "64BIT"),
                                         (host_c86f.SEM_RELEASE_TIMESTAMP, "TIMESTAMP")) if value & bit]
        return " (" + "|".join(parts) + ")"
    if name == "copy.LAUNCH_DMA":
        kinds = {1: "PIPELINED", 2: "NON_PIPELINED"}
        parts = [kinds.get(value & 3, "NONE")] + [flag for bit, flag in (
            (copy_c8b5.SRC_MEMORY_LAYOUT_PITCH, "SRC_PITCH"), (copy_c8b5.DST_MEMORY_LAYOUT_PITCH, "DST_PITCH"),
            (1 << 2, "FLUSH"), (3 << 3, "SEMAPHORE")) if value & bit]
        return " (" + "|".join(parts) + ")"
    if name == "compute.LAUNCH_DMA":
        return " (" + "|".join(["PITCH" if value & 1 else "BLOCKLINEAR"] + (["NO_SYSMEMBAR"] if value & 0x40 else [])) + ")"
    if name == "compute.SEND_PCAS_A":
        return f" (QMD at {value << 8:#x})"
    return ""


def decode(words) -> list:
    """Human-readable lines for a pushbuffer; raises ValueError on a truncated or unknown header."""
    lines, i, words = [], 0, list(words)
    while i < len(words):
        h = words[i]
        sec_op, count, subch, method = h >> 29, (h >> 16) & 0x1FFF, (h >> 13) & 7, (h & 0xFFF) << 2
        if sec_op == SEC_OP_IMMD:
            name = method_name(subch, method)
            lines.append(f"{name} = {count:#x}{fields(name, count)} [immd]")
            i += 1
            continue
        if sec_op not in SEC_OP_NAMES:
            raise ValueError(f"word {i}: {h:#010x} is not a method header (SEC_OP {sec_op})")
        if i + 1 + count > len(words):
            raise ValueError(f"word {i}: {SEC_OP_NAMES[sec_op]} header wants {count} words, {len(words) - i - 1} left")
        if sec_op == SEC_OP_NON_INC and method_name(subch, method) == "compute.LOAD_INLINE_DATA":
            lines.append(f"compute.LOAD_INLINE_DATA x {count} words [non_inc]")     # data, not methods
            i += 1 + count
            continue
        for k in range(count):
            step = {SEC_OP_INC: k, SEC_OP_NON_INC: 0, SEC_OP_ONE_INC: min(k, 1)}[sec_op]
            name = method_name(subch, method + 4 * step)
            value = words[i + 1 + k]
            lines.append(f"{name} = {value:#x}{fields(name, value)}")
        i += 1 + count
    return lines
