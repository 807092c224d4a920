"""The system image build's steps that run external tools (dpkg-deb | tar, lz4) leave nothing behind
when something fails: no child process, no half-written file or folder at the destination. Failures
are injected with a stand-in tool on PATH that exits at once without reading its input."""

import os
import shutil
import subprocess

import pytest

from boot.vm import build, debian

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("dpkg-deb", "tar", "lz4")),
                                reason="needs dpkg-deb, tar and lz4")
PAYLOAD_B = 1 << 20  # far more than a pipe holds, so a writer nobody reads from would block


def _children() -> set:
    """Live or unreaped child processes of this process (every thread's)."""
    kids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids.update(f.read().split())
    return kids


@pytest.fixture
def deb(tmp_path):
    """A small .deb with ./boot/vmlinuz-test (random bytes) and ./usr/share/doc/x."""
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text("Package: kos-test\nVersion: 1\nArchitecture: all\n"
                                            "Maintainer: t <t@example.com>\nDescription: t\n")
    (pkg / "boot").mkdir()
    (pkg / "boot" / "vmlinuz-test").write_bytes(os.urandom(PAYLOAD_B))
    (pkg / "usr" / "share" / "doc").mkdir(parents=True)
    (pkg / "usr" / "share" / "doc" / "x").write_text("x")
    out = tmp_path / "kos-test.deb"
    subprocess.run(["dpkg-deb", "-Znone", "--build", str(pkg), str(out)], check=True, stdout=subprocess.DEVNULL)
    return str(out)


@pytest.fixture
def failing_tool(tmp_path, monkeypatch):
    """failing_tool(name): `name` on PATH now exits 3 at once, reading nothing."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    def make(name):
        tool = fake_bin / name
        tool.write_text("#!/bin/sh\nexit 3\n")
        tool.chmod(0o755)
    return make


def test_extract_members(deb, tmp_path):
    dest = tmp_path / "unpacked"
    debian.extract(deb, str(dest), ["./boot/vmlinuz-*"])
    assert os.listdir(dest / "boot") == ["vmlinuz-test"] and not (dest / "usr").exists()
    assert (dest / "boot" / "vmlinuz-test").stat().st_size == PAYLOAD_B


def test_extract_whose_tar_fails_reaps_dpkg_deb_and_removes_dest(deb, tmp_path, failing_tool):
    failing_tool("tar")
    dest = tmp_path / "unpacked"
    before = _children()
    with pytest.raises(RuntimeError, match="tar could not extract"):
        debian.extract(deb, str(dest), ["./boot/vmlinuz-*"])
    assert _children() == before  # dpkg-deb did not stay blocked on a pipe nobody reads
    assert not dest.exists()


def test_extract_of_a_damaged_deb_removes_the_dest_it_created(tmp_path):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"!<arch>\nnot really a package" * 100)
    for members in ((), ("./boot/*",)):
        dest = tmp_path / "unpacked"
        with pytest.raises((RuntimeError, subprocess.CalledProcessError)):
            debian.extract(str(bad), str(dest), members)
        assert not dest.exists()


def _root(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(os.urandom(PAYLOAD_B))
    return root


def test_rootfs_archive_failures_keep_the_old_archive_and_leave_no_temporary(tmp_path, failing_tool):
    root, dest = _root(tmp_path), tmp_path / "rootfs.cpio.lz4"
    build._write_rootfs_cpio(str(root), str(dest))
    good = dest.read_bytes()
    assert subprocess.run(["lz4", "-d", "-c", str(dest)], capture_output=True, check=True).stdout.startswith(b"070701")

    (root / os.fsdecode(b"name-\xff-not-utf8")).write_text("x")  # the cpio writer refuses this name
    before = _children()
    with pytest.raises(UnicodeEncodeError):
        build._write_rootfs_cpio(str(root), str(dest))
    assert _children() == before and dest.read_bytes() == good and not os.path.exists(f"{dest}.tmp")

    os.unlink(root / os.fsdecode(b"name-\xff-not-utf8"))
    failing_tool("lz4")
    with pytest.raises(RuntimeError, match="lz4"):
        build._write_rootfs_cpio(str(root), str(dest))
    assert _children() == before and dest.read_bytes() == good and not os.path.exists(f"{dest}.tmp")


def test_initrd_is_the_image_then_the_archive_and_a_failure_leaves_no_temporary(tmp_path):
    image, dest, archive = tmp_path / "a.kimg", tmp_path / "initrd.img", tmp_path / "rootfs.cpio.lz4"
    image.write_bytes(b"kimg" + os.urandom(1000))
    build._write_rootfs_cpio(str(_root(tmp_path)), str(archive))
    build.write_initrd(str(archive), str(image), str(dest))
    initrd = dest.read_bytes()
    assert initrd.startswith(b"070701") and image.read_bytes() in initrd and initrd.endswith(archive.read_bytes())
    with pytest.raises(FileNotFoundError):
        build.write_initrd(str(tmp_path / "missing.cpio.lz4"), str(image), str(dest))
    assert dest.read_bytes() == initrd and not os.path.exists(f"{dest}.tmp")
