"""The README's `kernelos shell` transcript, replayed in a pseudo-terminal on the cpu device.

Each `>>> `/`... ` line of the transcript is typed once the shell shows its prompt; what the
terminal shows must equal the transcript (placeholders only for addresses and timings), so the
documentation cannot drift from the shell.
"""

import pytest

from .conftest import REPO, STEP_TIMEOUT_S, cpu_device_reason, write_transcript_files
from .transcript import PLACEHOLDERS, is_input, line_pattern, mismatches, read_transcript, typed

README = REPO / "README.md"


def test_transcript_is_mostly_literal():
    """Placeholders are for volatile values only: most output lines must compare literally."""
    _, shown = read_transcript(README)
    output = [line for line in shown if not is_input(line)]
    with_placeholders = [line for line in output if any(p in line for p in PLACEHOLDERS)]
    assert len(output) >= 20
    assert len(with_placeholders) <= len(output) // 3, with_placeholders


def test_placeholders_match_only_their_kind_and_the_rest_literally():
    assert line_pattern("signal at <hex> is <int>, took <float> ms").match("signal at 0x7f00aa is 12, took 0.5 ms")
    assert not line_pattern("signal at <hex> is <int>").match("signal at 0x7f00aa is 12 or more")
    assert not line_pattern("value=<int>").match("value=0x10")
    assert not line_pattern("dead=<bool>").match("dead=maybe")
    assert not line_pattern("a.b (c)").match("aXb (c)")  # regex characters in the text are literal
    assert mismatches(["x = <int>", "done"], ["x = 3", "done"]) == []
    assert mismatches(["x = <int>"], ["x = 3", "extra"])[0].startswith("README has 1 lines, the shell showed 2")


def test_readme_transcript_replays_on_cpu(spawn_shell):
    reason = cpu_device_reason()
    if reason:
        pytest.skip(f"cpu device unavailable: {reason}")
    args, expected = read_transcript(README)
    write_transcript_files()
    shell = spawn_shell(args)
    shell.read_until_prompt(STEP_TIMEOUT_S)
    for line in expected:
        if is_input(line):
            shell.send(typed(line) + "\n")
            shell.read_until_prompt(STEP_TIMEOUT_S)
    exit_code = shell.close()
    shown = shell.transcript().splitlines()
    problems = mismatches(expected, shown)
    assert not problems, "the shell no longer shows what README.md says:\n" + "\n".join(problems) + \
        "\n--- the shell showed ---\n" + shell.transcript()
    assert exit_code == 0
