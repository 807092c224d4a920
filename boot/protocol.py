"""The serving protocol (docs/serving-protocol.md): length-prefixed frames of a small JSON header
and raw tensor bytes. No pickle: the only decoder is json, tensors are plain bytes.

    frame  = MAGIC (4 B "KOS1") | header_B (u32 LE) | body_B (u64 LE) | header (UTF-8 JSON) | body
    header = {"op": "infer", "id": ..., "tensors": [{"name", "dtype", "shape"}, ...]}   request
             {"op": "stats" | "info", "id": ...}                                           request
             {"ok": true, "id": ..., "tensors": [...], ...}                                 reply
             {"ok": false, "id": ..., "error": {"type": "InvalidArgument", "message": ...}} reply
    body   = the tensors' bytes, C order, little-endian, concatenated in the order listed

Limits are checked on the prefix, before anything else is read or allocated.
"""

import json
import socket
import struct

import numpy as np

from hal.errors import KernelosError
from kernelos.dag import DTYPES

MAGIC = b"KOS1"
PREFIX = struct.Struct("<4sIQ")
HEADER_MAX_B = 64 << 10
BODY_MAX_B = 256 << 20
MAX_TENSORS = 256
MAX_DIMS = 8


class ProtocolError(KernelosError):
    """A frame or request that breaks the serving protocol (bad framing, sizes, JSON or tensors)."""


class FramingError(ProtocolError):
    """The byte stream itself is broken (bad magic, oversized or truncated frame): the connection
    cannot be resynchronised, so the server replies and then closes it."""


def recv_exact(sock: socket.socket, size_B: int) -> bytes:
    """size_B bytes, or FramingError if the peer closes first (b"" for size 0)."""
    chunks, left = [], size_B
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise FramingError(f"connection closed with {left} of {size_B} B of the frame still to come")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket, body_max_B: int = BODY_MAX_B):
    """(header dict, body bytes), or None on a clean end of stream before a frame.
    Raises FramingError for a broken stream, ProtocolError for a bad header (stream still in sync)."""
    first = sock.recv(PREFIX.size)
    if not first:
        return None
    prefix = first + recv_exact(sock, PREFIX.size - len(first))
    magic, header_B, body_B = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise FramingError(f"bad frame magic {magic!r}, expected {MAGIC!r}")
    if header_B > HEADER_MAX_B or body_B > body_max_B:
        raise FramingError(f"frame declares a {header_B} B header and a {body_B} B body; limits are "
                           f"{HEADER_MAX_B} B and {body_max_B} B")
    raw_header = recv_exact(sock, header_B)
    body = recv_exact(sock, body_B)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {str(e)[:200]}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header must be a JSON object")
    return header, body


def encode_frame(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(MAGIC, len(raw), len(body)) + raw + body


def pack_tensors(arrays: dict) -> tuple:
    """([{"name", "dtype", "shape"}], body bytes) for name -> array."""
    specs, parts = [], []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in DTYPES:
            raise ProtocolError(f"tensor {name!r} has dtype {arr.dtype}, not one of {', '.join(DTYPES)}")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        specs.append({"name": str(name), "dtype": arr.dtype.name, "shape": list(arr.shape)})
        parts.append(arr.tobytes())
    return specs, b"".join(parts)


def unpack_tensors(specs, body: bytes) -> dict:
    """name -> array from a header's "tensors" list and the body; ProtocolError on any mismatch."""
    if not isinstance(specs, list) or len(specs) > MAX_TENSORS:
        raise ProtocolError(f"'tensors' must be a list of at most {MAX_TENSORS} {{name, dtype, shape}}")
    out, pos = {}, 0
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ProtocolError(f"tensor {i} must be an object with name, dtype, shape")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        if not isinstance(name, str) or not name or name in out:
            raise ProtocolError(f"tensor {i}: name must be a unique non-empty string, got {name!r:.80}")
        if dtype not in DTYPES:
            raise ProtocolError(f"tensor {name!r}: dtype {dtype!r:.40} is not one of {', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or \
                any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise ProtocolError(f"tensor {name!r}: shape must be a list of at most {MAX_DIMS} non-negative ints")
        size_B = np.dtype(dtype).itemsize
        for d in shape:
            size_B *= d
        if pos + size_B > len(body):
            raise ProtocolError(f"tensor {name!r} ({dtype}{shape}) needs {size_B} B at offset {pos}; "
                                f"the body has {len(body)} B")
        try:  # an empty tensor may still declare dims numpy cannot hold ([0, 10**30])
            out[name] = np.frombuffer(body, dtype=np.dtype(dtype).newbyteorder("<"), count=size_B // np.dtype(dtype).itemsize,
                                      offset=pos).reshape(shape).astype(dtype, copy=False)
        except ValueError as e:
            raise ProtocolError(f"tensor {name!r}: shape {shape} is not a valid array shape: {e}") from None
        pos += size_B
    if pos != len(body):
        raise ProtocolError(f"the body has {len(body)} B but the tensors take {pos} B")
    return out


def error_header(request_id, exc: BaseException) -> dict:
    return {"ok": False, "id": request_id, "error": {"type": type(exc).__name__, "message": str(exc)}}


def default_socket_path(image_path) -> str:
    """Where `kernelos boot IMAGE` listens unless told otherwise, and where `kernelos request IMAGE`
    looks: $XDG_RUNTIME_DIR (or /tmp)/kernelos-<model file name>-<hash of its absolute path>.sock."""
    import hashlib
    import os

    path = os.path.abspath(os.fspath(image_path))
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    stem = os.path.splitext(os.path.basename(path))[0][:40]
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or "/tmp", f"kernelos-{stem}-{digest}.sock")
