"""Compiling cpu kernels: C source -> shared object bytes, with the system C compiler.

Flags: -O3 and the build host's vector extensions (-march=native unless KERNELOS_CPU_MARCH says
otherwise), recorded inside the binary (-frecord-gcc-switches). The image builder compiles on the
build host and the boot host loads, so an image built with -march=native needs a boot host with the
same (or more) vector extensions; a missing instruction faults as SIGILL at launch.
Results are cached under $KERNELOS_CACHE/cpu-kernels, keyed by sha256 of source, entry and flags.
"""

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from hal.errors import CompileError

from . import knobs

INCLUDE_DIR = Path(__file__).resolve().parent  # kos_kernel.h
HOST_TARGET = f"cpu-{platform.machine()}"


def kernel_flags(options=()) -> list:
    return ["-O3", f"-march={knobs.march()}", "-std=gnu11", "-fPIC", "-shared", "-frecord-gcc-switches",
            "-Wl,--no-undefined", *options]


@functools.lru_cache(maxsize=None)
def _compiler_identity(cc: str) -> str:
    result = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return result.stdout.splitlines()[0] if result.returncode == 0 and result.stdout else cc


def _entry_check(name: str) -> str:
    """Appended to the source so a missing or misspelt entry is a compile error, not a load error."""
    return f"\n__attribute__((used)) static void *const kos__entry_check_ = (void *)&{name};\n"


def compile(source: str, name: str, target: str = HOST_TARGET, options=()) -> bytes:  # noqa: A001
    if target != HOST_TARGET:
        raise CompileError(f"target {target!r} is not this host's {HOST_TARGET!r}; the cpu driver does not cross-compile")
    if not isinstance(source, str):
        raise CompileError(f"kernel source must be a str, got {type(source).__name__}")
    if not isinstance(name, str) or not name.isidentifier():
        raise CompileError(f"kernel entry {name!r} is not a C identifier")
    cc = knobs.compiler()
    if shutil.which(cc) is None:
        raise CompileError(f"no C compiler {cc!r} found; install gcc (`make setup` does)")
    flags = kernel_flags(tuple(options))
    key = hashlib.sha256("\0".join([source, name, _compiler_identity(cc), *flags]).encode()).hexdigest()
    cached = knobs.cache_dir() / "cpu-kernels" / f"{key[:32]}.so"
    if cached.exists():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="kos-cc-") as tmp:
        src, out = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
        src.write_text(source + _entry_check(name))
        cmd = [cc, *flags, "-I", str(INCLUDE_DIR), str(src), "-o", str(out), "-lm"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(f"compiling kernel {name!r} failed ({' '.join(cmd)}):\n{result.stderr.strip()}")
        binary = out.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=cached.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(binary)
    os.replace(tmp_path, cached)
    return binary
