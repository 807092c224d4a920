"""Spawning `python -m kernelos shell` under a pseudo-terminal, from this worktree's packages."""

import os
import sys
from pathlib import Path

import pytest

from .pty_session import PtySession

REPO = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 60.0  # one typed line (compiling a kernel included) on a loaded CI machine


def spawn_env() -> dict:
    """The child's environment: this worktree's packages, a plain terminal without readline config."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TERM="dumb", INPUTRC="/dev/null", PYTHONDONTWRITEBYTECODE="1")


def write_transcript_files():
    """Files the README transcript opens: the demo image (tests/shell/demo_image.py)."""
    from .demo_image import DEFAULT_PATH, write_demo_image

    write_demo_image(REPO / DEFAULT_PATH)


def cpu_device_reason():
    """Why the cpu device cannot be opened here, or None if it can."""
    import hal

    try:
        hal.open("cpu").close()
    except Exception as e:  # noqa: BLE001 - any reason to skip is reported as is
        return f"{type(e).__name__}: {e}"
    return None


@pytest.fixture
def spawn_shell():
    """spawn_shell(args) -> PtySession running `kernelos ARGS` in a terminal; closed afterwards."""
    sessions = []

    def spawn(args):
        session = PtySession([sys.executable, "-m", "kernelos", *args], cwd=REPO, env=spawn_env())
        sessions.append(session)
        return session

    yield spawn
    for s in sessions:
        s.release()
