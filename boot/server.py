"""Serving a loaded model over a UNIX socket and, optionally, TCP (loopback unless told otherwise).

One thread per connection reads frames (boot/protocol.py); inferences are serialised on the device
by the model's lock. Every bad request gets an error reply naming the typed error; a broken byte
stream (bad magic, oversized declared sizes) gets its reply and then the connection is closed.
Nothing a client sends can stop the server.
"""

import collections
import os
import socket
import socketserver
import stat
import sys
import threading
import time
import traceback

import numpy as np

from hal.errors import KernelosError

from . import protocol as proto

IDLE_TIMEOUT_S = 60.0     # a connection silent this long (mid-frame or between frames) is closed
LATENCY_WINDOW = 100_000  # stats percentiles cover the most recent inferences


class Stats:
    """Inference count, error count and latency percentiles (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count, self.errors = 0, 0
        self._latencies_s = collections.deque(maxlen=LATENCY_WINDOW)

    def record(self, latency_s: float | None):
        with self._lock:
            if latency_s is None:
                self.errors += 1
            else:
                self.count += 1
                self._latencies_s.append(latency_s)

    def as_dict(self) -> dict:
        with self._lock:
            lat = np.array(self._latencies_s) * 1e3
            count, errors = self.count, self.errors
        pct = {f"p{p}": float(np.percentile(lat, p)) for p in (50, 90, 99)} if lat.size else {}
        if lat.size:
            pct["max"] = float(lat.max())
        return {"count": count, "errors": errors, "latency_ms": pct, "window": int(lat.size)}


def parse_tcp(address: str) -> tuple:
    """"PORT" -> ("127.0.0.1", PORT); "HOST:PORT" -> (HOST, PORT)."""
    host, _, port = address.rpartition(":")
    if not port.isdecimal() or int(port) > 65535:  # isdigit() passes "²", which int() refuses
        raise KernelosError(f"bad TCP address {address!r}: expected PORT or HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server: "Server" = self.server.owner
        sock = self.request
        sock.settimeout(server.idle_timeout_s)
        while True:
            try:
                frame = proto.read_frame(sock, server.body_max_B)
            except proto.FramingError as e:
                server.stats.record(None)
                self._send(proto.error_header(None, e))
                return
            except proto.ProtocolError as e:
                server.stats.record(None)
                if not self._send(proto.error_header(None, e)):
                    return
                continue
            except OSError:  # timeout, reset
                return
            if frame is None or not self._send(*server.answer(*frame)):
                return

    def _send(self, header: dict, body: bytes = b"") -> bool:
        try:
            self.request.sendall(proto.encode_frame(header, body))
            return True
        except OSError:
            return False


class _Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Tcp(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server:
    """Serve `model` (a kernelos.model.LoadedModel). start() returns once listening; addresses lists
    where; close() stops, joins and removes the socket file."""

    def __init__(self, model, unix_path: str | None = None, tcp: str | None = None,
                 body_max_B: int | None = None, idle_timeout_s: float = IDLE_TIMEOUT_S):
        if unix_path is None and tcp is None:
            raise KernelosError("give a UNIX socket path or a TCP address to serve on")
        self.model, self.unix_path, self.tcp = model, unix_path, tcp
        self._tcp_address = parse_tcp(tcp) if tcp else None  # a bad address fails before anything listens
        # Default body limit: room for the model's inputs at up to 8 B per element (so a request with
        # the wrong dtype still gets a clear InvalidArgument), and no more.
        elements = sum(int(np.prod(shape)) for shape, _ in model.inputs.values())
        self.body_max_B = min(proto.BODY_MAX_B, 8 * elements + (64 << 10)) if body_max_B is None else body_max_B
        self.idle_timeout_s = idle_timeout_s
        self.stats = Stats()
        self._servers, self._threads = [], []
        self.addresses = []
        self._unix_file = None  # (st_dev, st_ino) of the socket file we bound, so close() removes only ours

    def start(self) -> "Server":
        try:
            if self.unix_path:
                _claim_socket_path(self.unix_path)
                srv = _Unix(self.unix_path, _Handler)
                st = os.lstat(self.unix_path)
                self._unix_file = (st.st_dev, st.st_ino)
                self._listen(srv)
                self.addresses.append(self.unix_path)
            if self.tcp:
                srv = _Tcp(self._tcp_address, _Handler)
                self._listen(srv)
                host, port = srv.server_address[:2]
                self.addresses.append(f"{host}:{port}")
        except OSError as e:
            self.close()
            raise KernelosError(f"cannot listen: {e}") from None
        return self

    def _listen(self, srv):
        srv.owner = self
        self._servers.append(srv)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                             name=f"kernelos-serve-{len(self._servers)}")
        t.start()
        self._threads.append(t)

    def answer(self, header: dict, body: bytes) -> tuple:
        """(reply header, reply body) for one request; never raises."""
        rid = header.get("id")
        if not isinstance(rid, (str, int, type(None))) or isinstance(rid, bool):
            rid = None
        try:
            op = header.get("op")
            if op == "infer":
                inputs = proto.unpack_tensors(header.get("tensors"), body)
                t0 = time.perf_counter()
                outputs = self.model.run(inputs)
                self.stats.record(time.perf_counter() - t0)
                specs, out_body = proto.pack_tensors(outputs)
                return {"ok": True, "id": rid, "tensors": specs}, out_body
            if op == "stats":
                return {"ok": True, "id": rid, **self.stats.as_dict()}, b""
            if op == "info":
                return {"ok": True, "id": rid, **self.info()}, b""
            raise proto.ProtocolError(f"unknown op {op!r:.40}; expected infer, stats or info")
        except KernelosError as e:
            self.stats.record(None)
            return proto.error_header(rid, e), b""
        except Exception as e:  # noqa: BLE001 - a bug must not take the server down; report it
            traceback.print_exc(file=sys.stderr)
            self.stats.record(None)
            return {"ok": False, "id": rid, "error": {"type": "InternalError", "message": f"{type(e).__name__}: {e}"}}, b""

    def info(self) -> dict:
        def specs(d):
            return [{"name": n, "dtype": dt.name, "shape": list(shape)} for n, (shape, dt) in d.items()]
        m = self.model
        return {"model": m.image.name, "device": m.device.spec, "target": m.target,
                "inputs": specs(m.inputs), "outputs": specs(m.outputs)}

    def close(self):
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []
        self._remove_socket_file()

    def _remove_socket_file(self):
        """Unlink the socket file only if it is still the one we bound: another server may have
        replaced it meanwhile (after finding it stale), and its file is not ours to remove. The
        check and the unlink are two calls; a replacement between them is not guarded against."""
        ours, self._unix_file = self._unix_file, None
        if ours is None:
            return
        try:
            st = os.lstat(self.unix_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == ours:
            os.unlink(self.unix_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _claim_socket_path(path: str):
    """Remove a stale socket file (nobody listening); refuse to take over a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise KernelosError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: its server is gone
        return
    finally:
        probe.close()
    raise KernelosError(f"another server is already listening on {path}")
