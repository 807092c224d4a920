"""NVRTC: CUDA C -> cubin for one SM target, without a GPU and without libcuda.

libnvrtc is loaded with cffi in ABI mode from the nvidia-cuda-nvrtc wheel (found through the
`nvidia` namespace package), else from a system CUDA (KERNELOS_NVRTC names a file explicitly).
Results are cached in memory and on disk (cache.py: $KERNELOS_CACHE/cubin, default ~/.cache/kernelos),
keyed by source, entry, target, options and the NVRTC version.
"""

import glob
import hashlib
import importlib.util
import os
import re

from hal import CompileError

from .cache import cache_dir, load_ffi, write_atomic

CDEF = """
typedef int nvrtcResult; typedef struct _nvrtcProgram *nvrtcProgram;
const char *nvrtcGetErrorString(nvrtcResult result);
nvrtcResult nvrtcVersion(int *major, int *minor);
nvrtcResult nvrtcCreateProgram(nvrtcProgram *prog, const char *src, const char *name, int numHeaders,
                               const char * const *headers, const char * const *includeNames);
nvrtcResult nvrtcDestroyProgram(nvrtcProgram *prog);
nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int numOptions, const char * const *options);
nvrtcResult nvrtcGetCUBINSize(nvrtcProgram prog, size_t *cubinSizeRet);
nvrtcResult nvrtcGetCUBIN(nvrtcProgram prog, char *cubin);
nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram prog, size_t *logSizeRet);
nvrtcResult nvrtcGetProgramLog(nvrtcProgram prog, char *log);
"""
TARGET_RE = re.compile(r"^sm_(\d+)[af]?$")
_ffi = load_ffi("nvrtc", CDEF)
_lib = None
_memo: dict = {}


def library_candidates() -> list:
    """Paths where libnvrtc may live, best first."""
    paths = [os.environ["KERNELOS_NVRTC"]] if os.environ.get("KERNELOS_NVRTC") else []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        paths += sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")), reverse=True)
    for root in sorted(glob.glob("/usr/local/cuda*"), reverse=True):
        paths += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")), reverse=True)
    return [p for p in paths if "builtins" not in os.path.basename(p)]


def lib():
    global _lib
    if _lib is None:
        tried = library_candidates()
        for path in tried:
            try:
                _lib = _ffi.dlopen(path)
                break
            except OSError:
                continue
        else:
            raise CompileError(f"libnvrtc not found (tried {tried or 'nothing'}); pip install nvidia-cuda-nvrtc "
                               "or set KERNELOS_NVRTC")
    return _lib


def _library_identity() -> tuple:
    """Which libnvrtc would compile (path, size, mtime), known without loading it (a cache hit stays cheap)."""
    for path in library_candidates():
        try:
            st = os.stat(path)
            return path, st.st_size, int(st.st_mtime)
        except OSError:
            continue
    return ()


def version() -> tuple:
    major, minor = _ffi.new("int *"), _ffi.new("int *")
    lib().nvrtcVersion(major, minor)
    return major[0], minor[0]


def compile_cubin(source: str, name: str, target: str, options=()) -> bytes:
    """Compile source to a cubin for target ('sm_90'); CompileError carries the NVRTC log."""
    if not TARGET_RE.match(target):
        raise CompileError(f"NVRTC target must look like sm_90, got {target!r}")
    opts = (f"--gpu-architecture={target}", "-default-device", *options)
    key = hashlib.sha256(repr((source, name, opts, _library_identity())).encode()).hexdigest()[:32]
    if key in _memo:
        return _memo[key]
    path = os.path.join(cache_dir("cubin"), key + ".cubin")
    if os.path.exists(path):
        with open(path, "rb") as f:
            _memo[key] = f.read()
        return _memo[key]
    cubin = _compile(source, name, opts)
    write_atomic(path, cubin)
    _memo[key] = cubin
    return cubin


def _compile(source: str, name: str, opts) -> bytes:
    nv = lib()
    prog = _ffi.new("nvrtcProgram *")
    _check(nv.nvrtcCreateProgram(prog, source.encode(), f"{name}.cu".encode(), 0, _ffi.NULL, _ffi.NULL), "create")
    try:
        keep = [_ffi.new("char[]", o.encode()) for o in opts]
        rc = nv.nvrtcCompileProgram(prog[0], len(keep), _ffi.new("const char *[]", keep))
        if rc != 0:
            raise CompileError(f"NVRTC failed to compile {name!r} ({_err(rc)}):\n{_log(prog[0])}")
        size = _ffi.new("size_t *")
        _check(nv.nvrtcGetCUBINSize(prog[0], size), "cubin size")
        if size[0] == 0:
            raise CompileError(f"NVRTC produced no cubin for {name!r}; the target must be a real SM (sm_XX)")
        buf = _ffi.new("char[]", size[0])
        _check(nv.nvrtcGetCUBIN(prog[0], buf), "cubin")
        return bytes(_ffi.buffer(buf, size[0]))
    finally:
        nv.nvrtcDestroyProgram(prog)


def _log(prog) -> str:
    size = _ffi.new("size_t *")
    lib().nvrtcGetProgramLogSize(prog, size)
    buf = _ffi.new("char[]", max(size[0], 1))
    lib().nvrtcGetProgramLog(prog, buf)
    return _ffi.string(buf).decode(errors="replace")


def _err(rc: int) -> str:
    return _ffi.string(lib().nvrtcGetErrorString(rc)).decode()


def _check(rc: int, what: str):
    if rc != 0:
        raise CompileError(f"NVRTC {what} failed: {_err(rc)}")
