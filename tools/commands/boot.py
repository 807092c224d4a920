"""`kernelos boot IMAGE`: verify, bring up the best device, self-test, report timings, serve
(boot/command.py; `python -m boot IMAGE` is the same command without the rest of the CLI)."""

from boot.command import DESCRIPTION, HELP, NAME, add_arguments, run  # noqa: F401 - the subcommand's interface
