"""The driver's on-disk caches (compiled cubins, parsed cffi declarations) under one directory:
$KERNELOS_CACHE, default ~/.cache/kernelos. Every cache is an optimisation only: an unwritable
directory costs time, never correctness."""

import contextlib
import hashlib
import importlib.util
import io
import os

import cffi


def cache_dir(kind: str) -> str:
    base = os.environ.get("KERNELOS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kernelos")
    return os.path.join(base, kind)


def write_atomic(path: str, data: bytes):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + f".{os.getpid()}.tmp", "wb") as f:
            f.write(data)
        os.replace(path + f".{os.getpid()}.tmp", path)
    except OSError:
        pass


def load_ffi(name: str, cdef: str):
    """An FFI for cdef; parsed once (pycparser, ~0.2 s), then loaded from cffi's generated module (~5 ms)."""
    key = hashlib.sha256((cdef + cffi.__version__).encode()).hexdigest()[:16]
    module = f"_kos_{name}_{key}"
    path = os.path.join(cache_dir("cffi"), module + ".py")
    if os.path.exists(path):
        spec = importlib.util.spec_from_file_location(module, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
            return mod.ffi
        except Exception:
            pass  # a damaged cache file: parse again and rewrite it
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    builder = cffi.FFI()
    builder.cdef(cdef)
    builder.set_source(module, None)
    tmp = path + f".{os.getpid()}.gen"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):     # cffi announces "generating ..." on stdout
            builder.emit_python_code(tmp)
        os.replace(tmp, path)
    except OSError:
        pass
    return ffi
