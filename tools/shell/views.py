"""Plain-text views of device state for the shell: ring state, signals, memory map, decoded streams."""


def fmt_size(size_B: int) -> str:
    """4096 -> '4 KiB'; sizes that are not whole KiB/MiB/GiB stay in bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size_B >= 1 << shift and size_B % (1 << shift) == 0:
            return f"{size_B >> shift} {unit}"
    return f"{size_B} B"


def fmt_va(va: int) -> str:
    """A device address, zero-padded to 48 bits so columns line up."""
    return f"0x{va:012x}"


def fmt_value(value) -> str:
    """Ints that look like addresses in hex, everything else as is."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 16:
        return f"{value:#x}"
    return str(value)


def ring_line(queue) -> str:
    """'compute0  get=3 put=3 pending=0 ...': a queue's state() as one line, keys in driver order."""
    state = queue.state()
    fields = " ".join(f"{k}={fmt_value(v)}" for k, v in state.items() if k not in ("kind", "index"))
    return f"{queue.kind + str(queue.index):<9} {fields}"


def signal_lines(signals: dict) -> list:
    """'name  va  value' for each {name: Signal}; closed signals say so."""
    lines = []
    for name, sig in signals.items():
        value = "closed" if sig.closed or sig.device.closed else str(sig.value)
        lines.append(f"{name:<9} {fmt_va(sig.va)}  {value}")
    return lines


def memory_map_lines(entries: list, labels: dict) -> list:
    """The device's live allocations, by address, with what the shell knows of each and a total."""
    lines = [f"{'va':<14} {'size':>10}  {'kind':<6} what"]
    total_B = 0
    for e in sorted(entries, key=lambda e: e["va"]):
        lines.append(f"{fmt_va(e['va'])} {fmt_size(e['size_B']):>10}  {e['kind']:<6} {labels.get(e['va'], '')}".rstrip())
        total_B += e["size_B"]
    lines.append(f"{len(entries)} allocations, {fmt_size(total_B)}")
    return lines


def decode_lines(stream) -> list:
    """The stream's recorded hardware commands, one numbered line each."""
    return [f"{i:3}  {line}" for i, line in enumerate(stream.decode())]
