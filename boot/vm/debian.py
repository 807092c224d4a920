"""Debian packages for the system image: which ones, fetched with apt, unpacked with dpkg-deb.

Nothing prebuilt is downloaded: the kernel, busybox, Python, numpy and cffi all come from the
Debian archive the machine's apt is configured for, so the image is rebuilt from packages on a fresh
machine. Packages are cached by file name in a folder, so a second build downloads nothing.
"""

import glob
import os
import re
import shutil
import subprocess

# A small kernel for virtual machines: virtio, the 8250 serial console, ACPI power-off built in.
KERNEL_PACKAGE = "linux-image-cloud-amd64"

# The userland: busybox for /init's shell and tools, the Python runtime, numpy (with the reference
# BLAS/LAPACK it links) and cffi (its C backend for the cpu device, pycparser + ply for cdef).
# Listed by hand rather than walked from Depends: the walk pulls in dpkg, debconf, perl-base and
# friends that a read-only appliance never runs. The build's smoke test proves the list complete.
USERLAND_PACKAGES = (
    "busybox-static",
    "libc6", "libgcc-s1", "zlib1g", "libexpat1", "libffi8", "libbz2-1.0", "liblzma5",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "python3-numpy", "libblas3", "liblapack3", "libgfortran5", "libquadmath0",
    "python3-cffi-backend", "python3-cffi", "python3-pycparser", "python3-ply",
)


def _apt_update():
    print("vm-image: refreshing apt's package lists (apt-get update)", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)


def _kernel_dependency():
    done = subprocess.run(["apt-cache", "depends", KERNEL_PACKAGE], capture_output=True, text=True)
    deps = re.findall(r"^\s+Depends: (linux-image-\S+)$", done.stdout, re.M)
    return deps[0] if deps else None


def kernel_package() -> str:
    """The versioned kernel package the meta-package points at (linux-image-6.1.0-N-cloud-amd64);
    refreshes apt's lists once if they do not know it (a fresh machine has none)."""
    found = _kernel_dependency()
    if found is None:
        _apt_update()
        found = _kernel_dependency()
    if found is None:
        raise RuntimeError(f"apt knows no {KERNEL_PACKAGE}: is a Debian archive in apt's sources?")
    return found


def _cached_deb(cache_dir: str, package: str):
    # apt names files NAME_VERSION_ARCH.deb, with ':' in the version escaped as %3a.
    found = sorted(glob.glob(os.path.join(cache_dir, f"{package}_*.deb")))
    return found[-1] if found else None


def download(packages, cache_dir: str) -> dict[str, str]:
    """package -> .deb path, fetching with 'apt-get download' only those not cached yet."""
    os.makedirs(cache_dir, exist_ok=True)
    missing = [p for p in packages if not _cached_deb(cache_dir, p)]
    if missing:
        print(f"vm-image: downloading {len(missing)} Debian packages: {' '.join(missing)}", flush=True)
        # apt's sandbox user cannot write into our folder; say so to apt instead of warning per file.
        fetch = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *missing]
        if subprocess.run(fetch, cwd=cache_dir, stdout=subprocess.DEVNULL).returncode != 0:
            _apt_update()  # stale lists name versions the archive no longer has
            subprocess.run(fetch, cwd=cache_dir, check=True, stdout=subprocess.DEVNULL)
    debs = {p: _cached_deb(cache_dir, p) for p in packages}
    absent = [p for p, d in debs.items() if d is None]
    if absent:
        raise RuntimeError(f"apt-get download did not produce {absent}")
    return debs


def extract(deb: str, dest: str, members=()):
    """Unpack a .deb's files into dest (no maintainer scripts run), optionally only some members.
    A dest this call created is removed again if unpacking fails; files unpacked into an existing
    dest stay (rootfs.build assembles its root from scratch each time, so a failed build's root is
    never used)."""
    created = not os.path.exists(dest)
    os.makedirs(dest, exist_ok=True)
    try:
        if members:
            _extract_members(deb, dest, members)
        else:
            subprocess.run(["dpkg-deb", "-x", deb, dest], check=True)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise


def _extract_members(deb: str, dest: str, members):
    """dpkg-deb --fsys-tarfile piped into tar; both processes are waited for whatever happens."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE) as fsys:
        try:
            untar = subprocess.run(["tar", "-x", "-C", dest, "--wildcards", "--", *members], stdin=fsys.stdout)
        finally:
            fsys.stdout.close()  # a tar that stopped reading now makes dpkg-deb fail instead of block
            fsys.wait()
    if untar.returncode != 0:
        raise RuntimeError(f"tar could not extract {list(members)} from {deb} (exit {untar.returncode})")
    if fsys.returncode != 0:
        raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb} failed (exit {fsys.returncode})")
