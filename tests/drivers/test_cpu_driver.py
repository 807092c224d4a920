"""cpu driver specifics beyond the HAL conformance suite: compiler, loader, memory budget, threads."""

import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import drivers.cpu
import hal
from hal import CompileError, DeviceFault, InvalidArgument, KernelMeta, OutOfDeviceMemory

ARCH = f"cpu-{platform.machine()}"

CONSTANT = """#include "kos_kernel.h"
typedef struct { uint32_t *out; } a_t;
KOS_KERNEL(put) { const a_t *a = args; (void)L; (void)block_begin; (void)block_end; a->out[0] = %d; }
"""

# spins (bounded) until *flag != 0, then writes 42 to out[0]; 0xdead if it gave up after ~10 s
WAIT_FLAG = """#include "kos_kernel.h"
#include <time.h>
typedef struct { volatile uint32_t *flag; uint32_t *out; } a_t;
KOS_KERNEL(wait_flag) { const a_t *a = args; (void)L; (void)block_begin; (void)block_end;
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!__atomic_load_n(a->flag, __ATOMIC_ACQUIRE)) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10) { a->out[0] = 0xdead; return; } }
    a->out[0] = 42; }
"""

# each block records the id of the thread that ran it, after waiting (up to 2 s) until a second
# block has started: only another thread can start one meanwhile, so one thread alone shows as one id
THREAD_IDS = """#include "kos_kernel.h"
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
typedef struct { uint64_t *tids; uint32_t *started; } a_t;
KOS_KERNEL(thread_ids) { const a_t *a = args; (void)L;
    for (uint64_t b = block_begin; b < block_end; b++) {
        __atomic_add_fetch(a->started, 1, __ATOMIC_SEQ_CST);
        struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
        do clock_gettime(CLOCK_MONOTONIC, &t);
        while (__atomic_load_n(a->started, __ATOMIC_SEQ_CST) < 2 && t.tv_sec - t0.tv_sec < 2);
        a->tids[b] = (uint64_t)syscall(SYS_gettid); } }
"""


@pytest.fixture(scope="module")
def dev():
    with hal.open("cpu") as d:
        yield d


def _load(dev, source, name, params):
    return dev.load_program(hal.compile(source, name, ARCH), name, KernelMeta(params))


def _run(dev, queue_kind, build, timeout_s=10):
    done = dev.signal(0)
    build(dev.queue(queue_kind).stream()).signal(done, 1).submit()
    done.wait(1, timeout_s)


# --- compiler --------------------------------------------------------------------------------
def test_compile_cache_and_recorded_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELOS_CACHE", str(tmp_path))
    src = CONSTANT % 7
    first = hal.compile(src, "put", ARCH)
    cached = list((tmp_path / "cpu-kernels").glob("*.so"))
    assert len(cached) == 1 and cached[0].read_bytes() == first
    assert hal.compile(src, "put", ARCH) == first
    assert b"-O3" in first and b"-march=" in first  # -frecord-gcc-switches keeps the flags in the binary
    hal.compile(src, "put", ARCH, options=("-DVARIANT=1",))
    assert len(list((tmp_path / "cpu-kernels").glob("*.so"))) == 2  # options are part of the key


def test_compile_errors():
    with pytest.raises(CompileError, match="does not cross-compile"):
        hal.compile(CONSTANT % 1, "put", "cpu-sparc64")
    with pytest.raises(CompileError, match="missing_entry"):
        hal.compile(CONSTANT % 1, "missing_entry", ARCH)
    with pytest.raises(CompileError, match="identifier"):
        hal.compile(CONSTANT % 1, "bad name", ARCH)
    with pytest.raises(CompileError, match="str"):
        hal.compile(None, "put", ARCH)
    with pytest.raises(CompileError, match="no compiler"):
        hal.compile("x", "x", "riscv_vector_9000")


# --- loader ----------------------------------------------------------------------------------
def test_wrong_machine_binary_is_refused(dev):
    binary = bytearray(hal.compile(CONSTANT % 1, "put", ARCH))
    other = 183 if platform.machine() != "aarch64" else 62
    binary[18:20] = other.to_bytes(2, "little")
    with pytest.raises(InvalidArgument, match="built for"):
        dev.load_program(bytes(binary), "put", KernelMeta(("ptr",)))


def test_same_entry_name_in_two_binaries_runs_each_own_code(dev):
    """memfd paths stay unique while loaded, so the loader never hands back the other object."""
    one, two = _load(dev, CONSTANT % 1, "put", ("ptr",)), _load(dev, CONSTANT % 2, "put", ("ptr",))
    out = dev.alloc(8)
    out.write(b"\0" * 8)
    _run(dev, "compute", lambda s: s.launch(one, [out], grid=1).launch(two, [(out, 4)], grid=1))
    assert list(np.frombuffer(out.read(), np.uint32)) == [1, 2]
    one.close()
    three = _load(dev, CONSTANT % 3, "put", ("ptr",))
    _run(dev, "compute", lambda s: s.launch(three, [out], grid=1))
    assert list(np.frombuffer(out.read(), np.uint32)) == [3, 2]


# --- memory budget -----------------------------------------------------------------------------
def test_memory_budget_knob(monkeypatch):
    budget_B = 8 << 20
    monkeypatch.setenv("KERNELOS_CPU_MEMORY_B", str(budget_B))
    assert drivers.cpu.probe()[0].memory_B == budget_B
    with hal.open("cpu") as dev:
        a, b = dev.alloc(4 << 20), dev.alloc((4 << 20) - 4096)
        with pytest.raises(OutOfDeviceMemory, match="KERNELOS_CPU_MEMORY_B"):
            dev.alloc(4097)  # rounds up to two pages; one is left
        dev.alloc(4096).free()
        a.free()
        dev.alloc(4 << 20).free()
        b.free()


# --- threads and queues ---------------------------------------------------------------------
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs at least 2 cores to see a launch spread")
def test_launch_is_spread_over_the_cores(dev):
    prog = _load(dev, THREAD_IDS, "thread_ids", ("ptr", "ptr"))
    blocks = 64
    tids, started = dev.alloc(8 * blocks), dev.alloc(4)
    tids.write(b"\0" * 8 * blocks)
    started.write(b"\0" * 4)
    _run(dev, "compute", lambda s: s.launch(prog, [tids, started], grid=(blocks,)))
    seen = np.frombuffer(tids.read(), np.uint64)
    assert np.all(seen != 0) and len(set(seen.tolist())) >= 2


def test_compute_and_copy_queues_run_concurrently(dev):
    """The kernel spins until the copy queue delivers its flag: serialised queues would never finish."""
    prog = _load(dev, WAIT_FLAG, "wait_flag", ("ptr", "ptr"))
    flag, one, out = dev.alloc(4), dev.alloc(4), dev.alloc(4)
    flag.write(b"\0" * 4)
    one.write(np.array([1], np.uint32))
    out.write(b"\0" * 4)
    kernel_done, copied = dev.signal(0), dev.signal(0)
    dev.queue("compute").stream().launch(prog, [flag, out], grid=1).signal(kernel_done, 1).submit()
    time.sleep(0.01)
    dev.queue("copy").stream().copy(flag, one, 4).signal(copied, 1).submit()
    copied.wait(1, 5)
    kernel_done.wait(1, 15)
    assert np.frombuffer(out.read(), np.uint32)[0] == 42


def test_free_while_in_flight_is_deferred(dev):
    """A buffer freed while a queued kernel still writes it stays mapped until the queue passes."""
    prog = _load(dev, WAIT_FLAG, "wait_flag", ("ptr", "ptr"))
    flag, out = dev.alloc(4), dev.alloc(1 << 20)
    flag.write(b"\0" * 4)
    done = dev.signal(0)
    dev.queue("compute").stream().launch(prog, [flag, out], grid=1).signal(done, 1).submit()
    out.free()
    assert not any(m["va"] == out.va for m in dev.memory_map())
    flag.view()[0:4] = np.array([1], np.uint32).tobytes()
    done.wait(1, 15)  # the kernel wrote into the still-mapped memory: no crash
    flag.free()


def test_timestamps_are_clock_monotonic_ns(dev):
    ts, done = dev.signal(0), dev.signal(0)
    before = time.monotonic_ns()
    dev.queue("copy").stream().timestamp(ts).signal(done, 1).submit()
    done.wait(1, 5)
    assert before <= ts.value <= time.monotonic_ns()


def test_wait_releases_the_gil(dev):
    """A Python thread sets the signal while the main thread waits in C."""
    sig = dev.signal(0)
    setter = threading.Timer(0.05, lambda: sig.set(1))
    setter.start()
    sig.wait(1, 5)
    setter.join()


FAULTS = {  # kernel body -> the signal the report names
    "null_store": ("*(volatile int *)8 = 1;", "SIGSEGV at 0x8"),
    "divide_by_zero": ("volatile int a = 12345, b = 0; volatile int x = a / b; (void)x;", "SIGFPE"),
    "trap": ("__builtin_trap();", "SIGILL"),
    "stack_overflow": ("recurse(1);", "SIGSEGV"),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_faults_are_caught_and_named(kind):
    body, report = FAULTS[kind]
    src = f"""#include "kos_kernel.h"
static int recurse(int depth) {{ volatile char pad[4096]; pad[0] = (char)depth; return recurse(depth + 1) + pad[0]; }}
KOS_KERNEL(crash) {{ (void)L; (void)block_begin; (void)block_end; (void)args; (void)recurse; {body} }}
"""
    with hal.open("cpu") as dev:
        prog = _load(dev, src, "crash", ())
        done, q = dev.signal(0), dev.queue("compute")
        q.stream().launch(prog, [], grid=4).signal(done, 1).submit()
        with pytest.raises(DeviceFault, match=f"compute0 is dead: {report}.* in kernel crash"):
            done.wait(1, 5)
        assert q.state()["fault"].startswith(report.split()[0])
        dev.queue("compute").stream().signal(done, 2).submit()  # a fresh queue replaces the dead one
        done.wait(2, 5)


def test_wait_timeout_argument_checks(dev):
    sig = dev.signal(0)
    with pytest.raises(InvalidArgument):
        sig.wait(1, float("nan"))
    with pytest.raises(InvalidArgument):
        sig.wait(1, -1)
    sig.set(1)
    sig.wait(1, float("inf"))


def test_concurrent_submitters_share_a_queue(dev):
    """Python threads submitting to one queue at once (submits run without the GIL) lose nothing."""
    src = """#include "kos_kernel.h"
typedef struct { uint64_t *count; } a_t;
KOS_KERNEL(bump) { const a_t *a = args; (void)L; (void)block_begin; (void)block_end; a->count[0] += 1; }
"""
    prog = _load(dev, src, "bump", ("ptr",))
    count = dev.alloc(8)
    count.write(b"\0" * 8)
    q, done = dev.queue("compute"), dev.signal(0)
    per_thread, threads = 500, 4
    streams = [q.stream().launch(prog, [count], grid=1) for _ in range(threads)]

    def submit_many(stream):
        for _ in range(per_thread):
            stream.submit()

    workers = [threading.Thread(target=submit_many, args=(s,)) for s in streams]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    q.stream().signal(done, 1).submit()
    done.wait(1, 30)
    assert np.frombuffer(count.read(), np.uint64)[0] == per_thread * threads


def test_runtime_in_abi_mode():
    """Without Python's headers the runtime is called in cffi ABI mode; forced here in a fresh process."""
    script = """
import numpy as np, hal
from drivers.cpu import native
from tests.hal.kernels import KERNELS, source
with hal.open("cpu") as dev:
    prog = dev.load_program(hal.compile(source("increment", dev.info.arch), "increment", dev.info.arch),
                            "increment", hal.KernelMeta(KERNELS["increment"].params))
    buf, done = dev.alloc(4 * 1000), dev.signal(0)
    buf.write(np.arange(1000, dtype=np.uint32))
    dev.queue("compute").stream().launch(prog, [buf, 1000], grid=(10,), block=(100,)).signal(done, 1).submit()
    done.wait(1, 10)
    assert np.array_equal(np.frombuffer(buf.read(), np.uint32), np.arange(1000) + 1)
    print(native.mode(), dev.info.extra["runtime calls"])
"""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, KERNELOS_CPU_FFI="abi", PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["abi", "cffi", "ABI", "mode"]
