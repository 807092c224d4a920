"""Serving: 1,000 good requests from 8 clients at once over the UNIX socket and loopback TCP, each
reply checked against numpy float64, while 2 more clients send the catalogue of bad requests; each
bad request answered with its typed error; the server still up and correct afterwards; stats."""

import json
import socket
import struct
import threading

import numpy as np
import pytest

from boot import protocol as proto
from boot.client import Client
from boot.server import Server
from hal.errors import InvalidArgument
from kernelos.model import load_model

from .models import mlp_inputs, mlp_reference


@pytest.fixture(scope="module")
def served(mlp_image, tmp_path_factory):
    path, weights = mlp_image
    model = load_model(path, "cpu")
    sock = str(tmp_path_factory.mktemp("srv") / "kos.sock")
    server = Server(model, unix_path=sock, tcp="127.0.0.1:0", idle_timeout_s=5.0).start()
    yield server, weights
    server.close()
    model.close()


def test_1000_good_requests_from_8_clients_at_once(served):
    server, weights = served
    unix, tcp = server.addresses
    failures, done = [], []
    with Client(unix) as c:
        before = c.stats()

    def client(i):
        rng = np.random.default_rng(1000 + i)
        try:
            with Client(unix if i % 2 else f"tcp://{tcp}") as c:
                for _ in range(125):
                    x = mlp_inputs(4, rng)
                    out = c.infer(x)
                    ref = mlp_reference(x["x"], weights)
                    for name in ("y", "hidden"):
                        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)
                    done.append(1)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            failures.append(repr(e))

    bad_replies = []

    def bad_client():  # the whole bad-request catalogue, on fresh connections, while the good ones run
        try:
            for what, data, error, _ in BAD_REQUESTS:
                with _raw(unix) as s:
                    s.sendall(data)
                    header, _ = proto.read_frame(s, body_max_B=1 << 20)
                    bad_replies.append((what, header["error"]["type"] == error))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            failures.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=bad_client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == [] and len(done) == 1000
    assert len(bad_replies) == 2 * len(BAD_REQUESTS) and all(ok for _, ok in bad_replies), bad_replies
    with Client(unix) as c:
        stats = c.stats()
    assert stats["count"] - before["count"] == 1000 and stats["errors"] - before["errors"] == 2 * len(BAD_REQUESTS)
    assert 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p90"] <= stats["latency_ms"]["p99"] <= stats["latency_ms"]["max"]


def _raw(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(address)
    return s


def _frame(header, body=b"", magic=proto.MAGIC, header_B=None, body_B=None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<4sIQ", magic, len(raw) if header_B is None else header_B,
                       len(body) if body_B is None else body_B) + raw + body


GOOD_X = np.ones((4, 16), np.float32)
GOOD_SPEC = [{"name": "x", "dtype": "float32", "shape": [4, 16]}]


def _infer(tensors, body):
    return _frame({"op": "infer", "tensors": tensors}, body)


# (what, bytes to send, error type expected, connection stays usable)
BAD_REQUESTS = [
    ("bad magic", _frame({"op": "stats"}, magic=b"HTTP"), "FramingError", False),
    ("garbage", bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "FramingError", False),
    ("huge declared header", _frame({"op": "stats"}, header_B=1 << 31), "FramingError", False),
    ("huge declared body", _frame({"op": "stats"}, body_B=1 << 60), "FramingError", False),
    ("body over the server's limit", _frame({"op": "stats"}, body_B=1 << 30), "FramingError", False),
    ("header not JSON", _frame(b"\x80\x04\x95pickle?"), "ProtocolError", True),
    ("header a JSON list", _frame(b"[1, 2]"), "ProtocolError", True),
    ("header nested 60000 deep", _frame(b"[" * 60000), "ProtocolError", True),
    ("unknown op", _frame({"op": "reboot"}), "ProtocolError", True),
    ("no tensors", _frame({"op": "infer"}), "ProtocolError", True),
    ("wrong dtype", _infer([{"name": "x", "dtype": "float64", "shape": [4, 16]}], GOOD_X.astype(np.float64).tobytes()),
     "InvalidArgument", True),
    ("wrong shape", _infer([{"name": "x", "dtype": "float32", "shape": [16, 4]}], GOOD_X.tobytes()), "InvalidArgument", True),
    ("wrong name", _infer([{"name": "z", "dtype": "float32", "shape": [4, 16]}], GOOD_X.tobytes()), "InvalidArgument", True),
    ("extra tensor", _infer(GOOD_SPEC + [{"name": "z", "dtype": "int8", "shape": [1]}], GOOD_X.tobytes() + b"\1"),
     "InvalidArgument", True),
    ("huge declared shape", _infer([{"name": "x", "dtype": "float32", "shape": [1 << 40, 1 << 40]}], GOOD_X.tobytes()),
     "ProtocolError", True),
    ("empty tensor, dim over int64", _infer([{"name": "x", "dtype": "float32", "shape": [0, 10 ** 30]}], b""),
     "ProtocolError", True),
    ("empty tensor, too many elements", _infer([{"name": "x", "dtype": "float32", "shape": [0, 1 << 62, 1 << 62]}], b""),
     "ProtocolError", True),
    ("body shorter than tensors", _infer(GOOD_SPEC, GOOD_X.tobytes()[:-4]), "ProtocolError", True),
    ("body longer than tensors", _infer([{"name": "x", "dtype": "float32", "shape": [4, 15]}], GOOD_X.tobytes()),
     "ProtocolError", True),
    ("object dtype", _infer([{"name": "x", "dtype": "object", "shape": [4, 16]}], GOOD_X.tobytes()), "ProtocolError", True),
    ("negative dim", _infer([{"name": "x", "dtype": "float32", "shape": [-4, 16]}], GOOD_X.tobytes()), "ProtocolError", True),
    ("bool dim", _infer([{"name": "x", "dtype": "float32", "shape": [True, 16]}], b""), "ProtocolError", True),
    ("tensors not a list", _infer({"x": 1}, b""), "ProtocolError", True),
    ("duplicate tensor", _infer(GOOD_SPEC * 2, GOOD_X.tobytes() * 2), "ProtocolError", True),
    ("too many tensors", _infer([{"name": f"t{i}", "dtype": "int8", "shape": [0]} for i in range(300)], b""),
     "ProtocolError", True),
]


@pytest.mark.parametrize("what, data, error, usable", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_gets_typed_error_and_server_stays_up(served, what, data, error, usable):
    server, weights = served
    unix = server.addresses[0]
    with _raw(unix) as s:
        s.sendall(data)
        header, _ = proto.read_frame(s, body_max_B=1 << 20)
        assert header["ok"] is False and header["error"]["type"] == error, header
        assert header["error"]["message"]
        if usable:  # same connection: a good request still works
            s.sendall(_infer(GOOD_SPEC, GOOD_X.tobytes()))
            reply, body = proto.read_frame(s)
            assert reply["ok"], reply
    x = mlp_inputs(4, np.random.default_rng(7))
    with Client(unix) as c:
        np.testing.assert_allclose(c.infer(x)["y"], mlp_reference(x["x"], weights)["y"], rtol=1e-5, atol=1e-5)


def test_truncated_frames_and_dropped_connections(served):
    server, weights = served
    unix = server.addresses[0]
    good = _infer(GOOD_SPEC, GOOD_X.tobytes())
    for cut in (1, 7, proto.PREFIX.size, proto.PREFIX.size + 5, len(good) - 1):
        with _raw(unix) as s:
            s.sendall(good[:cut])  # then hang up mid-frame
    with _raw(unix) as s:  # hang up mid-frame but keep the socket half-open: the idle timeout reclaims it
        s.sendall(good[:20])
        s.shutdown(socket.SHUT_WR)
        header, _ = proto.read_frame(s) or ({"ok": None}, b"")
        assert header["ok"] is False and header["error"]["type"] == "FramingError"
    x = mlp_inputs(4, np.random.default_rng(8))
    with Client(unix) as c:
        np.testing.assert_allclose(c.infer(x)["hidden"], mlp_reference(x["x"], weights)["hidden"], rtol=1e-5, atol=1e-5)
        info = c.info()
    assert info["inputs"] == GOOD_SPEC and info["model"] == "mlp2"


def test_client_raises_the_typed_error(served):
    server, _ = served
    with Client(server.addresses[0]) as c:
        with pytest.raises(InvalidArgument, match=r"input 'x' is float64\[4, 16\]; model 'mlp2' takes \{x: float32\[4, 16\]\}"):
            c.infer({"x": GOOD_X.astype(np.float64)})
        assert c.infer({"x": GOOD_X})["y"].shape == (4, 8)


def test_second_server_on_a_live_socket_is_refused(served):
    server, _ = served
    from hal.errors import KernelosError
    with pytest.raises(KernelosError, match="already listening"):
        Server(server.model, unix_path=server.addresses[0]).start()


def test_bad_tcp_address_leaves_no_unix_listener_behind(served, tmp_path):
    """A bad --tcp is refused before anything listens: no socket file, no serving thread left."""
    import os

    from hal.errors import KernelosError
    server, _ = served
    sock = str(tmp_path / "bad-tcp.sock")
    threads_before = set(threading.enumerate())
    with pytest.raises(KernelosError, match="bad TCP address"):
        Server(server.model, unix_path=sock, tcp="localhost:http").start()
    assert not os.path.exists(sock)
    assert not [t for t in set(threading.enumerate()) - threads_before if t.name.startswith("kernelos-serve")]


@pytest.mark.parametrize("address", ["localhost:http", "127.0.0.1:\u00b2", "70000", ":"])
def test_bad_tcp_addresses_are_typed_errors(address):
    from boot.server import parse_tcp
    from hal.errors import KernelosError
    with pytest.raises(KernelosError, match="bad TCP address"):
        parse_tcp(address)


def test_client_without_a_tcp_server_or_reply_raises_typed_errors():
    """Nothing listening on the TCP port, or a server that never replies: KernelosError naming the
    address, not a bare OSError."""
    from hal.errors import KernelosError
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with pytest.raises(KernelosError, match=f"cannot connect to 127.0.0.1:{port}"):
            Client(f"127.0.0.1:{port}")  # bound, not listening: refused
        listener.listen()
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=0.2) as c:  # accepted by the kernel, never answered
            with pytest.raises(KernelosError, match=f"no reply from tcp://127.0.0.1:{port}"):
                c.stats()


def test_serve_restores_sigterm_when_the_server_cannot_start(served, tmp_path):
    """boot's _serve sets a SIGTERM handler that only stops serving; a server that fails to start
    must not leave it behind (SIGTERM would then do nothing to the process)."""
    import signal

    from boot.sequence import _serve
    from hal.errors import KernelosError
    server, _ = served
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KernelosError, match="is not a socket"):
        _serve(server.model, str(not_a_socket), None, say=lambda line: None)
    assert signal.getsignal(signal.SIGTERM) is before


def test_close_leaves_a_socket_file_that_another_server_took_over(served, tmp_path):
    """If the socket file was replaced after we bound it (someone removed it and bound their own),
    close() must not remove the newcomer's file; it removes its own otherwise."""
    import os

    server, _ = served
    sock = str(tmp_path / "taken.sock")
    first = Server(server.model, unix_path=sock).start()
    os.unlink(sock)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as newcomer:
        newcomer.bind(sock)
        newcomer.listen()
        theirs = os.lstat(sock).st_ino
        first.close()
        assert os.path.exists(sock) and os.lstat(sock).st_ino == theirs
    os.unlink(sock)
    second = Server(server.model, unix_path=sock).start()
    second.close()
    assert not os.path.exists(sock)
