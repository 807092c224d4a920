"""cpu driver: after a kernel fault, only waits that depend on the dead queue fail (docs/cpu-driver.md,
Faults). A wait whose value a skipped SIGNAL of the dead queue would have reached raises DeviceFault;
waits on signals the host or a healthy queue sets keep working; a queue whose WAIT depends on the
dead queue dies too, so waits on what it would have signalled fail instead of timing out."""

import platform
import threading

import pytest

import hal
from hal import DeviceFault, Var

CRASH = """#include "kos_kernel.h"
KOS_KERNEL(crash) { (void)L; (void)block_begin; (void)block_end; (void)args; *(volatile int *)8 = 1; }
"""
SET_LATER_S = 0.05  # far past the runtime's 50 us spin, so the waits below really sleep


@pytest.fixture
def faulted():
    """A fresh device whose compute0 died in a kernel that would then have signalled `lost` to 1
    (a Var-valued signal, so the skipped SETVALS binding is exercised too)."""
    with hal.open("cpu") as dev:
        prog = dev.load_program(hal.compile(CRASH, "crash", f"cpu-{platform.machine()}"), "crash", hal.KernelMeta(()))
        lost = dev.signal(0)
        dev.queue("compute").stream().launch(prog, [], grid=1).signal(lost, Var("t") + 1).submit(t=0)
        with pytest.raises(DeviceFault, match="compute0 is dead: SIGSEGV"):
            lost.wait(1, 5)
        yield dev, lost


def _set_later(sig, value):
    timer = threading.Timer(SET_LATER_S, sig.set, (value,))
    timer.start()
    return timer


def test_host_set_signal_still_waits_after_a_fault(faulted):
    dev, _ = faulted
    sig = dev.signal(0)
    timer = _set_later(sig, 1)
    sig.wait(1, 5)  # raised DeviceFault while compute0 was dead, before waits were scoped
    timer.join()


def test_healthy_queue_signal_still_waits_after_a_fault(faulted):
    dev, _ = faulted
    gate, done = dev.signal(0), dev.signal(0)
    dev.queue("compute", 1).stream().wait(gate, 1).signal(done, 7).submit()
    timer = _set_later(gate, 1)
    done.wait(7, 5)
    timer.join()
    assert not dev.queue("compute", 1).state()["dead"]


def test_a_value_beyond_the_skipped_write_does_not_depend_on_the_dead_queue(faulted):
    dev, lost = faulted
    timer = _set_later(lost, 5)  # the dead queue would only have written 1
    lost.wait(5, 5)
    timer.join()


def test_a_queue_waiting_on_the_dead_queue_dies_too(faulted):
    dev, lost = faulted
    after = dev.signal(0)
    copy = dev.queue("copy")
    copy.stream().wait(lost, 1).signal(after, 1).submit()
    with pytest.raises(DeviceFault, match="copy0 is dead: waited on signal .*, which queue compute0 would have set"):
        after.wait(1, 5)
    assert copy.state()["dead"]
    # replacing the dead queues clears what they left: the same signals work again
    dev.queue("compute").stream().signal(lost, 2).submit()
    dev.queue("copy").stream().wait(lost, 2).signal(after, 2).submit()
    after.wait(2, 5)


def test_replacing_the_dead_queue_ends_its_faults(faulted):
    dev, lost = faulted
    dev.queue("compute")  # replaces compute0: its skipped writes no longer fail waits
    timer = _set_later(lost, 1)
    lost.wait(1, 5)
    timer.join()
