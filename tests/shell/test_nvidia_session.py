"""The shell session of the README, on an NVIDIA GPU (CUDA source through NVRTC instead of C).

Outputs that depend on the GPU (ring pointers, pushbuffer decode) are checked for their shape,
results against numpy; the cpu transcript test pins the exact text.
"""

import time

import pytest

import hal

from .conftest import STEP_TIMEOUT_S

AXPB_CUDA = r'''extern "C" __global__ void axpb(const float *x, float *y, float a, unsigned n) { unsigned i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = a * x[i] + 1.0f; }'''


def nvidia_device():
    """The first NVIDIA DeviceInfo, or skip with the reason it is absent."""
    devices, reasons = hal.probe_report()
    for d in devices:
        if d.vendor == "nvidia":
            return d
    pytest.skip(f"no NVIDIA GPU: {reasons.get('nv', 'the nv driver found none')}")


def run_line(shell, line: str) -> list:
    shell.send(line + "\n")
    return shell.read_until_prompt(STEP_TIMEOUT_S).splitlines()[1:-1]  # without the echo and the next prompt


@pytest.mark.nvidia
def test_shell_session_on_nvidia(spawn_shell, tmp_path):
    info = nvidia_device()
    from .demo_image import write_demo_image

    write_demo_image(tmp_path / "demo.kimg", info.arch)
    shell = spawn_shell(["shell", "--device", info.spec, "--no-ipython", "--timeout-s", "2"])
    banner = shell.read_until_prompt(STEP_TIMEOUT_S)
    try:
        assert banner.startswith(f"kernelos shell on {info.spec} ({info.arch})")
        run_line(shell, "xh = np.random.default_rng().standard_normal(1000).astype(np.float32)")
        run_line(shell, "x, y = upload(xh), empty(1000)")
        assert run_line(shell, 'k = kernel(' + repr(AXPB_CUDA) + ', "axpb", "ptr, ptr, f32, u32")') == []
        assert run_line(shell, "s = launch(k, [x, y, -2.0, 1000], grid=4, block=256)") == []
        assert run_line(shell, "np.allclose(download(y), -2.0 * xh.astype(np.float64) + 1, rtol=1e-6)") == ["True"]
        assert len(run_line(shell, "decode(s)")) >= 2
        ring = run_line(shell, "ring()")
        assert [r.split()[0] for r in ring] == ["compute0", "copy0"] and all("=" in r for r in ring)
        assert run_line(shell, "sigs()")[0].split()[0] == "launch"
        assert len(run_line(shell, "hexdump(y, 64)")) == 4
        assert run_line(shell, "memmap()")[0].split() == ["va", "size", "kind", "what"]
        run_line(shell, f"m = load({str(tmp_path / 'demo.kimg')!r})")
        assert run_line(shell, "m.step()")[0].startswith("node 0 scale: launch mul_cols")
        assert run_line(shell, "m.step()")[0].startswith("node 1 bias_relu: launch add_cols_relu")
        assert run_line(shell, "m.check()") == ["y: max |out - golden| = 0"]
        assert run_line(shell, "wait(signal(0), 1, timeout_s=0.3)")[0].startswith("DeviceTimeout: signal at ")
        shell.send("s2 = signal(0); wait(s2, 1, timeout_s=60)\n")
        time.sleep(0.5)
        shell.interrupt()
        assert shell.read_until_prompt(5.0).splitlines()[-2].endswith("KeyboardInterrupt")
        shell.send("exit()\n")
        shell.read_until_prompt(STEP_TIMEOUT_S)
        assert shell.close() == 0
        assert shell.transcript().rstrip().endswith(f"closed {info.spec}")
    finally:
        print(shell.transcript())  # the session, for the record (pytest -s shows it)
