"""The delivery state of one process, as the Rust client keeps it (no_std_core/src/bus/):

- `Outstanding`: every message sent and not yet acknowledged, in send order, kept to be sent
  again after a reconnect or settled once by an acknowledgement or a failure report;
- `Received`: the duplicate filter (highest sequence number delivered per receiver, sender
  and sender process) and the acknowledgements owed for what the application has taken.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from .wire import Deliver

# What the Rust node keeps by default (NodeConfig::reconnect_buffer).
OUTSTANDING_BYTES = 1 << 20
# A departed sender's duplicate state is forgotten this long after it left (the Rust nodes').
FORGET_DEPARTED_S = 60.0
# A client away this long or more does not send again what it had written (half of the above).
RESEND_WITHIN_S = 30.0


@dataclass
class Sent:
    """A message kept until it is acknowledged or failed."""

    frame: Deliver
    size: int
    # The link generation it was written on; -1 while it waits to be written (again).
    written_on: int = -1
    # Written to some link at least once: after a long absence it is reported, not resent.
    ever_written: bool = False


class Outstanding:
    """Messages sent and not yet settled, in the order they were sent."""

    def __init__(self, limit: int = OUTSTANDING_BYTES):
        self.limit = limit
        self.bytes = 0
        self._items: "collections.OrderedDict[Tuple[str, str, int], Sent]" = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.limit or not self._items

    def add(self, frame: Deliver, size: int) -> Sent:
        s = Sent(frame, size)
        self._items[(frame.from_, frame.to, frame.seq)] = s
        self.bytes += size
        return s

    def __iter__(self) -> Iterator[Sent]:
        return iter(list(self._items.values()))

    def get(self, from_: str, to: str, seq: int) -> Optional[Sent]:
        return self._items.get((from_, to, seq))

    def settle(self, from_: str, to: str, seq: int) -> Optional[Sent]:
        """Removes and returns the message, or None when it was settled already."""
        s = self._items.pop((from_, to, seq), None)
        if s is not None:
            self.bytes -= s.size
        return s

    def ack(self, sender: str, receiver: str, seq: int) -> int:
        """Settles every message from `sender` to `receiver` up to `seq` (cumulative)."""
        done = [k for k in self._items if k[0] == sender and k[1] == receiver and k[2] <= seq]
        for k in done:
            self.settle(*k)
        return len(done)

    def to_target(self, receiver: str, link: int) -> List[Sent]:
        """The messages to `receiver` written on link generation `link`."""
        return [s for s in self._items.values() if s.frame.to == receiver and s.written_on == link]

    def unconfirmed(self) -> List[Tuple[str, str, str, int]]:
        return [(s.frame.from_, s.frame.to, s.frame.event, s.frame.seq) for s in self._items.values()]


class Received:
    """The duplicate filter and the acknowledgements owed.

    Sequence numbers belong to the sending *process*: the state is kept per (receiver, sender,
    sender's pid as the registry shows it), so that a new owner of an id never has its
    numbers taken for duplicates of the previous owner's."""

    def __init__(self) -> None:
        # (receiver, sender, pid) -> highest seq delivered (queued for the application).
        self.delivered: Dict[Tuple[str, str, int], int] = {}
        # The same, for what the application has taken: what an Ack may cover.
        self.handed: Dict[Tuple[str, str, int], int] = {}
        # (receiver, sender) -> the seq to acknowledge.
        self.owed: Dict[Tuple[str, str], int] = {}
        # sender id -> when it left the registry.
        self.departed: Dict[str, float] = {}
        self.duplicates = 0

    def accept(self, d: Deliver, pid: int) -> bool:
        """True when `d` is new; False for a duplicate (dropped, acknowledged again)."""
        key = (d.to, d.from_, pid)
        last = self.delivered.get(key)
        if last is not None and d.seq <= last:
            self.duplicates += 1
            handed = self.handed.get(key)
            if handed is not None:
                self.owed[(d.to, d.from_)] = handed
            return False
        self.delivered[key] = d.seq
        return True

    def taken(self, receiver: str, sender: str, pid: int, seq: int) -> None:
        """The application has the message: it may be acknowledged now."""
        key = (receiver, sender, pid)
        self.handed[key] = max(self.handed.get(key, 0), seq)
        self.owed[(receiver, sender)] = self.handed[key]

    def carry_over(self, sender: str, old_pid: int, new_pid: int) -> None:
        """A durable `sender` (its registry entry says so) is owned by a new process after a
        durable one: it numbers on from its journal and sends again, with their numbers, what
        it had not had acknowledged, so the earlier process's state becomes the new one's."""
        for table in (self.delivered, self.handed):
            for key in [k for k in table if k[1] == sender and k[2] == old_pid]:
                seq = table.pop(key)
                new = (key[0], sender, new_pid)
                table[new] = max(table.get(new, 0), seq)

    def take_owed(self) -> Dict[Tuple[str, str], int]:
        owed, self.owed = self.owed, {}
        return owed

    def sweep(self, now: float, present: Dict[str, object]) -> None:
        """Forgets senders gone from the registry for FORGET_DEPARTED_S (call only with a
        current registry)."""
        for sender, since in list(self.departed.items()):
            if sender in present:
                del self.departed[sender]
            elif now - since >= FORGET_DEPARTED_S:
                del self.departed[sender]
                for table in (self.delivered, self.handed):
                    for key in [k for k in table if k[1] == sender]:
                        del table[key]
