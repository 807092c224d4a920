"""Client of the serving protocol: `Client(address).infer({"x": x})`.

address: a UNIX socket path, or "tcp://HOST:PORT" / "HOST:PORT" for TCP. Error replies are raised
as the typed error they name (hal.errors, or boot.protocol.ProtocolError); any other name as
KernelosError with the name in the message.
"""

import socket

import hal.errors as errors

from . import protocol as proto
from .server import parse_tcp


def _error_from_reply(err) -> Exception:
    if not isinstance(err, dict):
        return errors.KernelosError(f"server error reply without details: {err!r:.200}")
    name, message = str(err.get("type")), str(err.get("message"))
    cls = getattr(errors, name, None) or getattr(proto, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.KernelosError):
        return cls(message)
    return errors.KernelosError(f"{name}: {message}")


class Client:
    def __init__(self, address: str, timeout_s: float = 30.0):
        self.address = address
        try:
            if address.startswith("tcp://") or (":" in address and "/" not in address):
                self.sock = socket.create_connection(parse_tcp(address.removeprefix("tcp://")), timeout=timeout_s)
            else:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout_s)
                try:
                    self.sock.connect(address)
                except OSError:
                    self.sock.close()
                    raise
        except OSError as e:
            raise errors.KernelosError(f"cannot connect to {address}: {e.strerror or e}; is `kernelos boot` serving?") from None
        self._next_id = 0

    def request(self, header: dict, body: bytes = b"") -> tuple:
        """Send one request, return (reply header, body); raise the typed error of an error reply."""
        self._next_id += 1
        header = {**header, "id": self._next_id}
        try:
            self.sock.sendall(proto.encode_frame(header, body))
            frame = proto.read_frame(self.sock, body_max_B=1 << 40)
        except TimeoutError:
            raise errors.KernelosError(f"no reply from {self.address} within {self.sock.gettimeout():g} s "
                                       "(is the server busy or stuck?)") from None
        except OSError as e:  # reset, broken pipe
            raise errors.KernelosError(f"connection to {self.address} failed: {e.strerror or e}") from None
        if frame is None:
            raise proto.FramingError("server closed the connection without replying")
        reply, reply_body = frame
        if not reply.get("ok"):
            raise _error_from_reply(reply.get("error"))
        return reply, reply_body

    def infer(self, inputs: dict) -> dict:
        specs, body = proto.pack_tensors(inputs)
        reply, reply_body = self.request({"op": "infer", "tensors": specs}, body)
        return {k: v.copy() for k, v in proto.unpack_tensors(reply.get("tensors"), reply_body).items()}

    def stats(self) -> dict:
        return self.request({"op": "stats"})[0]

    def info(self) -> dict:
        return self.request({"op": "info"})[0]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
