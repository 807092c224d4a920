"""Start-up work on a helper thread, so that it overlaps the device bring-up.

    imports = Background(import_runtime, "kernelos-imports")
    ...                                  # the main thread opens the device meanwhile
    imports.result()                     # joins; returns fn's value or raises its exception

Bring-up is mostly ioctls and image hashing is in C; both release the GIL, so a helper thread's
Python work (numpy's import) runs beside them. While it runs, `quick_switches()` shortens the
interpreter's switch interval so that the main thread, coming back from an ioctl, gets the GIL
within SWITCH_INTERVAL_S instead of the default 5 ms (bring-up makes dozens of ioctls).
"""

import sys
import threading
from contextlib import contextmanager

SWITCH_INTERVAL_S = 2e-4


class Background:
    """fn() on a daemon thread; result() waits for it and returns its value or raises its error."""

    def __init__(self, fn, name: str):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn):
        try:
            self._value = fn()
        except BaseException as e:  # handed to whoever calls result()
            self._error = e

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


@contextmanager
def quick_switches(interval_s: float = SWITCH_INTERVAL_S):
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
