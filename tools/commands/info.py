"""`kernelos info`: the devices hal.probe() finds."""

import json

import hal

NAME = "info"
HELP = "list the devices present (vendor, arch, memory) and why absent drivers are absent"


def add_arguments(p):
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def run(args) -> int:
    devices, reasons = hal.probe_report()
    if args.json:
        print(json.dumps({"devices": [d.as_dict() for d in devices], "absent": reasons}, indent=2))
        return 0
    for d in devices:
        print(f"{d.spec:8} {d.vendor:7} {d.arch:12} {d.name}  memory {_fmt_bytes(d.memory_B)}  units {d.compute_units}")
        for key, value in d.extra.items():
            print(f"{'':8} {key}: {value}")
    for prefix, why in reasons.items():
        print(f"{prefix + ':':8} absent: {why}")
    return 0
