"""Builds runtime.c once per machine (cached by the hash of its sources and flags) and loads it
through cffi in ABI mode: only a C compiler is needed, no Python headers, and every call releases
the GIL while it runs."""

import hashlib
import os
import subprocess
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

_lock = threading.Lock()
_loaded = None


def _cdef() -> str:
    text = (HERE / "runtime.h").read_text()
    return text.split("/* cdef begin */")[1].split("/* cdef end */")[0]


def _library_path() -> Path:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    digest.update(" ".join(FLAGS + LIBS + (knobs.compiler(),)).encode())
    return knobs.cache_dir() / "cpu-runtime" / f"runtime-{digest.hexdigest()[:16]}.so"


def unavailable_reason():
    """None if the runtime is built or can be built here, else why not."""
    if _loaded or _library_path().exists():
        return None
    from shutil import which
    if which(knobs.compiler()) is None:
        return f"no C compiler {knobs.compiler()!r} to build the cpu runtime (install gcc; `make setup` does)"
    return None


def _build(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    cmd = [knobs.compiler(), *FLAGS, "-I", str(HERE), str(HERE / "runtime.c"), "-o", tmp, *LIBS]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise DeviceError(f"building the cpu runtime failed ({' '.join(cmd)}):\n{result.stderr}")
        os.replace(tmp, path)  # atomic: concurrent builders each publish a complete file
    except FileNotFoundError:
        raise DeviceError(f"no C compiler {knobs.compiler()!r} to build the cpu runtime (install gcc)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def runtime():
    """(ffi, lib) of the built runtime, building it on first use."""
    global _loaded
    with _lock:
        if _loaded is None:
            path = _library_path()
            if not path.exists():
                _build(path)
            ffi = FFI()
            ffi.cdef(_cdef())
            _loaded = (ffi, ffi.dlopen(str(path)))
        return _loaded
