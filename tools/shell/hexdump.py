"""hexdump: bytes as the classic offset / hex / ASCII table, addressed by device VA."""

BYTES_PER_LINE = 16


def hexdump(data, base_va: int = 0) -> str:
    """Lines of `ADDRESS  xx xx .. xx  |ascii|` for `data`, the first byte at address base_va.

    Runs of identical full lines after the first are folded into one `*` line (like `hexdump -C`)
    so a mostly empty buffer stays short.
    """
    data = bytes(data)
    lines, previous, folded = [], None, False
    for pos in range(0, len(data), BYTES_PER_LINE):
        chunk = data[pos:pos + BYTES_PER_LINE]
        if chunk == previous and len(chunk) == BYTES_PER_LINE and pos + BYTES_PER_LINE < len(data):
            if not folded:
                lines.append("*")
                folded = True
            continue
        previous, folded = chunk, False
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        hex_part = hex_part[:23] + " " + hex_part[23:] if len(chunk) > 8 else hex_part
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{base_va + pos:012x}  {hex_part:<48}  |{text}|")
    return "\n".join(lines)
