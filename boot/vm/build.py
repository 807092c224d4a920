"""`python -m boot.vm.build`: the bootable system image, a Linux kernel plus an initramfs holding a
minimal userland, Python with numpy and cffi, kernelos, the cpu runtime prebuilt, and a device image.

Outputs (under --out, default out/vm):
    vmlinuz          the kernel, from the Debian package
    rootfs.cpio.gz   the initramfs root file system without a device image (rebuilt only when its
                     inputs change: package files, kernelos sources, /init, the cpu runtime)
    initrd.img       rootfs.cpio.gz followed by a cpio holding the device image as /image.kimg; the
                     kernel unpacks concatenated archives in order, so any image boots the same base
Prints the sizes at the end. Needs root (chroot, for compiling bytecode with the image's Python).
"""

import argparse
import gzip
import hashlib
import io
import os
import shutil
import sys
import time

from . import debian, rootfs
from .cpio import CpioWriter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INIT_SCRIPT = os.path.join(HERE, "init.sh")
IMAGE_PATH = "image.kimg"  # where /init finds the device image (kernel command line kos.image=)
CPU_RUNTIME_CACHE = "cache"  # under rootfs.KERNELOS_DIR: KERNELOS_CACHE in the image


def _mib(n_B: int) -> str:
    return f"{n_B / 2**20:.1f} MiB"


def _tree_size_B(root: str) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root) for f in files)


def _prebuild_cpu_runtime(stage: str) -> dict:
    """Build the cpu device's C runtime on this host into stage/cache (the VM has no compiler).
    Returns {path under the image's kernelos folder: built file}; the driver finds it there through
    KERNELOS_CACHE, under the same name, since its name hashes the (shipped) sources and flags."""
    os.environ["KERNELOS_CACHE"] = os.path.join(stage, CPU_RUNTIME_CACHE)
    try:
        from drivers.cpu import native
    except ImportError:  # TODO(vm): remove once the cpu driver is merged
        return {}
    native.runtime()
    built = str(native._library_path())
    return {os.path.relpath(built, stage): built}


def _inputs_digest(debs: dict, extra_files) -> str:
    """What the root file system is made of; a changed digest means a rebuild."""
    h = hashlib.sha256()
    for path in sorted(debs.values()):
        h.update(os.path.basename(path).encode())
    for package in rootfs.RUNTIME_PACKAGES:
        for d, dirnames, files in sorted(os.walk(os.path.join(REPO, package))):
            dirnames.sort()
            for name in sorted(files):
                if name.endswith((".py", ".c", ".h")):
                    path = os.path.join(d, name)
                    h.update(os.path.relpath(path, REPO).encode())
                    with open(path, "rb") as f:
                        h.update(f.read())
    for path in [INIT_SCRIPT, os.path.join(HERE, "rootfs.py"), os.path.join(HERE, "debian.py"), *extra_files]:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _write_rootfs_cpio(root: str, dest: str):
    with open(dest + ".tmp", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        w = CpioWriter(gz)
        w.add_dir("dev")
        w.add_char_device("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs exists
        w.add_tree(root)
        w.close()
    os.replace(dest + ".tmp", dest)


def write_initrd(rootfs_cpio: str, image: str, dest: str):
    """dest = the root file system archive followed by an (uncompressed) one holding image."""
    segment = io.BytesIO()
    w = CpioWriter(segment)
    with open(image, "rb") as f:
        w.add_file(IMAGE_PATH, f.read())
    w.close()
    with open(dest + ".tmp", "wb") as out, open(rootfs_cpio, "rb") as base:
        shutil.copyfileobj(base, out)
        out.write(b"\0" * (-out.tell() % 4))  # archives in an initramfs start 4-byte aligned
        out.write(segment.getvalue())
    os.replace(dest + ".tmp", dest)


def build(out: str, image: str) -> dict:
    """Build (incrementally) into out; returns the output paths and sizes."""
    t0 = time.monotonic()
    kernel_pkg = debian.kernel_package()
    debs = debian.download((kernel_pkg, *debian.USERLAND_PACKAGES), os.path.join(out, "debs"))
    kernel = os.path.join(out, "vmlinuz")
    if not os.path.exists(kernel):
        debian.extract(debs[kernel_pkg], os.path.join(out, "kernel"), ["./boot/vmlinuz-*"])
        (found,) = [os.path.join(out, "kernel", "boot", f) for f in os.listdir(os.path.join(out, "kernel", "boot"))]
        shutil.copy(found, kernel)

    stage = os.path.join(out, "stage")
    extra = _prebuild_cpu_runtime(stage)
    root, base = os.path.join(out, "rootfs"), os.path.join(out, "rootfs.cpio.gz")
    digest, stamp = _inputs_digest(debs, extra.values()), os.path.join(out, "rootfs.stamp")
    if not (os.path.exists(base) and os.path.exists(stamp) and open(stamp).read() == digest):
        print("vm-image: assembling the root file system", flush=True)
        dropped = rootfs.build([d for p, d in debs.items() if p != kernel_pkg], REPO, INIT_SCRIPT, root,
                               extra_files=extra)
        print(f"vm-image: Python modules left out (their C libraries are not shipped): {' '.join(dropped)}")
        _write_rootfs_cpio(root, base)
        with open(stamp, "w") as f:
            f.write(digest)
    initrd = os.path.join(out, "initrd.img")
    write_initrd(base, image, initrd)
    sizes = {"kernel_B": os.path.getsize(kernel), "initrd_B": os.path.getsize(initrd),
             "rootfs_B": _tree_size_B(root) if os.path.isdir(root) else 0, "image_B": os.path.getsize(image)}
    print(f"vm-image: kernel {kernel} {_mib(sizes['kernel_B'])} ({os.path.basename(debs[kernel_pkg])})")
    print(f"vm-image: initramfs {initrd} {_mib(sizes['initrd_B'])} (root file system {_mib(sizes['rootfs_B'])} "
          f"unpacked, device image {image} {_mib(sizes['image_B'])})")
    print(f"vm-image: system image size {_mib(sizes['kernel_B'] + sizes['initrd_B'])} (kernel + initramfs), "
          f"built in {time.monotonic() - t0:.1f} s")
    return {"kernel": kernel, "initrd": initrd, "rootfs_cpio": base, **sizes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m boot.vm.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "out", "vm"), help="output folder (default out/vm)")
    p.add_argument("--image", required=True, help="the device image (.kimg) the VM boots")
    args = p.parse_args(argv)
    if not os.path.isfile(args.image):
        print(f"vm-image: no device image {args.image} (make builds it first)", file=sys.stderr)
        return 2
    build(args.out, args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
