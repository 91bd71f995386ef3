"""A dependency-free client for the interstate bus, written from docs/wire.md.

It speaks the bus wire protocol over the hub's Unix socket: the Hello/Welcome handshake,
Register, Subscribe (registry snapshot and updates), Deliver (plain, and correlated: requests
and replies), DeliveryFailed, Ack, Ping/Pong and Goodbye; it encodes and decodes every other
frame of the protocol's table too (Watch, Report, State, Stopped, NodeFailure, the topic
frames), and skips kinds newer than it knows. Received messages are acknowledged (cumulatively, per sender) once the
application has taken them and comes back for the next one, and duplicates are dropped; it
does not reconnect or send again. Python 3.8+, standard library only.

    from interstate_client import Client

    with Client.connect(bus="default", executable="my-tool") as c:
        c.register("py-tool")
        c.subscribe(registry=True)
        c.wait_snapshot()
        c.send("py-tool", "worker-1", "DO_WORK", b'{"task":1}')
        frame = c.recv(timeout=5.0)      # a Deliver, DeliveryFailed, RegistryEntry, ... or None
        reply = c.request("py-tool", "echo", "PING", b'{"n":1}', timeout=5.0)  # or RequestFailed
        c.reply("py-tool", frame, "DONE")  # answers frame's sender (its request, if it was one)

Publish/subscribe: `c.subscribe_topic("py-tool", "plant/+/alarm")` has the hub deliver every
publication to a matching topic to `py-tool`, as a Deliver whose event is `TOPIC\\0EVENT`
(`split_publication(frame.event)` gives both).

Frames are plain dataclasses named like the protocol's (`Deliver`, `RegisterResult`, ...),
with their fields in wire order. `encode_frame` and `decode_frame` work on frame bodies (no
length prefix); `Client` adds and strips the 4-byte little-endian length.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple, Union

MAGIC = 0x42545349  # b"ISTB" read as a little-endian u32
PROTOCOL_VERSION = 2
MAX_STOP_ERROR = 128  # the most bytes of Stopped.error (and DeliveryFailed.detail)
LEN_PREFIX = 4
DEFAULT_MAX_FRAME = 64 * 1024
MIN_MAX_FRAME = 512
MAX_ID = 64

# ---------------------------------------------------------------------------------------------
# Nested enums: the value is the variant index on the wire.

REJECT_CODES = ["NotInterstate", "Version", "NotAllowed", "TooManyLinks", "FrameSize"]
FAIL_REASONS = [
    "UnknownTarget", "TargetGone", "QueueFull", "NotOwner", "TooLarge", "Disconnected", "Reserved",
    "TargetStopped",
]
REGISTER_STATUSES = ["Ok", "Taken", "TooMany", "HubFull", "BadId"]
# A Deliver's correlation: ("Request", id) opens a request, ("Reply", id) answers it.
CORRELATIONS = ["None", "Request", "Reply"]
# The frame kind of a Deliver with a correlation (docs/wire.md, DeliverCorrelated).
DELIVER_CORRELATED = 28
TRANSPORT_KINDS = ["InProcess", "UnixSocket", "Fifo", "SharedMemory", "Serial"]
TOPIC_STATUSES = ["Ok", "BadFilter", "NotOwner", "TooMany", "HubFull"]


class ProtocolError(Exception):
    """Bytes that are not a valid frame, or a peer that broke the protocol."""


class Rejected(Exception):
    """The hub refused this client (a Reject frame)."""

    def __init__(self, code: str, version: int, message: str):
        super().__init__(f"the hub refused the connection ({code}): {message}")
        self.code = code
        self.version = version
        self.message = message


class RequestFailed(Exception):
    """A request ended without its reply: `reason` is `timeout`, `target-gone`, or a delivery
    failure's code (`unknown-target`, `target-stopped`, ...), as in xstate.error.request."""

    def __init__(self, request: int, to: str, reason: str):
        super().__init__(f"request {request} to {to!r} failed: {reason}")
        self.request = request
        self.to = to
        self.reason = reason


def reason_code(reason: str) -> str:
    """A FailReason name as the runtime's payloads write it: TargetGone -> target-gone."""
    return "".join("-" + c.lower() if c.isupper() else c for c in reason).lstrip("-")


class Disconnected(Exception):
    """The hub closed the connection."""


# ---------------------------------------------------------------------------------------------
# postcard primitives


def put_varint(out: bytearray, value: int, bits: int = 64) -> None:
    """Unsigned LEB128: 7 bits a byte, least significant group first, high bit = more."""
    if value < 0 or value >= 1 << bits:
        raise ValueError(f"{value} does not fit an unsigned {bits}-bit integer")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def put_str(out: bytearray, s: str) -> None:
    raw = s.encode("utf-8")
    put_varint(out, len(raw))
    out += raw


def put_bytes(out: bytearray, b: bytes) -> None:
    put_varint(out, len(b))
    out += b


def put_bool(out: bytearray, v: bool) -> None:
    out.append(1 if v else 0)


class Reader:
    """Reads postcard values from a frame body."""

    def __init__(self, data: bytes):
        self.data = memoryview(bytes(data))
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError("frame ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self, bits: int = 64) -> int:
        max_bytes = (bits + 6) // 7
        value = 0
        for i in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if value >= 1 << bits:
                    raise ProtocolError(f"varint too large for u{bits}")
                return value
        raise ProtocolError(f"varint longer than {max_bytes} bytes for u{bits}")

    def u16(self) -> int:
        return self.varint(16)

    def u32(self) -> int:
        return self.varint(32)

    def u64(self) -> int:
        return self.varint(64)

    def bool(self) -> bool:
        b = self.byte()
        if b > 1:
            raise ProtocolError(f"bad bool byte {b}")
        return b == 1

    def raw(self) -> bytes:
        n = self.varint(64)
        if self.pos + n > len(self.data):
            raise ProtocolError("frame ends inside a string or byte array")
        b = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return b

    def str(self) -> str:
        try:
            return self.raw().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"string is not UTF-8: {e}") from None

    def enum(self, names: List[str]) -> str:
        i = self.varint(32)
        if i >= len(names):
            raise ProtocolError(f"unknown variant index {i}")
        return names[i]

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError("trailing bytes after the frame")


def put_enum(out: bytearray, names: List[str], value: str) -> None:
    put_varint(out, names.index(value), 32)


# ---------------------------------------------------------------------------------------------
# Frames, in the order of the `Frame` enum: the position is the variant index.


@dataclass
class Hello:
    magic: int = MAGIC
    version: int = PROTOCOL_VERSION
    max_frame: int = DEFAULT_MAX_FRAME
    pid: int = 0
    executable: str = ""


@dataclass
class Welcome:
    version: int
    max_frame: int
    link: int
    hub_pid: int


@dataclass
class Reject:
    code: str
    version: int
    message: str


@dataclass
class Register:
    machine: str


@dataclass
class RegisterResult:
    machine: str
    status: str


@dataclass
class Unregister:
    machine: str


@dataclass
class Deliver:
    from_: str
    to: str
    event: str
    payload: bytes
    seq: int
    # None for a plain message; ("Request", id) or ("Reply", id) for a correlated one, which
    # travels as frame kind 28 (DeliverCorrelated).
    correlation: Optional[Tuple[str, int]] = None


@dataclass
class DeliveryFailed:
    from_: str
    to: str
    event: str
    seq: int
    reason: str
    # What there is to add to the reason: a stopped target's error (TargetStopped), else "".
    detail: str = ""


@dataclass
class Subscribe:
    registry: bool
    monitor: bool


@dataclass
class RegistryEntry:
    machine: str
    pid: int
    uid: int
    executable: str
    transport: str
    since_ms: int


@dataclass
class RegistryRemoved:
    machine: str


@dataclass
class SnapshotEnd:
    pass


@dataclass
class Monitored:
    link: int
    at_ms: int
    frame: bytes


@dataclass
class Ping:
    nonce: int


@dataclass
class Pong:
    nonce: int


@dataclass
class Goodbye:
    reason: str


@dataclass
class Ack:
    from_: str
    to: str
    seq: int


@dataclass
class Watch:
    machine: str
    on: bool


@dataclass
class Report:
    machine: str
    on: bool


@dataclass
class State:
    machine: str
    report: bytes


@dataclass
class Stopped:
    machine: str
    error: str  # at most MAX_STOP_ERROR bytes of UTF-8


@dataclass
class NodeFailure:
    """A failure a client found itself (never sent to the hub), for the hub's monitors: the
    fields of DeliveryFailed."""

    from_: str
    to: str
    event: str
    seq: int
    reason: str
    detail: str = ""


@dataclass
class TopicSubscribe:
    machine: str
    filter: str


@dataclass
class TopicUnsubscribe:
    machine: str
    filter: str


@dataclass
class TopicResult:
    machine: str
    filter: str
    status: str


@dataclass
class TopicWatch:
    on: bool


@dataclass
class TopicEntry:
    machine: str
    filter: str
    on: bool


@dataclass
class TopicSnapshotEnd:
    pass


class _CorrelatedDeliverKind:
    """Not a frame: holds kind 28 in the table (a correlated Deliver, decoded above)."""


@dataclass
class StatsRequest:
    """Client -> hub: send me the bus's counters (link 0). Hub -> node: `link` asked; answer
    with a Stats frame carrying that link (docs/operations.md)."""

    link: int = 0


@dataclass
class Stats:
    """Counters as a UTF-8 JSON object. Node -> hub: `link` is the asker's link; hub ->
    asker: the link it is from (0: the hub's process, whose first answer says in `expect` how
    many node answers follow)."""

    link: int
    expect: int
    report: bytes


@dataclass
class Unknown:
    """A frame kind this client does not know (from a newer hub): skipped, never sent."""

    kind: int
    body: bytes


Frame = Union[
    Hello, Welcome, Reject, Register, RegisterResult, Unregister, Deliver, DeliveryFailed,
    Subscribe, RegistryEntry, RegistryRemoved, SnapshotEnd, Monitored, Ping, Pong, Goodbye, Ack,
    Watch, Report, State, Stopped, NodeFailure, TopicSubscribe, TopicUnsubscribe, TopicResult,
    TopicWatch, TopicEntry, TopicSnapshotEnd, StatsRequest, Stats, Unknown,
]

# The protocol's frame table (docs/wire.md), in variant-index order.
FRAME_TYPES = [
    Hello, Welcome, Reject, Register, RegisterResult, Unregister, Deliver, DeliveryFailed,
    Subscribe, RegistryEntry, RegistryRemoved, SnapshotEnd, Monitored, Ping, Pong, Goodbye, Ack,
    Watch, Report, State, Stopped, NodeFailure, TopicSubscribe, TopicUnsubscribe, TopicResult,
    TopicWatch, TopicEntry, TopicSnapshotEnd, _CorrelatedDeliverKind, StatsRequest, Stats,
]


def split_publication(event: str) -> Tuple[Optional[str], str]:
    """A delivered event field as (topic, event): a publication's field is TOPIC, a zero
    character, EVENT (docs/wire.md, Publish and subscribe); a direct message has no topic."""
    topic, sep, name = event.partition("\0")
    return (topic, name) if sep else (None, event)


def encode_frame(f: Frame) -> bytes:
    """The postcard body of a frame (no length prefix)."""
    if isinstance(f, Unknown):
        raise ValueError("an unknown frame cannot be sent")
    out = bytearray()
    if isinstance(f, Deliver) and f.correlation is not None:
        put_varint(out, DELIVER_CORRELATED, 32)
    else:
        put_varint(out, FRAME_TYPES.index(type(f)), 32)
    if isinstance(f, Hello):
        put_varint(out, f.magic, 32)
        put_varint(out, f.version, 16)
        put_varint(out, f.max_frame, 32)
        put_varint(out, f.pid, 32)
        put_str(out, f.executable)
    elif isinstance(f, Welcome):
        put_varint(out, f.version, 16)
        put_varint(out, f.max_frame, 32)
        put_varint(out, f.link, 32)
        put_varint(out, f.hub_pid, 32)
    elif isinstance(f, Reject):
        put_enum(out, REJECT_CODES, f.code)
        put_varint(out, f.version, 16)
        put_str(out, f.message)
    elif isinstance(f, (Register, Unregister, RegistryRemoved)):
        put_str(out, f.machine)
    elif isinstance(f, RegisterResult):
        put_str(out, f.machine)
        put_enum(out, REGISTER_STATUSES, f.status)
    elif isinstance(f, Deliver):
        put_str(out, f.from_)
        put_str(out, f.to)
        put_str(out, f.event)
        put_bytes(out, f.payload)
        put_varint(out, f.seq, 64)
        if f.correlation is not None:
            kind, rid = f.correlation
            if kind not in ("Request", "Reply"):
                raise ValueError(f"a correlation is Request or Reply, not {kind!r}")
            put_enum(out, CORRELATIONS, kind)
            put_varint(out, rid, 32)
    elif isinstance(f, (DeliveryFailed, NodeFailure)):
        put_str(out, f.from_)
        put_str(out, f.to)
        put_str(out, f.event)
        put_varint(out, f.seq, 64)
        put_enum(out, FAIL_REASONS, f.reason)
        put_str(out, f.detail)
    elif isinstance(f, (Watch, Report)):
        put_str(out, f.machine)
        put_bool(out, f.on)
    elif isinstance(f, State):
        put_str(out, f.machine)
        put_bytes(out, f.report)
    elif isinstance(f, Stopped):
        put_str(out, f.machine)
        put_str(out, f.error)
    elif isinstance(f, Subscribe):
        put_bool(out, f.registry)
        put_bool(out, f.monitor)
    elif isinstance(f, RegistryEntry):
        put_str(out, f.machine)
        put_varint(out, f.pid, 32)
        put_varint(out, f.uid, 32)
        put_str(out, f.executable)
        put_enum(out, TRANSPORT_KINDS, f.transport)
        put_varint(out, f.since_ms, 64)
    elif isinstance(f, SnapshotEnd):
        pass
    elif isinstance(f, Monitored):
        put_varint(out, f.link, 32)
        put_varint(out, f.at_ms, 64)
        put_bytes(out, f.frame)
    elif isinstance(f, (Ping, Pong)):
        put_varint(out, f.nonce, 64)
    elif isinstance(f, Goodbye):
        put_str(out, f.reason)
    elif isinstance(f, Ack):
        put_str(out, f.from_)
        put_str(out, f.to)
        put_varint(out, f.seq, 64)
    elif isinstance(f, (TopicSubscribe, TopicUnsubscribe)):
        put_str(out, f.machine)
        put_str(out, f.filter)
    elif isinstance(f, TopicResult):
        put_str(out, f.machine)
        put_str(out, f.filter)
        put_enum(out, TOPIC_STATUSES, f.status)
    elif isinstance(f, TopicWatch):
        put_bool(out, f.on)
    elif isinstance(f, TopicEntry):
        put_str(out, f.machine)
        put_str(out, f.filter)
        put_bool(out, f.on)
    elif isinstance(f, StatsRequest):
        put_varint(out, f.link, 32)
    elif isinstance(f, Stats):
        put_varint(out, f.link, 32)
        put_varint(out, f.expect, 32)
        put_bytes(out, f.report)
    return bytes(out)


def decode_frame(body: bytes) -> Frame:
    """Decodes a frame body (no length prefix). Raises ProtocolError on malformed input; a
    variant index past the ones known here decodes as Unknown (the length prefix delimits it)."""
    r = Reader(body)
    kind = r.varint(32)
    if kind == DELIVER_CORRELATED:
        f = Deliver(r.str(), r.str(), r.str(), r.raw(), r.u64())
        c = r.enum(CORRELATIONS)
        if c == "None":
            raise ProtocolError("a correlated Deliver with no correlation")
        f.correlation = (c, r.u32())
        r.end()
        return f
    if kind >= len(FRAME_TYPES):
        return Unknown(kind, bytes(body))
    t = FRAME_TYPES[kind]
    f: Frame
    if t is Hello:
        f = Hello(r.u32(), r.u16(), r.u32(), r.u32(), r.str())
    elif t is Welcome:
        f = Welcome(r.u16(), r.u32(), r.u32(), r.u32())
    elif t is Reject:
        f = Reject(r.enum(REJECT_CODES), r.u16(), r.str())
    elif t in (Register, Unregister, RegistryRemoved):
        f = t(r.str())
    elif t is RegisterResult:
        f = RegisterResult(r.str(), r.enum(REGISTER_STATUSES))
    elif t is Deliver:
        f = Deliver(r.str(), r.str(), r.str(), r.raw(), r.u64())
    elif t in (DeliveryFailed, NodeFailure):
        f = t(r.str(), r.str(), r.str(), r.u64(), r.enum(FAIL_REASONS), r.str())
    elif t in (Watch, Report):
        f = t(r.str(), r.bool())
    elif t is State:
        f = State(r.str(), r.raw())
    elif t is Stopped:
        f = Stopped(r.str(), r.str())
    elif t is Subscribe:
        f = Subscribe(r.bool(), r.bool())
    elif t is RegistryEntry:
        f = RegistryEntry(r.str(), r.u32(), r.u32(), r.str(), r.enum(TRANSPORT_KINDS), r.u64())
    elif t is SnapshotEnd:
        f = SnapshotEnd()
    elif t is Monitored:
        f = Monitored(r.u32(), r.u64(), r.raw())
    elif t in (Ping, Pong):
        f = t(r.u64())
    elif t is Goodbye:
        f = Goodbye(r.str())
    elif t is Ack:
        f = Ack(r.str(), r.str(), r.u64())
    elif t in (TopicSubscribe, TopicUnsubscribe):
        f = t(r.str(), r.str())
    elif t is TopicResult:
        f = TopicResult(r.str(), r.str(), r.enum(TOPIC_STATUSES))
    elif t is TopicWatch:
        f = TopicWatch(r.bool())
    elif t is TopicEntry:
        f = TopicEntry(r.str(), r.str(), r.bool())
    elif t is TopicSnapshotEnd:
        f = TopicSnapshotEnd()
    elif t is StatsRequest:
        f = StatsRequest(r.u32())
    elif t is Stats:
        f = Stats(r.u32(), r.u32(), r.raw())
    else:
        raise ProtocolError(f"frame kind {kind} has no decoder")
    r.end()
    return f


def with_prefix(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


# ---------------------------------------------------------------------------------------------
# Where the bus lives


def bus_dir() -> str:
    """$INTERSTATE_DIR, else $XDG_RUNTIME_DIR/interstate, else /tmp/interstate-<uid>."""
    d = os.environ.get("INTERSTATE_DIR")
    if d:
        return d
    x = os.environ.get("XDG_RUNTIME_DIR")
    if x:
        return os.path.join(x, "interstate")
    return f"/tmp/interstate-{os.getuid()}"


def default_bus() -> str:
    return os.environ.get("INTERSTATE_BUS") or "default"


def socket_path(bus: Optional[str] = None, directory: Optional[str] = None) -> str:
    bus = bus or default_bus()
    ok = (
        0 < len(bus) <= 64
        and not bus.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in bus)
    )
    if not ok:
        raise ValueError(f"bus name {bus!r} is not valid: use 1 to 64 letters, digits, '-', '_' or '.'")
    return os.path.join(directory or bus_dir(), bus + ".sock")


# ---------------------------------------------------------------------------------------------
# The client


class Client:
    """One link to the hub. Not thread-safe: use it from one thread."""

    def __init__(self, sock: socket.socket, max_frame: int):
        self.sock = sock
        self.max_frame = max_frame  # until the Welcome: ours; after: the negotiated one
        self.welcome: Optional[Welcome] = None
        self.registry: Dict[str, RegistryEntry] = {}
        self.snapshot_done = False
        self._rbuf = bytearray()
        self._pending: Deque[Frame] = collections.deque()
        self._results: Dict[str, str] = {}
        self._topic_results: Dict[Tuple[str, str], str] = {}
        self._pongs: Dict[int, float] = {}
        # Sequence numbers must grow per (sender, receiver) across restarts of a sender too:
        # start from the wall clock in nanoseconds, as the Rust nodes do.
        self._seq = time.time_ns()
        self._nonce = 0
        # (receiver, sender) -> highest seq delivered here; and the acks we owe.
        self._delivered: Dict[Tuple[str, str], int] = {}
        self._owed: Dict[Tuple[str, str], int] = {}
        # (sender, receiver) -> highest seq the receiver acknowledged.
        self.acked: Dict[Tuple[str, str], int] = {}
        self.duplicates = 0
        # Requests: the next id, the ones waiting for their replies, and replies dropped
        # because their request was settled already.
        self._request_id = time.time_ns() & 0x7FFFFFFF
        self._open: Dict[int, str] = {}
        self.late_replies = 0
        self._last_tx = time.monotonic()
        self._closed = False
        # The hub closes links silent for 30 s (its default idle timeout): ping well within it.
        self.keepalive = 5.0

    # -- connecting ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        bus: Optional[str] = None,
        directory: Optional[str] = None,
        executable: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        wait: float = 5.0,
    ) -> "Client":
        """Connects to the hub of `bus` and completes the handshake.

        Retries for up to `wait` seconds while no hub is listening. Raises Rejected if the hub
        refuses us, TimeoutError if no Welcome arrives in time."""
        if max_frame < MIN_MAX_FRAME:
            raise ValueError(f"max_frame must be at least {MIN_MAX_FRAME}")
        path = socket_path(bus, directory)
        deadline = time.monotonic() + wait
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError as e:
                s.close()
                if e.errno not in (errno.ENOENT, errno.ECONNREFUSED) or time.monotonic() >= deadline:
                    raise ConnectionError(f"no hub at {path}: {e.strerror}") from None
                time.sleep(0.05)
        c = cls(s, max_frame)
        exe = executable or os.path.basename(sys.argv[0] or "python3") or "python3"
        c._send_frame(Hello(MAGIC, PROTOCOL_VERSION, max_frame, os.getpid(), exe[:64]))
        while True:
            f = c._read_frame(5.0)
            if f is None:
                c.sock.close()
                raise TimeoutError("the hub did not answer the hello")
            if isinstance(f, Welcome):
                c.welcome = f
                c.max_frame = min(max_frame, f.max_frame)
                return c
            if isinstance(f, Reject):
                c.sock.close()
                raise Rejected(f.code, f.version, f.message)
            c.sock.close()
            raise ProtocolError(f"expected a welcome, got {type(f).__name__}")

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ------------------------------------------------------------------------------

    def _send_frame(self, f: Frame) -> None:
        body = encode_frame(f)
        if len(body) > self.max_frame:
            raise ValueError(f"frame of {len(body)} bytes exceeds the bus's largest frame ({self.max_frame})")
        self.sock.sendall(with_prefix(body))
        self._last_tx = time.monotonic()

    def register(self, machine: str, timeout: float = 5.0) -> None:
        """Routes `machine` to this link. Raises RuntimeError with the status if refused."""
        self._results.pop(machine, None)
        self._send_frame(Register(machine))
        deadline = time.monotonic() + timeout
        while machine not in self._results:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no register result for {machine!r}")
            self._pump(left)
        status = self._results.pop(machine)
        if status != "Ok":
            raise RuntimeError(f"the hub refused to register {machine!r}: {status}")

    def unregister(self, machine: str) -> None:
        self._send_frame(Unregister(machine))

    def subscribe(self, registry: bool = True, monitor: bool = False) -> None:
        """Asks for the registry (a snapshot, SnapshotEnd, then updates) and/or monitor copies."""
        self._send_frame(Subscribe(registry, monitor))

    def subscribe_topic(self, machine: str, topic_filter: str, timeout: float = 5.0) -> None:
        """Subscribes `machine` (registered by this client) to a topic filter (`+` one level,
        `#` the rest: MQTT's rules). Publications to a matching topic then arrive as Deliver
        frames whose event is `TOPIC\\0EVENT` (see split_publication). The hub holds it while
        `machine` is registered: after a reconnect, register and subscribe again. Raises
        RuntimeError with the hub's status if refused."""
        key = (machine, topic_filter)
        self._topic_results.pop(key, None)
        self._send_frame(TopicSubscribe(machine, topic_filter))
        deadline = time.monotonic() + timeout
        while key not in self._topic_results:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to the subscription of {machine!r} to {topic_filter!r}")
            self._pump(left)
        status = self._topic_results.pop(key)
        if status != "Ok":
            raise RuntimeError(f"the hub refused the subscription to {topic_filter!r}: {status}")

    def unsubscribe_topic(self, machine: str, topic_filter: str) -> None:
        self._send_frame(TopicUnsubscribe(machine, topic_filter))

    def wait_snapshot(self, timeout: float = 5.0) -> Dict[str, RegistryEntry]:
        """Waits for SnapshotEnd after subscribe(registry=True); returns the registry."""
        deadline = time.monotonic() + timeout
        while not self.snapshot_done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no registry snapshot")
            self._pump(left)
        return self.registry

    def send(self, from_: str, to: str, event: str, payload: bytes = b"", seq: Optional[int] = None) -> int:
        """Sends an event from `from_` (an id this client registered) to `to`; returns the seq."""
        if seq is None:
            self._seq += 1
            seq = self._seq
        self._send_frame(Deliver(from_, to, event, bytes(payload), seq))
        return seq

    def reply(self, from_: str, to: Deliver, event: str, payload: bytes = b"") -> int:
        """Answers the message `to` (one this client received for its id `from_`) with `event`
        to its sender: the reply to its request when it was one. Returns the seq."""
        correlation = None
        if to.correlation is not None and to.correlation[0] == "Request":
            correlation = ("Reply", to.correlation[1])
        self._seq += 1
        self._send_frame(Deliver(from_, to.from_, event, bytes(payload), self._seq, correlation))
        return self._seq

    def request(self, from_: str, to: str, event: str, payload: bytes = b"",
                timeout: float = 5.0) -> Deliver:
        """Sends `event` from `from_` to `to` as a request and waits for the reply, which it
        returns (a Deliver with correlation ("Reply", id)). Raises RequestFailed, exactly
        once per request, when no reply comes within `timeout`, the target leaves the bus
        (even after it acknowledged the request), or the request is not delivered. A reply
        after that is dropped and counted in `late_replies`. Other frames that arrive
        meanwhile wait for recv(). Subscribes to the registry first, to see the target go."""
        if not self.snapshot_done:
            self.subscribe(registry=True)
            self.wait_snapshot()
        self._request_id = (self._request_id + 1) & 0xFFFFFFFF or 1
        rid = self._request_id
        self._seq += 1
        seq = self._seq
        self._open[rid] = to
        try:
            self._send_frame(Deliver(from_, to, event, bytes(payload), seq, ("Request", rid)))
            deadline = time.monotonic() + timeout
            while True:
                for i, f in enumerate(self._pending):
                    if (isinstance(f, Deliver) and f.to == from_ and f.from_ == to
                            and f.correlation == ("Reply", rid)):
                        del self._pending[i]
                        return f
                    if isinstance(f, DeliveryFailed) and (f.from_, f.to, f.seq) == (from_, to, seq):
                        del self._pending[i]
                        raise RequestFailed(rid, to, reason_code(f.reason))
                    if isinstance(f, RegistryRemoved) and f.machine == to:
                        raise RequestFailed(rid, to, "target-gone")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestFailed(rid, to, "timeout")
                self._pump(left)
        finally:
            del self._open[rid]

    def ping(self, timeout: float = 5.0) -> float:
        """Pings the hub; returns the round trip in seconds."""
        self._nonce += 1
        nonce = self._nonce
        start = time.monotonic()
        self._send_frame(Ping(nonce))
        deadline = start + timeout
        while nonce not in self._pongs:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no pong")
            self._pump(left)
        return self._pongs.pop(nonce) - start

    def close(self, reason: str = "closing") -> None:
        """Says Goodbye and closes the socket."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush_acks()
            self._send_frame(Goodbye(reason[:80]))
        except OSError:
            pass
        self.sock.close()

    # -- receiving ----------------------------------------------------------------------------

    def _read_frame(self, timeout: Optional[float]) -> Optional[Frame]:
        """The next frame from the socket, or None when `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._rbuf) >= LEN_PREFIX:
                (n,) = struct.unpack_from("<I", self._rbuf)
                if n > self.max_frame:
                    raise ProtocolError(f"frame of {n} bytes is larger than the bus allows ({self.max_frame})")
                if len(self._rbuf) >= LEN_PREFIX + n:
                    body = bytes(self._rbuf[LEN_PREFIX : LEN_PREFIX + n])
                    del self._rbuf[: LEN_PREFIX + n]
                    return decode_frame(body)
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Disconnected("the hub closed the connection")
            self._rbuf += chunk

    def _handle(self, f: Frame) -> bool:
        """Bookkeeping for a received frame; True when the caller should see it."""
        if isinstance(f, Ping):
            self._send_frame(Pong(f.nonce))
            return False
        if isinstance(f, Pong):
            self._pongs[f.nonce] = time.monotonic()
            return False
        if isinstance(f, RegisterResult):
            self._results[f.machine] = f.status
            return False
        if isinstance(f, TopicResult):
            self._topic_results[(f.machine, f.filter)] = f.status
            return False
        if isinstance(f, Deliver):
            key = (f.to, f.from_)
            last = self._delivered.get(key)
            if last is not None and f.seq <= last:
                # Sent again after a reconnect: drop it, acknowledge again.
                self.duplicates += 1
                self._owed[key] = last
                return False
            self._delivered[key] = f.seq
            self._owed[key] = f.seq
            if f.correlation is not None and f.correlation[0] == "Reply":
                rid = f.correlation[1]
                if self._open.get(rid) != f.from_:
                    # Its request was settled already (or was not ours): acknowledged, dropped.
                    self.late_replies += 1
                    return False
            return True
        if isinstance(f, Ack):
            key = (f.to, f.from_)
            self.acked[key] = max(self.acked.get(key, 0), f.seq)
            return False
        if isinstance(f, StatsRequest):
            # Counters are not kept here: answered with an empty report, so that the asker
            # (`interstate stats`) does not wait for this process.
            self._send_frame(Stats(f.link, 0, b'{"source":{"role":"node","pid":%d,'
                                   b'"executable":"python","bus":""},"metrics":[]}'
                                   % os.getpid()))
            return False
        if isinstance(f, (Unknown, Report, Stats)):
            # State reports are not implemented here: a Report is ignored (docs/wire.md).
            return False
        if isinstance(f, RegistryEntry):
            self.registry[f.machine] = f
            # Snapshot entries end up in `registry`; only later updates are handed out.
            return self.snapshot_done
        if isinstance(f, RegistryRemoved):
            self.registry.pop(f.machine, None)
        elif isinstance(f, SnapshotEnd):
            self.snapshot_done = True
            return False
        elif isinstance(f, Goodbye):
            self._closed = True
            self.sock.close()
            raise Disconnected(f"the hub said goodbye: {f.reason}")
        return True

    def flush_acks(self) -> None:
        """Acknowledges every message handed out so far (cumulatively, per sender)."""
        owed, self._owed = self._owed, {}
        for (receiver, sender), seq in owed.items():
            self._send_frame(Ack(receiver, sender, seq))

    def _pump(self, timeout: float) -> None:
        """Reads at most one frame into the pending queue (or handles it)."""
        self._keepalive()
        f = self._read_frame(min(timeout, self.keepalive))
        if f is not None and self._handle(f):
            self._pending.append(f)

    def _keepalive(self) -> None:
        if time.monotonic() - self._last_tx >= self.keepalive:
            self._nonce += 1
            self._send_frame(Ping(self._nonce))

    def recv(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame for the application: Deliver, DeliveryFailed, Monitored, or a
        registry update (RegistryEntry, RegistryRemoved) after the snapshot. Pings are
        answered; pongs, register results and the snapshot are consumed (the snapshot into
        `registry`); the link is kept alive while waiting. None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # What the caller took before this call has been handled: acknowledge it.
        if not self._pending:
            self.flush_acks()
        while not self._pending:
            left = self.keepalive if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(left)
        return self._pending.popleft()


if __name__ == "__main__":
    # A quick look at the bus: `python3 interstate_client.py [BUS]` prints its registry.
    with Client.connect(bus=sys.argv[1] if len(sys.argv) > 1 else None, executable="interstate_client.py") as c:
        c.subscribe(registry=True)
        for e in c.wait_snapshot().values():
            print(f"{e.machine:<24} pid {e.pid:<8} uid {e.uid:<6} {e.executable:<20} {e.transport}")
        print(f"hub pid {c.welcome.hub_pid}, link {c.welcome.link}, max frame {c.max_frame}, "
              f"ping {c.ping() * 1000:.2f} ms")
