"""Print what the shell shows today for the README transcript's input lines.

    PYTHONPATH=. python -m tests.shell.record

For maintainers changing the shell: compare with README.md, then update the README by hand,
putting placeholders (<hex>, <int>, <float>) only where values change from run to run.
"""

import sys

from .conftest import REPO, STEP_TIMEOUT_S, spawn_env, write_transcript_files
from .pty_session import PtySession
from .transcript import is_input, read_transcript, typed


def record() -> str:
    args, expected = read_transcript(REPO / "README.md")
    write_transcript_files()
    shell = PtySession([sys.executable, "-m", "kernelos", *args], cwd=REPO, env=spawn_env())
    shell.read_until_prompt(STEP_TIMEOUT_S)
    for line in expected:
        if is_input(line):
            shell.send(typed(line) + "\n")
            shell.read_until_prompt(STEP_TIMEOUT_S)
    shell.close()
    return f"$ kernelos {' '.join(args)}\n" + shell.transcript()


if __name__ == "__main__":
    print(record())
