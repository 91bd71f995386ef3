"""The requester's table of pending requests (the rules of the Rust core's
`interstate_core::request::Pending`, docs/wire.md "Requests and replies"): each request is
settled exactly once, by its reply from its target, its deadline (`timeout`), its target
leaving the bus (`target-gone`) or a delivery failure (its reason). A reply for a request not
pending is late: counted and dropped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional, Union

from .errors import RequestFailed
from .items import Message


@dataclass
class _Pending:
    requester: str
    target: str
    deadline: float
    outcome: Optional[Union[Message, RequestFailed]] = None


class Requests:
    def __init__(self) -> None:
        self._next = time.time_ns() & 0x7FFFFFFF
        self._open: Dict[int, _Pending] = {}
        self.late = 0

    def open(self, requester: str, target: str, deadline: float) -> int:
        """A new request id (unique among the pending ones), pending until settled."""
        while True:
            self._next = (self._next + 1) & 0xFFFFFFFF or 1
            if self._next not in self._open:
                break
        self._open[self._next] = _Pending(requester, target, deadline)
        return self._next

    def settled(self, rid: int) -> bool:
        p = self._open.get(rid)
        return p is None or p.outcome is not None

    def outcome(self, rid: int) -> Union[Message, RequestFailed]:
        p = self._open[rid]
        assert p.outcome is not None
        return p.outcome

    def close(self, rid: int) -> None:
        self._open.pop(rid, None)

    def answer(self, rid: int, sender: str, reply: Message) -> bool:
        """A reply arrived: True if it settles its request (from the request's target, to
        its requester, while pending); else it is late and counted."""
        p = self._open.get(rid)
        if p is None or p.outcome is not None or p.target != sender or p.requester != reply.to:
            self.late += 1
            return False
        p.outcome = reply
        return True

    def fail(self, rid: int, reason: str, detail: str = "") -> bool:
        p = self._open.get(rid)
        if p is None or p.outcome is not None:
            return False
        p.outcome = RequestFailed(rid, p.target, reason, detail)
        return True

    def target_gone(self, machine: str) -> None:
        for rid, p in self._open.items():
            if p.target == machine and p.outcome is None:
                p.outcome = RequestFailed(rid, machine, "target-gone")

    def expire(self, now: float) -> None:
        for rid, p in self._open.items():
            if p.outcome is None and now >= p.deadline:
                p.outcome = RequestFailed(rid, p.target, "timeout")
