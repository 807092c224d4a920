"""The `kernelos` subcommands of the core: boot (counted and serving), run, inspect, request; damaged
images refused before any device work; wrong inputs named."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from boot.protocol import default_socket_path

from .models import mlp_inputs, mlp_reference

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def kernelos(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernelos", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=timeout)


def test_boot_with_count_reports_self_test_and_timings(mlp_image):
    path, _ = mlp_image
    r = kernelos("boot", path, "--device", "cpu", "--count", 50)
    assert r.returncode == 0, r.stderr
    assert re.search(r"self-test PASS: max \|out - golden\| = [0-9.e-]+", r.stdout)
    first = re.search(r"time from process start to first result: ([0-9.]+) (ms|us)", r.stdout)
    assert first and 0 < float(first.group(1))
    assert re.search(r"steady-state latency: median [0-9.]+ (us|ms) per inference over 50", r.stdout)
    assert "verified" in r.stdout and "device cpu" in r.stdout and "arena" in r.stdout


def test_boot_refuses_a_damaged_image_before_device_work(mlp_image, tmp_path):
    path, _ = mlp_image
    data = bytearray(Path(path).read_bytes())
    data[-10] ^= 0xFF  # inside the last golden output
    bad = tmp_path / "bad.kimg"
    bad.write_bytes(bytes(data))
    r = kernelos("boot", bad, "--count", 1)
    assert r.returncode == 2 and "ImageError" in r.stderr and "SHA-256 mismatch" in r.stderr
    assert "device" not in r.stdout  # nothing past verification ran


def test_run_writes_outputs_and_names_expected_inputs(mlp_image, tmp_path):
    path, weights = mlp_image
    x = mlp_inputs(4, np.random.default_rng(21))["x"]
    np.save(tmp_path / "x.npy", x)
    r = kernelos("run", path, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    ref = mlp_reference(x, weights)
    for name in ("y", "hidden"):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), ref[name], rtol=1e-5, atol=1e-5)
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    r = kernelos("run", path, "--input", f"x={tmp_path / 'x64.npy'}", "--output-dir", tmp_path / "o2")
    assert r.returncode == 2 and "input 'x' is float64[4, 16]; model 'mlp2' takes {x: float32[4, 16]}" in r.stderr
    r = kernelos("run", path, "--input", f"image={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "o3")
    assert r.returncode == 2 and "takes inputs {x: float32[4, 16]}; got ['image']" in r.stderr
    r = kernelos("run", path, "--input", "x", "--output-dir", tmp_path / "o4")
    assert r.returncode == 2 and "NAME=FILE.npy" in r.stderr


def test_inspect_json_and_text(mlp_image):
    path, _ = mlp_image
    r = kernelos("inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["targets"] == ["cpu-x86_64"] and doc["manifest"]["model"]["name"] == "mlp2"
    assert [s["kind"] for s in doc["sections"]][:2] == ["manifest", "kernel"]
    assert all(len(s["sha256"]) == 64 for s in doc["sections"])
    r = kernelos("inspect", path)
    assert r.returncode == 0 and "layer1: launch dense" in r.stdout and "sha256" in r.stdout


def test_boot_serves_until_interrupted_and_request_talks_to_it(mlp_image, tmp_path):
    path, weights = mlp_image
    sock = default_socket_path(path)
    proc = subprocess.Popen([sys.executable, "-m", "kernelos", "boot", str(path), "--device", "cpu", "--tcp", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert os.path.exists(sock), proc.stderr.read() if proc.poll() is not None else "no socket"
        x = mlp_inputs(4, np.random.default_rng(22))["x"]
        np.save(tmp_path / "x.npy", x)
        r = kernelos("request", path, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", tmp_path / "out")
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), mlp_reference(x, weights)["y"], rtol=1e-5, atol=1e-5)
        r = kernelos("request", sock, "--input", f"x={tmp_path / 'x.npy'}", "--input", f"z={tmp_path / 'x.npy'}")
        assert r.returncode == 2 and "InvalidArgument" in r.stderr and "takes inputs {x: float32[4, 16]}" in r.stderr
        r = kernelos("request", sock, "--stats")
        assert r.returncode == 0 and json.loads(r.stdout)["count"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "serving 'mlp2' on" in out and "stopping: 1 inferences served" in out
    assert not os.path.exists(sock)


def test_request_without_a_server_says_so(tmp_path):
    r = kernelos("request", tmp_path / "none.sock", "--stats")
    assert r.returncode == 2 and "is `kernelos boot` serving?" in r.stderr


@pytest.mark.parametrize("args", [["boot"], ["run", "x.kimg"], ["request"]])
def test_missing_arguments_are_usage_errors(args):
    r = kernelos(*args)
    assert r.returncode == 2 and "usage: kernelos" in r.stderr
