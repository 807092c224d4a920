"""`kernelos info` lists the cpu device and says why absent drivers are absent."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _kernelos(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "kernelos", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_info_json_lists_cpu_device():
    result = _kernelos("info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    cpu = [d for d in report["devices"] if d["spec"] == "cpu"]
    assert len(cpu) == 1
    assert cpu[0]["vendor"] == "cpu" and cpu[0]["arch"] == f"cpu-{platform.machine()}"
    assert cpu[0]["memory_B"] > 0 and cpu[0]["compute_units"] == len(os.sched_getaffinity(0))
    assert "-O3" in cpu[0]["extra"]["kernel flags"]
    for prefix, why in report["absent"].items():
        assert prefix in ("nv", "amd") and why


def test_info_text_lists_cpu_device():
    result = _kernelos("info")
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("cpu ") and f"cpu-{platform.machine()}" in line for line in result.stdout.splitlines())
