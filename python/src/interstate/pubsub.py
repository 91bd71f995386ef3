"""Publish and subscribe: MQTT 3.1.1's topic rules (docs/wire.md, Publish and subscribe) and
the publisher's copy of the hub's subscription table.

The hub holds the subscriptions; a publisher watches the table (`TopicWatch`) and sends one
ordinary message to each subscribing machine, all with the same sequence number, with the
event field `TOPIC\\0EVENT`.
"""

from __future__ import annotations

from typing import List, Set, Tuple

from .wire import TopicEntry

MAX_TOPIC = 128


def check_topic(topic: str) -> None:
    """A topic to publish to: 1 to 128 bytes of UTF-8, no NUL, no `+` or `#`."""
    n = len(topic.encode("utf-8"))
    if not 0 < n <= MAX_TOPIC or "\0" in topic:
        raise ValueError(f"bad topic {topic!r}: use 1 to {MAX_TOPIC} bytes with no NUL")
    if "+" in topic or "#" in topic:
        raise ValueError(f"bad topic {topic!r}: a topic to publish to has no '+' and no '#'")


def matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches `topic_filter` by MQTT's rules (`$` topics excepted from a
    leading wildcard)."""
    f = topic_filter.split("/")
    t = topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


class TopicTable:
    """The publisher's copy of the hub's subscriptions, current after `snapshot_done`."""

    def __init__(self) -> None:
        self.entries: Set[Tuple[str, str]] = set()
        self.snapshot_done = False

    def reset(self) -> None:
        self.entries.clear()
        self.snapshot_done = False

    def handle(self, e: TopicEntry) -> None:
        if e.on:
            self.entries.add((e.machine, e.filter))
        else:
            self.entries.discard((e.machine, e.filter))

    def subscribers(self, topic: str) -> List[str]:
        """Each machine with a filter matching `topic`, once, in a stable order."""
        return sorted({m for (m, f) in self.entries if matches(f, topic)})
