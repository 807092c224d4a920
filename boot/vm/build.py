"""`python -m boot.vm.build`: the bootable system image, a Linux kernel plus an initramfs holding a
minimal userland, Python with numpy and cffi, kernelos, the cpu runtime prebuilt, and a device image.

Outputs (under --out, default out/vm):
    vmlinuz          the kernel, from the Debian package
    rootfs.cpio.lz4  the initramfs root file system without a device image (rebuilt only when its
                     inputs change: package files, kernelos sources, /init, the cpu runtime)
    initrd.img       a cpio holding the device image as /image.kimg followed by rootfs.cpio.lz4:
                     the kernel unpacks concatenated archives, so any image boots the same base
Prints the sizes at the end. Needs root (chroot, for compiling bytecode with the image's Python).
"""

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time

from . import debian, rootfs
from .cpio import CpioWriter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INIT_SCRIPT = os.path.join(HERE, "init.sh")
PORTABLE_CPU_MARCH = "x86-64-v3"  # AVX2 + FMA: QEMU's software cpu (-cpu max) and any recent x86-64
DEMO_TARGETS = ("cpu",)  # a VM has no GPU; boot/ says so and falls back to the cpu device
IMAGE_PATH = "image.kimg"  # where /init finds the device image (kernel command line kos.image=)


def _mib(n_B: int) -> str:
    return f"{n_B / 2**20:.1f} MiB"


def _tree_size_B(root: str) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root) for f in files)


@contextlib.contextmanager
def _environment(**values):
    """The cpu driver's knobs are environment variables: set some for a while, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prebuild_cpu_runtime(stage: str) -> dict:
    """Build the cpu device's C runtime on this host into stage/cache (the VM has no compiler).
    Returns {path under the image's kernelos folder: built file}; the driver finds it there through
    KERNELOS_CACHE, under the same name, since its name hashes the (shipped) sources and flags."""
    from drivers.cpu import native
    with _environment(KERNELOS_CACHE=os.path.join(stage, rootfs.CACHE_SUBDIR),
                      KERNELOS_CPU_FFI=rootfs.RUNTIME_ENV["KERNELOS_CPU_FFI"]):
        native.runtime()  # builds it where the driver will look for it
        path = native._library_path()
    return {os.path.relpath(path, stage): str(path)}


def _digest(repo_packages, files) -> str:
    """sha256 over the repo packages' sources (.py, .c, .h) and the given files."""
    h = hashlib.sha256()
    paths = []
    for package in repo_packages:
        for d, _, names in os.walk(os.path.join(REPO, package)):
            paths += [os.path.join(d, n) for n in names if n.endswith((".py", ".c", ".h"))]
    for path in sorted(paths) + list(files):
        h.update(os.path.relpath(path, REPO).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _up_to_date(stamp: str, digest: str, *outputs: str) -> bool:
    if not all(os.path.exists(p) for p in (stamp, *outputs)):
        return False
    with open(stamp) as f:
        return f.read() == digest


def _write_stamp(stamp: str, digest: str):
    with open(stamp, "w") as f:
        f.write(digest)


def build_demo_image(dest: str):
    """The demo model's device image, with cpu kernels for any x86-64-v3 machine, not only this
    build host: the system image may boot elsewhere, and QEMU's emulated cpu has AVX2 and FMA but
    not every extension of the host."""
    from kernelos.builder.build import build_image
    from kernelos.builder.demo_model import demo_mlp
    from kernelos.builder.progress import Progress

    print(f"vm-image: building the demo device image {dest} (targets {', '.join(DEMO_TARGETS)})", flush=True)
    with _environment(KERNELOS_CPU_MARCH=PORTABLE_CPU_MARCH):
        build_image(demo_mlp(), dest, list(DEMO_TARGETS), progress=Progress(quiet=True))


@contextlib.contextmanager
def _replaced_on_success(dest: str):
    """Yields a temporary path next to dest; it replaces dest only if the block succeeds, and is
    removed otherwise, so dest is either the old file or a whole new one."""
    tmp = dest + ".tmp"
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_rootfs_cpio(root: str, dest: str):
    """The root file system as a cpio archive compressed with LZ4 (the kernel's legacy LZ4 format):
    a little larger than gzip but unpacked several times faster, which is seconds under emulation."""
    with _replaced_on_success(dest) as tmp:
        lz4 = subprocess.Popen(["lz4", "-l", "-9", "-q", "-f", "-", tmp], stdin=subprocess.PIPE)
        try:
            w = CpioWriter(lz4.stdin)
            w.add_dir("dev")
            w.add_char_device("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs exists
            w.add_tree(root)
            w.close()
            lz4.stdin.close()
        except BaseException as e:
            with contextlib.suppress(OSError):
                lz4.stdin.close()  # BrokenPipeError when lz4 is gone
            lz4.kill()
            lz4.wait()
            if isinstance(e, BrokenPipeError):
                raise RuntimeError("lz4 stopped reading the root file system archive") from e
            raise
        if lz4.wait() != 0:
            raise RuntimeError(f"lz4 failed compressing the root file system (exit {lz4.returncode})")


def write_initrd(rootfs_archive: str, image: str, dest: str):
    """dest = an uncompressed cpio holding image, then the root file system archive. The kernel
    unpacks concatenated archives in order; the image goes first because a legacy-LZ4 stream has no
    end marker and runs to the end of the initramfs."""
    with _replaced_on_success(dest) as tmp, open(tmp, "wb") as out:
        w = CpioWriter(out)
        with open(image, "rb") as f:
            w.add_file(IMAGE_PATH, f.read())
        w.close()
        out.write(b"\0" * (-out.tell() % 4))  # archives in an initramfs start 4-byte aligned
        with open(rootfs_archive, "rb") as base:
            shutil.copyfileobj(base, out)


def _demo_image(out: str) -> str:
    image, stamp = os.path.join(out, "demo.kimg"), os.path.join(out, "demo.stamp")
    digest = _digest(rootfs.RUNTIME_PACKAGES, [__file__])
    if not _up_to_date(stamp, digest, image):
        build_demo_image(image)
        _write_stamp(stamp, digest)
    return image


def _kernel(out: str, deb: str) -> str:
    kernel, stamp = os.path.join(out, "vmlinuz"), os.path.join(out, "vmlinuz.stamp")
    if not _up_to_date(stamp, os.path.basename(deb), kernel):
        unpacked = os.path.join(out, "kernel")
        shutil.rmtree(unpacked, ignore_errors=True)
        debian.extract(deb, unpacked, ["./boot/vmlinuz-*"])
        (found,) = os.listdir(os.path.join(unpacked, "boot"))
        shutil.copy(os.path.join(unpacked, "boot", found), kernel)
        _write_stamp(stamp, os.path.basename(deb))
    return kernel


def _rootfs_archive(out: str, debs) -> str:
    """rootfs.cpio.lz4, rebuilt when the packages, kernelos sources, the recipe or the runtime change."""
    stage, root, archive = (os.path.join(out, n) for n in ("stage", "rootfs", "rootfs.cpio.lz4"))
    extra = _prebuild_cpu_runtime(stage)
    recipe = [INIT_SCRIPT, *(os.path.join(HERE, f) for f in ("rootfs.py", "debian.py", "cpio.py"))]
    digest = _digest(rootfs.RUNTIME_PACKAGES, [*recipe, *extra.values()]) + \
        hashlib.sha256(" ".join(os.path.basename(d) for d in debs).encode()).hexdigest()
    stamp = os.path.join(out, "rootfs.stamp")
    if not _up_to_date(stamp, digest, archive):
        print("vm-image: assembling the root file system", flush=True)
        dropped = rootfs.build(debs, REPO, INIT_SCRIPT, root, extra_files=extra)
        print(f"vm-image: Python modules left out (their C libraries are not shipped): {' '.join(dropped)}")
        _write_rootfs_cpio(root, archive)
        _write_stamp(stamp, digest)
    return archive


def build(out: str, image: str = None) -> dict:
    """Build (incrementally) into out, with the demo device image unless image names another;
    prints and returns the output paths and sizes."""
    t0 = time.monotonic()
    os.makedirs(out, exist_ok=True)
    image = image or _demo_image(out)
    kernel_pkg = debian.kernel_package()
    debs = debian.download((kernel_pkg, *debian.USERLAND_PACKAGES), os.path.join(out, "debs"))
    kernel = _kernel(out, debs.pop(kernel_pkg))
    archive = _rootfs_archive(out, list(debs.values()))
    initrd = os.path.join(out, "initrd.img")
    write_initrd(archive, image, initrd)

    sizes = {"kernel_B": os.path.getsize(kernel), "initrd_B": os.path.getsize(initrd),
             "rootfs_B": _tree_size_B(os.path.join(out, "rootfs")), "image_B": os.path.getsize(image)}
    print(f"vm-image: kernel {kernel} {_mib(sizes['kernel_B'])} ({kernel_pkg})")
    print(f"vm-image: initramfs {initrd} {_mib(sizes['initrd_B'])} (root file system {_mib(sizes['rootfs_B'])} "
          f"unpacked; device image {image} {_mib(sizes['image_B'])})")
    print(f"vm-image: system image size {_mib(sizes['kernel_B'] + sizes['initrd_B'])} (kernel + initramfs), "
          f"built in {time.monotonic() - t0:.1f} s")
    return {"kernel": kernel, "initrd": initrd, "rootfs_archive": archive, "image": image, **sizes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m boot.vm.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "out", "vm"), help="output folder (default out/vm)")
    p.add_argument("--image", help="the device image (.kimg) the VM boots (default: the demo image, built "
                                    "into the output folder)")
    args = p.parse_args(argv)
    if args.image and not os.path.isfile(args.image):
        print(f"vm-image: no device image {args.image}", file=sys.stderr)
        return 2
    build(args.out, args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
