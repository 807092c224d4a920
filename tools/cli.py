"""The `kernelos` command. Each module in tools/commands/ is one subcommand and defines

    NAME = "info"                  the subcommand
    HELP = "one line for --help"
    def add_arguments(parser): ... argparse arguments
    def run(args) -> int: ...      the exit code

Typed kernelos errors print as one clear line (exit 2); anything else is a bug and shows its traceback.
"""

import argparse
import importlib
import pkgutil
import sys

from boot.entry import run_command

from . import commands


_OUR_PACKAGES = ("tools", "hal", "drivers", "kernelos", "boot")


class _Unavailable:
    """A subcommand whose module needs a package this system lacks (a build-host command such as
    `demo` needs onnx; the system image ships only the runtime): listed, and says what is missing."""

    def __init__(self, name: str, error: ModuleNotFoundError):
        self.NAME, self.missing = name, error.name
        self.HELP = f"(unavailable here: needs the Python package {error.name!r})"

    def add_arguments(self, p):
        p.add_argument("args", nargs=argparse.REMAINDER)

    def run(self, args) -> int:
        print(f"kernelos {self.NAME}: needs the Python package {self.missing!r}, which is not installed here "
              "(build-host commands: pip install 'kernelos[build]'; flashing: 'kernelos[usb]')", file=sys.stderr)
        return 2


def _command_modules(only: str | None = None):
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__))
    if only in names:
        names = [only]
    for name in names:
        try:
            yield importlib.import_module(f"{commands.__name__}.{name}")
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] in _OUR_PACKAGES:
                raise  # our own code is broken: show it
            yield _Unavailable(name, e)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command; with `command` naming a subcommand, only that subcommand's module is
    imported (the others may import what it does not need: onnx, the builder, pyusb), which keeps
    `kernelos boot` as quick to start as `python -m boot`."""
    parser = argparse.ArgumentParser(
        prog="kernelos",
        description="kernelos: boot to neural network. Build device images, boot and serve them, "
                    "inspect devices, flash firmware.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules(command):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return run_command(args._run, args, f"kernelos {args.command}")


if __name__ == "__main__":
    sys.exit(main())
