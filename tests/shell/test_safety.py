"""The shell never hangs and never leaks: on the cpu device, in a pseudo-terminal.

Ctrl-C interrupts a wait at once, a timed-out wait is one typed line, a wrong call is an error
and the shell goes on, and leaving closes the device (exit code 0, `closed cpu`).
"""

import subprocess
import sys
import time

import pytest

from .conftest import REPO, STEP_TIMEOUT_S, cpu_device_reason, spawn_env


@pytest.fixture
def cpu_shell(spawn_shell):
    reason = cpu_device_reason()
    if reason:
        pytest.skip(f"cpu device unavailable: {reason}")
    shell = spawn_shell(["shell", "--device", "cpu", "--no-ipython", "--timeout-s", "0.5"])
    shell.read_until_prompt(STEP_TIMEOUT_S)
    return shell


def run_line(shell, line: str) -> str:
    shell.send(line + "\n")
    return shell.read_until_prompt(STEP_TIMEOUT_S)


def test_ctrl_c_interrupts_a_wait_and_the_shell_goes_on(cpu_shell):
    run_line(cpu_shell, "s = signal(0)")
    cpu_shell.send("wait(s, 1, timeout_s=60)\n")
    time.sleep(0.5)
    start_s = time.monotonic()
    cpu_shell.interrupt()
    shown = cpu_shell.read_until_prompt(5.0)
    assert time.monotonic() - start_s < 2.0
    assert shown.splitlines()[-2].endswith("KeyboardInterrupt")  # after the terminal's echo of ^C
    assert shown.endswith("\n>>> ")
    assert run_line(cpu_shell, "s.set(1); wait(s, 1); print('released')").splitlines()[-2] == "released"


def test_errors_are_one_typed_line_and_waits_time_out(cpu_shell):
    start_s = time.monotonic()
    shown = run_line(cpu_shell, "wait(signal(7), 8)")  # the session's --timeout-s 0.5
    assert 0.4 < time.monotonic() - start_s < 5.0
    assert shown.splitlines()[1:] == ["DeviceTimeout: signal at " + shown.split("signal at ")[1].split()[0] +
                                      " did not reach 8 within 0.5 s (it is 7)", ">>> "]
    assert run_line(cpu_shell, "dev.alloc(-1)").splitlines()[1:] == [
        "InvalidArgument: alloc size_B must be a positive int, got -1", ">>> "]
    typo = run_line(cpu_shell, "uplaod(np.ones(4))").splitlines()
    assert typo[1] == "Traceback (most recent call last):" and typo[-2].startswith("NameError: name 'uplaod'")
    assert run_line(cpu_shell, "print(download(upload(np.ones(2, np.int32))))").splitlines()[1] == "[1 1]"


def test_leaving_closes_the_device(cpu_shell):
    run_line(cpu_shell, "d = dev; b = upload(np.ones(4))")
    cpu_shell.send("\x04")  # Ctrl-D at the prompt
    cpu_shell.read_until_prompt(STEP_TIMEOUT_S)
    assert cpu_shell.close() == 0
    assert cpu_shell.transcript().rstrip().endswith("closed cpu")


def test_a_device_that_is_not_there_is_one_line_and_exit_code_2():
    result = subprocess.run([sys.executable, "-m", "kernelos", "shell", "--device", "nv:9", "--no-ipython"], cwd=REPO,
                            env=spawn_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("kernelos shell: DeviceNotFound: ") and result.stderr.count("\n") == 1
    assert result.stdout == ""


SPIN_FOREVER = '#include "kos_kernel.h"\nKOS_KERNEL(spin) { volatile int forever = 1; while (forever) {} }\n'


def test_a_kernel_that_never_returns_times_out_and_leaving_still_ends(cpu_shell):
    """The cpu driver's close waits for a running kernel; the shell gives up on it after its timeout."""
    assert run_line(cpu_shell, f'k = kernel({SPIN_FOREVER!r}, "spin", "")').splitlines()[1:] == [">>> "]
    shown = run_line(cpu_shell, "launch(k, [], grid=1)").splitlines()
    assert shown[1].startswith("DeviceTimeout: signal at ") and shown[1].endswith("within 0.5 s (it is 0)")
    start_s = time.monotonic()
    cpu_shell.send("exit()\n")
    cpu_shell.read_until_prompt(STEP_TIMEOUT_S)
    assert cpu_shell.close() == 3
    assert time.monotonic() - start_s < 10.0
    assert cpu_shell.transcript().rstrip().endswith(
        "closing cpu did not finish within 2 s (a kernel still running?); leaving without a clean close")
