"""The bus's frames, byte for byte as docs/wire.md specifies them.

Frames are plain dataclasses named like the protocol's (`Deliver`, `RegisterResult`, ...),
with their fields in wire order. `encode_frame` and `decode_frame` work on frame bodies (no
length prefix); `with_prefix` adds the 4-byte little-endian length the socket carries.
Nested enums (a `Reject`'s code, a `DeliveryFailed`'s reason, ...) are their variant names
as strings, in the lists below whose position is the variant index on the wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from .errors import ProtocolError

MAGIC = 0x42545349  # b"ISTB" read as a little-endian u32
PROTOCOL_VERSION = 6
MAX_STOP_ERROR = 128  # the most bytes of Stopped.error (and DeliveryFailed.detail)
LEN_PREFIX = 4
DEFAULT_MAX_FRAME = 64 * 1024
MIN_MAX_FRAME = 512
MAX_ID = 64

REJECT_CODES = ["NotInterstate", "Version", "NotAllowed", "TooManyLinks", "FrameSize"]
FAIL_REASONS = [
    "UnknownTarget", "TargetGone", "QueueFull", "NotOwner", "TooLarge", "Disconnected",
    "Reserved", "TargetStopped", "NodeUnreachable",
]
REGISTER_STATUSES = ["Ok", "Taken", "TooMany", "HubFull", "BadId"]
# A Deliver's correlation: ("Request", id) opens a request, ("Reply", id) answers it.
CORRELATIONS = ["None", "Request", "Reply"]
# The frame kind of a Deliver with a correlation (docs/wire.md, DeliverCorrelated).
DELIVER_CORRELATED = 28
TRANSPORT_KINDS = ["InProcess", "UnixSocket", "Fifo", "SharedMemory", "Serial"]
TOPIC_STATUSES = ["Ok", "BadFilter", "NotOwner", "TooMany", "HubFull"]

Correlation = Optional[Tuple[str, int]]


def cut_utf8(s: str, limit: int) -> str:
    """The longest prefix of `s` of at most `limit` bytes of UTF-8, cut at a character."""
    return s.encode("utf-8")[:limit].decode("utf-8", "ignore")


def reason_code(reason: str) -> str:
    """A FailReason name as the runtime's payloads write it: TargetGone -> target-gone."""
    return "".join("-" + c.lower() if c.isupper() else c for c in reason).lstrip("-")


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


def put_enum(out: bytearray, names: List[str], value: str) -> None:
    if value not in names:
        raise ValueError(f"{value!r} is not one of {names}")
    put_varint(out, names.index(value), 32)


class Reader:
    """Reads postcard values from a frame body, strictly (as the hub does)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
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

    def boolean(self) -> bool:
        b = self.byte()
        if b > 1:
            raise ProtocolError(f"bad bool byte {b}")
        return b == 1

    def raw(self) -> bytes:
        n = self.varint(64)
        if self.pos + n > len(self.data):
            raise ProtocolError("frame ends inside a string or byte array")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def string(self) -> str:
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


# ---------------------------------------------------------------------------------------------
# Frames, in the order of the `Frame` enum: the position in FRAME_TYPES is the variant index.


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
class RegisterDurable:
    """Register, for a machine that journals its state and comes back after a crash: the hub
    keeps the id for its next process (docs/guarantees.md, Durable machines)."""
    machine: str


@dataclass
class Resending:
    """Client -> hub: this client rewound what it had written to `machine` and not had
    acknowledged (on the registry entry of an id whose owner came back)."""
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
    correlation: Correlation = None


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
    durable: bool = False


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
    """A failure a client found itself, for the hub's monitors: the fields of DeliveryFailed."""

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
    """Not a frame: holds kind 28 in the table (a correlated Deliver, decoded as Deliver)."""


@dataclass
class StatsRequest:
    """Client -> hub: send me the bus's counters (`link` 0). Hub -> node: link `link` asked;
    answer with a Stats frame carrying that link (docs/operations.md)."""

    link: int = 0


@dataclass
class Stats:
    """Counters as a UTF-8 JSON object. Node -> hub: `link` is the asker's link; hub -> asker:
    the link it is from (0: the hub's process, whose answer says in `expect` how many node
    answers follow)."""

    link: int
    expect: int
    report: bytes


@dataclass
class DirectAllow:
    """Client -> hub: this client takes up to `pairs` direct ring pairs (shared memory only;
    docs/wire.md, Direct rings). This client never sends it."""

    pairs: int


@dataclass
class DirectOffer:
    """Hub -> client: direct pair `pair` with process `peer_pid` is offered."""

    pair: int
    peer_pid: int


@dataclass
class DirectOpen:
    """Client -> hub (forwarded to the pair's other side): this side of `pair` is open."""

    pair: int


@dataclass
class DirectClose:
    """Either way: direct pair `pair` is closed."""

    pair: int


@dataclass
class Unknown:
    """A frame kind this client does not know (from a newer hub): skipped, never sent."""

    kind: int
    body: bytes


Frame = Union[
    Hello, Welcome, Reject, Register, RegisterResult, Unregister, Deliver, DeliveryFailed,
    Subscribe, RegistryEntry, RegistryRemoved, SnapshotEnd, Monitored, Ping, Pong, Goodbye, Ack,
    Watch, Report, State, Stopped, NodeFailure, TopicSubscribe, TopicUnsubscribe, TopicResult,
    TopicWatch, TopicEntry, TopicSnapshotEnd, StatsRequest, Stats, RegisterDurable, Resending,
    DirectAllow, DirectOffer, DirectOpen, DirectClose, Unknown,
]

# The protocol's frame table (docs/wire.md), in variant-index order.
FRAME_TYPES: List[type] = [
    Hello, Welcome, Reject, Register, RegisterResult, Unregister, Deliver, DeliveryFailed,
    Subscribe, RegistryEntry, RegistryRemoved, SnapshotEnd, Monitored, Ping, Pong, Goodbye, Ack,
    Watch, Report, State, Stopped, NodeFailure, TopicSubscribe, TopicUnsubscribe, TopicResult,
    TopicWatch, TopicEntry, TopicSnapshotEnd, _CorrelatedDeliverKind, StatsRequest, Stats,
    RegisterDurable, Resending, DirectAllow, DirectOffer, DirectOpen, DirectClose,
]
FRAME_KINDS = 37  # the frame kinds this client knows: 0 to 36


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
    elif isinstance(f, (Register, Unregister, RegistryRemoved, RegisterDurable, Resending)):
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
        put_bool(out, f.durable)
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
    elif isinstance(f, DirectAllow):
        put_varint(out, f.pairs, 32)
    elif isinstance(f, DirectOffer):
        put_varint(out, f.pair, 32)
        put_varint(out, f.peer_pid, 32)
    elif isinstance(f, (DirectOpen, DirectClose)):
        put_varint(out, f.pair, 32)
    # SnapshotEnd and TopicSnapshotEnd have no fields.
    return bytes(out)


def _decode_known(kind: int, r: Reader) -> Frame:
    """The frame of a known variant index, its fields read from `r`."""
    if kind == 0:
        return Hello(r.u32(), r.u16(), r.u32(), r.u32(), r.string())
    if kind == 1:
        return Welcome(r.u16(), r.u32(), r.u32(), r.u32())
    if kind == 2:
        return Reject(r.enum(REJECT_CODES), r.u16(), r.string())
    if kind == 3:
        return Register(r.string())
    if kind == 4:
        return RegisterResult(r.string(), r.enum(REGISTER_STATUSES))
    if kind == 5:
        return Unregister(r.string())
    if kind == 6:
        return Deliver(r.string(), r.string(), r.string(), r.raw(), r.u64())
    if kind == 7:
        return DeliveryFailed(r.string(), r.string(), r.string(), r.u64(), r.enum(FAIL_REASONS), r.string())
    if kind == 8:
        return Subscribe(r.boolean(), r.boolean())
    if kind == 9:
        return RegistryEntry(r.string(), r.u32(), r.u32(), r.string(), r.enum(TRANSPORT_KINDS), r.u64(), r.boolean())
    if kind == 10:
        return RegistryRemoved(r.string())
    if kind == 11:
        return SnapshotEnd()
    if kind == 12:
        return Monitored(r.u32(), r.u64(), r.raw())
    if kind == 13:
        return Ping(r.u64())
    if kind == 14:
        return Pong(r.u64())
    if kind == 15:
        return Goodbye(r.string())
    if kind == 16:
        return Ack(r.string(), r.string(), r.u64())
    if kind == 17:
        return Watch(r.string(), r.boolean())
    if kind == 18:
        return Report(r.string(), r.boolean())
    if kind == 19:
        return State(r.string(), r.raw())
    if kind == 20:
        return Stopped(r.string(), r.string())
    if kind == 21:
        return NodeFailure(r.string(), r.string(), r.string(), r.u64(), r.enum(FAIL_REASONS), r.string())
    if kind == 22:
        return TopicSubscribe(r.string(), r.string())
    if kind == 23:
        return TopicUnsubscribe(r.string(), r.string())
    if kind == 24:
        return TopicResult(r.string(), r.string(), r.enum(TOPIC_STATUSES))
    if kind == 25:
        return TopicWatch(r.boolean())
    if kind == 26:
        return TopicEntry(r.string(), r.string(), r.boolean())
    if kind == 27:
        return TopicSnapshotEnd()
    if kind == DELIVER_CORRELATED:
        d = Deliver(r.string(), r.string(), r.string(), r.raw(), r.u64())
        c = r.enum(CORRELATIONS)
        if c == "None":
            raise ProtocolError("a correlated Deliver with no correlation")
        d.correlation = (c, r.u32())
        return d
    if kind == 29:
        return StatsRequest(r.u32())
    if kind == 30:
        return Stats(r.u32(), r.u32(), r.raw())
    if kind == 31:
        return RegisterDurable(r.string())
    if kind == 32:
        return Resending(r.string())
    if kind == 33:
        return DirectAllow(r.u32())
    if kind == 34:
        return DirectOffer(r.u32(), r.u32())
    if kind == 35:
        return DirectOpen(r.u32())
    if kind == 36:
        return DirectClose(r.u32())
    raise ProtocolError(f"frame kind {kind} has no decoder")


def decode_frame(body: bytes) -> Frame:
    """Decodes a frame body (no length prefix). Raises ProtocolError on malformed input; a
    variant index past the ones known here decodes as Unknown (the length prefix delimits it)."""
    r = Reader(body)
    kind = r.varint(32)
    if kind >= FRAME_KINDS:
        return Unknown(kind, bytes(body))
    f = _decode_known(kind, r)
    r.end()
    return f


def with_prefix(body: bytes) -> bytes:
    """A frame body with its 4-byte little-endian length in front, as the socket carries it."""
    return struct.pack("<I", len(body)) + body
