"""Drive a command under a pseudo-terminal the way a person at a terminal would.

The child sees a real tty (so the console runs its interactive path: prompts, readline, echo);
the test writes a line once the child shows a prompt and collects everything the terminal shows.
"""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

PROMPTS = (">>> ", "... ")
# Terminal control sequences readline may emit (bracketed paste, cursor moves): not output text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")


def clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "")


def _own_terminal():
    """In the child: a new session whose controlling terminal is the pty, so Ctrl-C sends SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtySession:
    def __init__(self, argv, cwd, env, columns: int = 250):
        self.master, slave = pty.openpty()
        # A wide terminal keeps readline from wrapping or scrolling long input lines.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=_own_terminal, close_fds=True)
        os.close(slave)
        self.raw = ""

    def read_until_prompt(self, timeout_s: float) -> str:
        """Everything shown from now until the next prompt (or the child's exit)."""
        start = len(self.raw)
        deadline = time.monotonic() + timeout_s
        while not clean(self.raw[start:]).endswith(PROMPTS):
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError(f"no prompt within {timeout_s} s; the terminal shows:\n{clean(self.raw[start:])}")
            ready, _, _ = select.select([self.master], [], [], remaining_s)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                chunk = b""
            if not chunk:
                break
            self.raw += chunk.decode("utf-8", "replace")
        return clean(self.raw[start:])

    def send(self, text: str):
        os.write(self.master, text.encode())

    def interrupt(self):
        """What Ctrl-C does: the terminal sends SIGINT to the foreground process."""
        self.send("\x03")

    def close(self, timeout_s: float = 10.0) -> int:
        """Wait for the child to exit (killing its group if it does not) and return its exit code."""
        try:
            return self.proc.wait(timeout_s)  # TimeoutExpired if it does not exit
        finally:
            self.release()

    def release(self):
        """Kill the child if it still runs and close the terminal (idempotent; fixtures call it)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def transcript(self) -> str:
        return clean(self.raw)
