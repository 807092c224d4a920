"""The initramfs root file system: Debian packages unpacked, made runnable, pruned, plus kernelos.

Unpacking with dpkg-deb runs no maintainer scripts, so the few things they would do are done here
(python3 and BLAS/LAPACK links, busybox applet links). Everything an appliance that only runs a model
never touches is pruned (docs, tests, headers, Python modules whose C libraries are not shipped).
Python bytecode is compiled ahead of time in a chroot with the image's own interpreter: the root
file system is RAM, nothing would keep bytecode compiled at boot, and compiling costs boot time.
"""

import glob
import os
import shutil
import subprocess

from . import debian

KERNELOS_DIR = "/opt/kernelos"  # where the runtime packages live in the image (PYTHONPATH)
CACHE_SUBDIR = "cache"  # KERNELOS_DIR/cache is KERNELOS_CACHE in the image: the prebuilt cpu runtime
# kernelos's environment in the image, written to ENV_FILE for /init: the cpu runtime is called in
# cffi's ABI mode (a shared object, dlopen'ed), the one that needs no Python headers to build.
# PYTHONPATH also names Debian's dist-packages (numpy): /init runs `python3 -S`, which skips site.
RUNTIME_ENV = {"PYTHONPATH": f"{KERNELOS_DIR}:/usr/lib/python3/dist-packages",
               "KERNELOS_CACHE": f"{KERNELOS_DIR}/{CACHE_SUBDIR}", "KERNELOS_CPU_FFI": "abi"}
ENV_FILE = "etc/kernelos.env"
RUNTIME_PACKAGES = ("hal", "drivers", "kernelos", "boot", "tools")  # the repo's packages /init imports
SKIP_IN_IMAGE = ("boot/vm",)  # the image recipe itself is build-host only

# Paths (globs, relative to the root) no boot reads.
PRUNE = (
    "usr/share", "usr/include", "usr/lib/x86_64-linux-gnu/gconv", "etc/ld.so.conf.d",
    "usr/lib/python3.11/dist-packages",  # python3-numpy's second copy of its core module
    "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/test", "usr/lib/python3.11/unittest/test",
    "usr/lib/python3/dist-packages/*.egg-info",
    "usr/lib/python3/dist-packages/numpy/**/tests", "usr/lib/python3/dist-packages/numpy/f2py",
    "usr/lib/python3/dist-packages/numpy/distutils", "usr/lib/python3/dist-packages/numpy/doc",
    "usr/lib/python3/dist-packages/numpy/core/include", "usr/lib/python3/dist-packages/numpy/core/lib",
    "usr/lib/python3/dist-packages/numpy/**/*.pyi", "usr/lib/python3/dist-packages/numpy/**/*.pxd",
)

# What would be in place after the maintainer scripts (update-alternatives, python3-minimal).
LINKS = {
    "usr/bin/python3": "python3.11",
    "usr/lib/x86_64-linux-gnu/libblas.so.3": "blas/libblas.so.3",
    "usr/lib/x86_64-linux-gnu/liblapack.so.3": "lapack/liblapack.so.3",
}

# The image's Python must have these, or the boot cannot work: checked in a chroot at build time.
SMOKE_TEST = ("import numpy, cffi, _cffi_backend, hashlib, zlib, mmap, threading, socket, json; "
              "import hal, drivers.cpu, kernelos, tools.cli; "
              "from drivers.cpu import native; why = native.unavailable_reason(); assert why is None, why; "
              "native.runtime(); "
              "ffi = cffi.FFI(); ffi.cdef('int abs(int);'); assert ffi.dlopen(None).abs(-3) == 3; "
              "assert float(numpy.ones(8) @ numpy.ones(8)) == 8.0; print('smoke test ok')")


def _remove(path: str):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _unpack(debs, root: str):
    for deb in debs:
        debian.extract(deb, root)
    for rel, target in LINKS.items():
        _remove(os.path.join(root, rel))
        os.symlink(target, os.path.join(root, rel))
    # busybox-static ships one binary; link each applet where the packages put nothing.
    applets = subprocess.run([os.path.join(root, "bin/busybox"), "--list-full"], check=True,
                             capture_output=True, text=True).stdout.split()
    for rel in applets:
        path = os.path.join(root, rel)
        if not os.path.lexists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.symlink("/bin/busybox", path)


def _prune(root: str):
    for pattern in PRUNE:
        for path in glob.glob(os.path.join(root, pattern), recursive=True):
            _remove(path)


def _library_dirs(root: str):
    return [os.path.join(root, d) for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
                                            "usr/lib/x86_64-linux-gnu/blas", "usr/lib/x86_64-linux-gnu/lapack")]


def _needed(path: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def _drop_unlinkable_modules(root: str) -> list[str]:
    """Remove Python extension modules that need a C library the image does not ship (ssl, sqlite,
    curses, ...), so importing one fails plainly instead of with a loader error. Returns their names."""
    dirs = _library_dirs(root)
    dropped = []
    for module in sorted(glob.glob(os.path.join(root, "usr/lib/python3*/**/*.so"), recursive=True)):
        missing = [lib for lib in _needed(module) if not any(os.path.lexists(os.path.join(d, lib)) for d in dirs)]
        if missing:
            os.unlink(module)
            dropped.append(os.path.basename(module).split(".")[0])
    return dropped


def _add_kernelos(repo: str, root: str, extra_files: dict):
    """The repo's runtime packages (Python and C sources: the cpu driver hashes its C sources to
    name its built runtime) plus prebuilt artefacts, {path under KERNELOS_DIR: source path}."""
    dest = root + KERNELOS_DIR
    for package in RUNTIME_PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(repo, package)):
            rel_dir = os.path.relpath(dirpath, repo)
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__"
                                 and os.path.join(rel_dir, d) not in SKIP_IN_IMAGE)
            for name in filenames:
                if name.endswith((".py", ".c", ".h")):
                    os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
                    shutil.copy2(os.path.join(dirpath, name), os.path.join(dest, rel_dir, name))
    for rel, source in extra_files.items():
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(source, os.path.join(dest, rel))


def _chroot_python(root: str, what: str, *args: str):
    """Run the image's own Python in a chroot of root (no /proc: nothing here needs it)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", **RUNTIME_ENV}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    done = subprocess.run([chroot, root, "/usr/bin/python3", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed in the image's Python (exit {done.returncode}):\n{done.stdout}{done.stderr}")


def build(debs, repo: str, init_script: str, root: str, extra_files: dict) -> list[str]:
    """Assemble the root file system in folder root (replaced). Returns the dropped module names."""
    if os.path.exists(root):
        shutil.rmtree(root)
    _unpack(debs, root)
    _prune(root)
    dropped = _drop_unlinkable_modules(root)
    _add_kernelos(repo, root, extra_files)
    for d in ("proc", "sys", "dev", "tmp", "run", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.makedirs(os.path.join(root, os.path.dirname(ENV_FILE)), exist_ok=True)
    with open(os.path.join(root, ENV_FILE), "w") as f:
        f.writelines(f"export {k}={v}\n" for k, v in RUNTIME_ENV.items())
    shutil.copy(init_script, os.path.join(root, "init"))
    os.chmod(os.path.join(root, "init"), 0o755)
    # Unchecked-hash bytecode: valid whatever mtimes the archive gives the sources.
    _chroot_python(root, "compiling bytecode", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                   "/usr/lib/python3.11", "/usr/lib/python3/dist-packages", KERNELOS_DIR)
    _chroot_python(root, "the smoke test", "-c", SMOKE_TEST)
    return dropped
