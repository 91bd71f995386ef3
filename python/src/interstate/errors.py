"""The exceptions of the package: each names what happened, with the fields to act on.

Every one is an `InterstateError`. The reasons of delivery failures are the runtime's codes
(`unknown-target`, `target-gone`, `not-owner`, `too-large`, `disconnected`, `reserved`,
`target-stopped`), as in the payload of `xstate.error.delivery` (docs/guarantees.md).
"""

from __future__ import annotations

from typing import List, Tuple


class InterstateError(Exception):
    """The base of every error of this package."""


class ProtocolError(InterstateError):
    """Bytes that are not a valid frame, or a peer that broke the protocol."""


class BadBusSetting(InterstateError, ValueError):
    """A bus name or bus directory that cannot be used (the Rust side refuses it too)."""


class Rejected(InterstateError):
    """The hub refused this client in the handshake (a Reject frame). `code` is the
    RejectCode (`Version`, `NotAllowed`, `TooManyLinks`, ...); only `TooManyLinks` may go
    away by retrying."""

    def __init__(self, code: str, version: int, message: str):
        super().__init__(f"the hub refused the connection ({code}): {message}")
        self.code = code
        self.version = version
        self.message = message


class NoHub(InterstateError, ConnectionError):
    """No hub serves the bus: nothing listens on its socket (within the time allowed)."""

    def __init__(self, path: str, why: str):
        super().__init__(f"no hub serves the bus at {path}: {why}; start one with `interstate hub`")
        self.path = path


class HubGone(InterstateError, ConnectionError):
    """The link to the hub is lost and this client will not reconnect (it was made with
    `reconnect=False`, was closed, or the hub stayed away longer than `give_up_after`).
    `unconfirmed` lists the messages sent and not acknowledged as (from, to, event, seq):
    their receivers may or may not have them. Nothing else is pending."""

    def __init__(self, why: str, unconfirmed: List[Tuple[str, str, str, int]]):
        n = len(unconfirmed)
        tail = f"; {n} message(s) sent and not confirmed" if n else ""
        super().__init__(f"the hub is gone ({why}){tail}")
        self.why = why
        self.unconfirmed = unconfirmed


class RegistrationRefused(InterstateError):
    """The hub refused to route a machine id to this client. `status` is the RegisterStatus:
    `Taken` (another live process owns it), `BadId` (empty, over 64 bytes, or a control
    character), `TooMany`, `HubFull`."""

    def __init__(self, machine: str, status: str):
        hint = {
            "Taken": "another process on the bus owns it",
            "BadId": "use 1 to 64 bytes with no control characters",
            "TooMany": "this client registered as many ids as the hub allows",
            "HubFull": "the hub's routing table is full",
        }.get(status, "")
        super().__init__(f"the hub refused to register {machine!r}: {status}" + (f" ({hint})" if hint else ""))
        self.machine = machine
        self.status = status


class TopicRefused(InterstateError):
    """The hub refused a topic subscription: `status` is `BadFilter`, `NotOwner`, `TooMany`
    or `HubFull`."""

    def __init__(self, machine: str, topic_filter: str, status: str):
        super().__init__(f"the hub refused the subscription of {machine!r} to {topic_filter!r}: {status}")
        self.machine = machine
        self.filter = topic_filter
        self.status = status


class DeliveryError(InterstateError):
    """A message this client sent was not delivered (or not confirmed): the hub's report, or
    one the client found itself (`target-gone` when the receiver left before acknowledging,
    `disconnected` when the client was away too long to send it again, `too-large`). Raised
    by `Client.recv` (and by the waits that read frames) once per failed message; the client
    stays usable. `detail` is a stopped target's error for `target-stopped`, else empty."""

    def __init__(self, from_: str, to: str, event: str, seq: int, reason: str, detail: str = ""):
        more = f": {detail}" if detail else ""
        super().__init__(f"{event!r} from {from_!r} to {to!r} (seq {seq}) was not delivered: {reason}{more}")
        self.from_ = from_
        self.to = to
        self.event = event
        self.seq = seq
        self.reason = reason
        self.detail = detail


class RequestFailed(InterstateError):
    """A request ended without its reply: `reason` is `timeout`, `target-gone`, or a delivery
    failure's code (`unknown-target`, `target-stopped`, ...), as in xstate.error.request."""

    def __init__(self, request: int, to: str, reason: str, detail: str = ""):
        more = f": {detail}" if detail else ""
        super().__init__(f"request {request} to {to!r} failed: {reason}{more}")
        self.request = request
        self.to = to
        self.reason = reason
        self.detail = detail
