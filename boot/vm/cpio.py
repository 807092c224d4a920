"""A writer for the kernel's initramfs format: a "newc" cpio archive.

The kernel unpacks it into its root tmpfs before running /init. Written here so the build needs no
cpio tool and no root rights for device nodes (/dev/console is just an entry), and so archives are
reproducible: every entry is owned by root with mtime 0, in sorted order.
"""

import os
import stat

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


class CpioWriter:
    """Appends entries to a binary stream; close() writes the trailer (the stream stays open)."""

    def __init__(self, stream):
        self._out = stream
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)):
        name_b = name.lstrip("/").encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
        header = _MAGIC + b"".join(b"%08X" % f for f in fields)
        self._out.write(header + name_b + _pad4(len(header) + len(name_b)))
        self._out.write(data + _pad4(len(data)))
        self._ino += 1

    def add_dir(self, name: str, perm: int = 0o755):
        self._entry(name, stat.S_IFDIR | perm)

    def add_file(self, name: str, data: bytes, perm: int = 0o644):
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, name: str, major: int, minor: int, perm: int = 0o600):
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def add_tree(self, root: str):
        """Every directory, regular file and symlink under root, with paths relative to it."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            if rel_dir != ".":
                self.add_dir(rel_dir, stat.S_IMODE(os.lstat(dirpath).st_mode))
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(rel, os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        self.add_file(rel, f.read(), stat.S_IMODE(st.st_mode))

    def close(self):
        self._entry(_TRAILER, 0)
