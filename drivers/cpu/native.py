"""Builds runtime.c once per machine (cached by the hash of its sources, flags and mode) and loads it
through cffi; every call into it releases the GIL.

Two ways, the same (ffi, lib) interface:
- API mode, where Python's headers are installed: cffi's generated wrapper and runtime.c compiled
  into one extension module. Calls cost about half of ABI mode's (0.5 vs 1 us with four arguments
  on the 2-core dev VM), which is a good share of a 10 us launch round trip.
- ABI mode otherwise (a Debian python3 without python3-dev), or when KERNELOS_CPU_FFI=abi:
  runtime.c alone as a shared object, opened with ffi.dlopen. Needs only the C compiler.
Either way only the system C compiler is used (no setuptools).
"""

import contextlib
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

from cffi import FFI

from hal.errors import DeviceError

from . import knobs

HERE = Path(__file__).resolve().parent
SOURCES = ("runtime.c", "runtime.h", "kos_kernel.h")
FLAGS = ("-O2", "-std=gnu11", "-shared", "-fPIC", "-pthread")
LIBS = ("-ldl",)
API_MODULE = "_kos_cpu_runtime"

_lock = threading.Lock()
_loaded = None


def _cdef() -> str:
    text = (HERE / "runtime.h").read_text()
    return text.split("/* cdef begin */")[1].split("/* cdef end */")[0]


def _python_include():
    """Python's include directory if its headers are installed and API mode is wanted, else None."""
    if knobs.ffi_mode() == "abi":
        return None
    include = sysconfig.get_paths().get("include")
    return include if include and (Path(include) / "Python.h").exists() else None


def _library_path() -> Path:
    mode = f"api-{sys.implementation.cache_tag}" if _python_include() else "abi"
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    digest.update(" ".join(FLAGS + LIBS + (knobs.compiler(), mode)).encode())
    return knobs.cache_dir() / "cpu-runtime" / f"runtime-{mode}-{digest.hexdigest()[:16]}.so"


def unavailable_reason():
    """None if the runtime is built or can be built here, else why not."""
    if _loaded or _library_path().exists():
        return None
    if shutil.which(knobs.compiler()) is None:
        return f"no C compiler {knobs.compiler()!r} to build the cpu runtime (install gcc; `make setup` does)"
    return None


def _compile(sources: list, out: str, extra_includes: list):
    cmd = [knobs.compiler(), *FLAGS, "-I", str(HERE), *[f"-I{d}" for d in extra_includes], *sources, "-o", out, *LIBS]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise DeviceError(f"no C compiler {knobs.compiler()!r} to build the cpu runtime (install gcc)") from None
    if result.returncode != 0:
        raise DeviceError(f"building the cpu runtime failed ({' '.join(cmd)}):\n{result.stderr}")


def _build(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        out = os.path.join(tmp, path.name)
        include = _python_include()
        if include:
            ffi = FFI()
            ffi.cdef(_cdef())
            ffi.set_source(API_MODULE, '#include "runtime.h"')
            wrapper = os.path.join(tmp, f"{API_MODULE}.c")
            with contextlib.redirect_stdout(io.StringIO()):  # cffi announces "generating ..."
                ffi.emit_c_code(wrapper)
            _compile([wrapper, str(HERE / "runtime.c")], out, [include])
        else:
            _compile([str(HERE / "runtime.c")], out, [])
        os.replace(out, path)  # atomic: concurrent builders each publish a complete file


def _load(path: Path):
    if _python_include():
        spec = importlib.util.spec_from_file_location(API_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.ffi, module.lib
    ffi = FFI()
    ffi.cdef(_cdef())
    return ffi, ffi.dlopen(str(path))


def runtime():
    """(ffi, lib) of the built runtime, building it on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            path = _library_path()
            if not path.exists():
                _build(path)
            _loaded = _load(path)
        return _loaded


def mode() -> str:
    """'api' or 'abi': how the runtime is called (shown by `kernelos info`)."""
    return "api" if _python_include() else "abi"
