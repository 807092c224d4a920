"""The README's shell transcript: parsing it, and matching a live session against it.

The transcript sits in README.md between BEGIN and END in a ```text block. Its first line is the
command (`$ kernelos shell ...`); then exactly what the terminal shows: lines starting with
`>>> ` or `... ` are typed by the user (a bare `...` is an empty continuation line), all others
are output. Output is compared literally except for these placeholders, which stand for values
that differ from run to run:

    <hex>    an address or other hex number (with or without 0x)
    <int>    a decimal integer
    <float>  a decimal number (timings)
    <bool>   True or False (a driver's momentary flags, such as an executor thread asleep or not)
"""

import re
from pathlib import Path

BEGIN = "<!-- shell-transcript: begin -->"
END = "<!-- shell-transcript: end -->"
PLACEHOLDERS = {"<hex>": r"(?:0x)?[0-9a-f]+", "<int>": r"-?\d+", "<float>": r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?",
                "<bool>": r"(?:True|False)"}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))


def read_transcript(readme: Path) -> tuple:
    """(argv after `kernelos`, [lines the terminal shows]) from the README's marked block."""
    text = readme.read_text()
    try:
        block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    except ValueError:
        raise AssertionError(f"{readme} has no shell transcript between {BEGIN!r} and {END!r}") from None
    lines = block.strip().splitlines()
    if lines[0] != "```text" or lines[-1] != "```":
        raise AssertionError("the shell transcript must be one ```text block")
    command, shown = lines[1], lines[2:-1]
    if not command.startswith("$ kernelos "):
        raise AssertionError(f"the transcript must start with '$ kernelos ...', got {command!r}")
    return command.split()[2:], shown


def is_input(line: str) -> bool:
    return line.startswith((">>> ", "... ")) or line in (">>>", "...")


def typed(line: str) -> str:
    """The text the user typed on an input line."""
    return line[4:]


def line_pattern(expected: str):
    """A regex for one expected line: literal text, placeholders as their patterns."""
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(expected):
        parts.append(re.escape(expected[pos:m.start()]))
        parts.append(PLACEHOLDERS[m.group()])
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts) + r"\Z")


def mismatches(expected_lines: list, shown_lines: list) -> list:
    """Human-readable differences between the transcript and what the terminal showed."""
    problems = []
    for i, (want, got) in enumerate(zip(expected_lines, shown_lines)):
        if not line_pattern(want.rstrip()).match(got.rstrip()):
            problems.append(f"line {i + 1}:\n  README: {want!r}\n  shell:  {got!r}")
    if len(expected_lines) != len(shown_lines):
        extra = shown_lines[len(expected_lines):] or expected_lines[len(shown_lines):]
        problems.append(f"README has {len(expected_lines)} lines, the shell showed {len(shown_lines)}; "
                        f"the first unmatched: {extra[:5]!r}")
    return problems[:5]  # after the first few, later lines usually only follow from them
