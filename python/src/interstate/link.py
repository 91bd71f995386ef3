"""One connection to the hub: the socket, the Hello/Welcome handshake and the framing.

A `Link` knows nothing of machines or messages: it writes frames and reads them, and says
when the connection is lost (`LinkLost`). The `Client` above it decides what to do then.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from typing import Optional

from .errors import NoHub, ProtocolError, Rejected
from .wire import (
    LEN_PREFIX, MAGIC, MIN_MAX_FRAME, PROTOCOL_VERSION, Frame, Hello, Reject, Welcome,
    decode_frame, encode_frame, with_prefix,
)

HANDSHAKE_TIMEOUT = 5.0


class LinkLost(Exception):
    """The connection broke (closed by the hub, a socket error, or a Goodbye)."""


class Link:
    """A connected, welcomed socket to the hub. Not thread-safe."""

    def __init__(self, sock: socket.socket, welcome: Welcome):
        self.sock = sock
        self.welcome = welcome
        self.max_frame = welcome.max_frame
        self._rbuf = bytearray()
        self.closed = False
        self.last_tx = time.monotonic()
        self.last_rx = time.monotonic()

    @classmethod
    def open(cls, path: str, executable: str, max_frame: int, wait: float) -> "Link":
        """Connects to the hub at `path` and completes the handshake. Retries for up to `wait`
        seconds while nothing listens (NoHub after that). Raises Rejected if the hub refuses."""
        if max_frame < MIN_MAX_FRAME:
            raise ValueError(f"max_frame must be at least {MIN_MAX_FRAME}")
        deadline = time.monotonic() + wait
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError as e:
                s.close()
                transient = e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN)
                if not transient or time.monotonic() >= deadline:
                    raise NoHub(path, e.strerror or str(e)) from None
                time.sleep(0.05)
        link = cls(s, Welcome(PROTOCOL_VERSION, max_frame, 0, 0))
        try:
            exe = executable.encode("utf-8")[:64].decode("utf-8", "ignore")
            link.send(Hello(MAGIC, PROTOCOL_VERSION, max_frame, os.getpid() & 0xFFFFFFFF, exe))
            f = link.read(HANDSHAKE_TIMEOUT)
        except LinkLost as e:
            link.close()
            raise NoHub(path, f"the connection closed during the handshake ({e})") from None
        if isinstance(f, Welcome):
            link.welcome = f
            link.max_frame = min(max_frame, f.max_frame)
            return link
        link.close()
        if f is None:
            raise NoHub(path, "the hub did not answer the hello within 5 s")
        if isinstance(f, Reject):
            raise Rejected(f.code, f.version, f.message)
        raise ProtocolError(f"expected a welcome, got {type(f).__name__}")

    def send(self, f: Frame) -> None:
        """Writes one frame. Raises ValueError for a frame larger than the link allows (nothing
        is written), LinkLost when the socket is broken."""
        body = encode_frame(f)
        if len(body) > self.max_frame:
            raise ValueError(f"frame of {len(body)} bytes exceeds the bus's largest frame ({self.max_frame})")
        if self.closed:
            raise LinkLost("the link is closed")
        try:
            self.sock.sendall(with_prefix(body))
        except OSError as e:
            self.close()
            raise LinkLost(f"writing to the hub failed: {e.strerror or e}") from None
        self.last_tx = time.monotonic()

    def fits(self, f: Frame) -> bool:
        """Whether the frame's body fits the link's largest frame."""
        return len(encode_frame(f)) <= self.max_frame

    def read(self, timeout: Optional[float]) -> Optional[Frame]:
        """The next frame, or None when `timeout` passed first. Raises LinkLost when the hub
        closed the connection, ProtocolError (after closing) on bytes that are not a frame."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._rbuf) >= LEN_PREFIX:
                (n,) = struct.unpack_from("<I", self._rbuf)
                if n > self.max_frame:
                    self.close()
                    raise ProtocolError(f"frame of {n} bytes is larger than the bus allows ({self.max_frame})")
                if len(self._rbuf) >= LEN_PREFIX + n:
                    body = bytes(self._rbuf[LEN_PREFIX : LEN_PREFIX + n])
                    del self._rbuf[: LEN_PREFIX + n]
                    self.last_rx = time.monotonic()
                    try:
                        return decode_frame(body)
                    except ProtocolError:
                        self.close()
                        raise
            if self.closed:
                raise LinkLost("the link is closed")
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready, _, _ = select.select([self.sock], [], [], wait)
                if not ready:
                    return None
                chunk = self.sock.recv(65536)
            except OSError as e:
                self.close()
                raise LinkLost(f"reading from the hub failed: {e.strerror or e}") from None
            if not chunk:
                self.close()
                raise LinkLost("the hub closed the connection")
            self._rbuf += chunk

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
