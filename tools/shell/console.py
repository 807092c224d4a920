"""The interactive console: IPython when installed (and wanted), the standard console otherwise.

Both show a KernelosError as one line, `TypeName: message`, since those errors are the device
telling the user something, not a bug; every other exception keeps its full traceback. A
KeyboardInterrupt (Ctrl-C during a wait) is one line too.
"""

import code
import sys

from hal.errors import KernelosError

ONE_LINE_ERRORS = (KernelosError, KeyboardInterrupt)


def one_line(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Console(code.InteractiveConsole):
    """code.InteractiveConsole with kernelos errors shown as one line."""

    def showtraceback(self):
        exc = sys.exc_info()[1]
        if isinstance(exc, ONE_LINE_ERRORS):
            self.write(one_line(exc) + "\n")
        else:
            super().showtraceback()


def _interact_std(namespace: dict, banner: str):
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401 - importing it gives input() line editing and history
            import rlcompleter
            readline.set_completer(rlcompleter.Completer(namespace).complete)
            readline.parse_and_bind("tab: complete")
        except ImportError:
            pass
    Console(namespace).interact(banner=banner, exitmsg="")


def _interact_ipython(namespace: dict, banner: str):
    from IPython.terminal.embed import InteractiveShellEmbed

    shell = InteractiveShellEmbed(user_ns=namespace, banner1=banner + "\n", exit_msg="")

    def show_one_line(self, etype, value, tb, tb_offset=None):
        print(one_line(value))

    shell.set_custom_exc(ONE_LINE_ERRORS, show_one_line)
    shell()


def ipython_available() -> bool:
    try:
        import IPython  # noqa: F401
    except ImportError:
        return False
    return True


def interact(namespace: dict, banner: str, use_ipython: bool = True):
    """Run the console until the user leaves (Ctrl-D or exit())."""
    if use_ipython and ipython_available():
        _interact_ipython(namespace, banner)
    else:
        _interact_std(namespace, banner)
