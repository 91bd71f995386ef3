"""The client: one process's membership of the bus.

It registers machine ids, sends and receives events, acknowledges what the application has
taken, answers the hub's pings, keeps the registry, and, when the hub goes away, reconnects
with the Rust client's rules (docs/guarantees.md): every message not yet acknowledged is
sent again with its sequence number, ids are registered again before anything is sent from
them, messages to a target not back yet wait up to 3 s for it, and after an absence of 30 s
or more what had been written to the lost link is reported `disconnected` rather than sent
again. Every message ends acknowledged or reported failed (a `DeliveryError`), exactly once.

Single-threaded: it does its work inside the calls (`recv`, `request`, `flush`, ...). Call
`recv` (or use `Machine.run`) regularly, at least every few seconds, while connected.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

from . import busdir
from .delivery import RESEND_WITHIN_S, Outstanding, Received, Sent
from .errors import (
    DeliveryError, HubGone, InterstateError, NoHub, RegistrationRefused, Rejected,
    RequestFailed, TopicRefused,
)
from .items import Item, MachineDown, MachineUp, Message, Payload, StateReport, encode_payload
from .link import Link, LinkLost
from .pubsub import TopicTable, check_topic
from .requests import Requests
from .wire import (
    DEFAULT_MAX_FRAME, LEN_PREFIX, Ack, Deliver, DeliveryFailed, Frame, Goodbye, Ping, Pong,
    Register, RegisterResult, RegistryEntry, RegistryRemoved, Report, Resending, SnapshotEnd,
    State, Stats, StatsRequest, Stopped, Subscribe, TopicEntry, TopicResult, TopicSnapshotEnd,
    TopicSubscribe,
    TopicUnsubscribe, TopicWatch, Unregister, Watch, cut_utf8, encode_frame, reason_code,
    split_publication,
)

KEEPALIVE_S = 5.0  # ping after this much silence (the hub closes links silent for 30 s)
DEAD_HUB_S = 10.0  # nothing heard for this long after a ping: the hub is gone (as in Rust)
GRACE_S = 3.0  # after a reconnect, messages to a target not back yet wait this long
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
REGISTER_RETRY_MAX_S = 1.0
SWEEP_EVERY_S = 10.0
SEND_BLOCK_S = 5.0  # a send waits this long for room in the outstanding buffer

Reporter = Callable[[], Dict[str, Any]]


@dataclass
class _Id:
    """A machine id this client registered."""

    ok: bool = False  # the hub routes it to the current link
    owned: bool = False  # the hub accepted it from this client at least once (or may have)
    answer: Optional[str] = None  # the hub's last answer on the current link
    retry_at: Optional[float] = None
    retry_every: float = BACKOFF_FIRST_S


class Client:
    """One process's link to the bus. Not thread-safe: use it from one thread."""

    def __init__(
        self, path: str, executable: str, max_frame: int, reconnect: bool,
        give_up_after: Optional[float],
    ):
        self.path = path
        self.executable = executable
        self._max_frame = max_frame
        self.reconnect = reconnect
        self.give_up_after = give_up_after
        self._link: Optional[Link] = None
        self._gen = 0  # the link generation: +1 per connection
        self._gone: Optional[HubGone] = None
        self._away_since: Optional[float] = None
        self._next_attempt = 0.0
        self._backoff = BACKOFF_FIRST_S
        self._grace_end = 0.0
        self._ids: Dict[str, _Id] = {}
        self._outstanding = Outstanding()
        self._waiting = 0  # outstanding messages not written on the current link
        self._received = Received()
        self._pending: Deque[Union[Item, InterstateError]] = collections.deque()
        self._taken: List[Message] = []  # handed out, to acknowledge next time
        self._registry: Dict[str, RegistryEntry] = {}
        self._snapshot: Dict[str, RegistryEntry] = {}
        self._snapshot_done = False
        self._follow = False
        self._watches: Set[str] = set()
        self._reporting: Set[str] = set()
        self._reporters: Dict[str, Reporter] = {}
        self._topics = TopicTable()
        self._topic_watch = False
        self._subscriptions: Set[Tuple[str, str]] = set()
        self._topic_results: Dict[Tuple[str, str], str] = {}
        self._requests = Requests()
        self._pongs: Dict[int, float] = {}
        self._nonce = 0
        # Sequence numbers must grow per (sender, receiver) across restarts of a sender too:
        # start from the wall clock in nanoseconds, as the Rust nodes do.
        self._seq = time.time_ns()
        self._next_sweep = time.monotonic() + SWEEP_EVERY_S
        self._probe: Optional[float] = None  # when the unanswered keepalive ping went
        self.reconnects = 0
        self.closed = False

    # -- connecting ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        bus: Optional[str] = None,
        directory: Optional[str] = None,
        executable: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        wait: float = 5.0,
        reconnect: bool = True,
        give_up_after: Optional[float] = None,
    ) -> "Client":
        """Joins the bus `bus` ($INTERSTATE_BUS, else "default") in `directory` (resolved as
        the Rust side does: busdir.bus_dir()).

        Waits up to `wait` seconds for a hub (NoHub after that); Rejected if the hub refuses.
        With `reconnect` (the default) a lost link is connected again, for ever or until the
        hub has been away `give_up_after` seconds; otherwise a lost link raises HubGone."""
        d = directory or busdir.bus_dir()
        busdir.check_dir(d)
        path = busdir.socket_path(bus, d)
        exe = executable or os.path.basename(sys.argv[0] or "") or "python3"
        c = cls(path, exe, max_frame, reconnect, give_up_after)
        c._link = Link.open(path, exe, max_frame, wait)
        c._gen = 1
        c._send(Subscribe(registry=True, monitor=False))
        return c

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def link(self) -> Optional[Link]:
        """The current link (its `welcome` has the hub's pid and the link number)."""
        return self._link

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, reason: str = "closing") -> None:
        """Acknowledges what the application took, says Goodbye and closes. Messages not yet
        acknowledged are not waited for: call `flush` first to know their fate."""
        if self.closed:
            return
        self.closed = True
        if self._link is not None:
            try:
                self._send_acks()
                self._link.send(Goodbye(cut_utf8(reason, 80)))
            except (LinkLost, ValueError):
                pass
            self._link.close()
            self._link = None
        self._gone = HubGone("the client was closed", self._outstanding.unconfirmed())

    # -- machine ids --------------------------------------------------------------------------

    def register(self, machine: str, timeout: float = 5.0) -> None:
        """Routes `machine` to this client, and again after every reconnect. Raises
        RegistrationRefused (`Taken`, `BadId`, ...) or TimeoutError."""
        st = self._ids.setdefault(machine, _Id())
        st.answer = None
        self._send(Register(machine))
        self._wait(lambda: st.answer is not None, timeout, f"the hub's answer to registering {machine!r}")
        if not st.ok:
            status = st.answer or "?"
            del self._ids[machine]
            raise RegistrationRefused(machine, status)

    def unregister(self, machine: str) -> None:
        self._ids.pop(machine, None)
        self._subscriptions = {s for s in self._subscriptions if s[0] != machine}
        self._send(Unregister(machine))

    def stopped(self, machine: str, error: str) -> None:
        """Tells the bus `machine` stopped on `error`: it leaves the registry, and messages to
        it fail as `target-stopped` with `error` as their detail. What it took is
        acknowledged first: it was handled (the failure was the handling)."""
        self._send_acks()
        self._ids.pop(machine, None)
        self._send(Stopped(machine, cut_utf8(error, 128)))

    # -- sending ------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def send(self, from_: str, to: str, event: str, payload: Payload = b"") -> int:
        """Sends `event` from `from_` (an id this client registered) to `to`; returns its
        sequence number. Delivery is confirmed later: a failure comes back, once, as a
        DeliveryError from `recv` (or `flush`). While the hub is away the message waits."""
        return self._post(Deliver(from_, to, event, encode_payload(payload), self._next_seq()))

    def reply(self, message: Message, event: str, payload: Payload = b"") -> int:
        """Answers `message` (received by this client) with `event`, to its sender: the reply
        to its request when it was one, else a plain message. Returns the seq."""
        corr = ("Reply", message.request) if message.request is not None else None
        return self._post(Deliver(message.to, message.sender, event, encode_payload(payload),
                                  self._next_seq(), corr))

    def request(self, from_: str, to: str, event: str, payload: Payload = b"",
                timeout: float = 5.0) -> Message:
        """Sends `event` as a request and waits for the reply, which it returns. Raises
        RequestFailed, exactly once per request, when no reply comes within `timeout`
        (`timeout`), `to` leaves the bus first (`target-gone`, even if it had acknowledged
        the request), or it is not delivered (`unknown-target`, ...). A reply after that is
        dropped and counted in `late_replies`. Other items that arrive meanwhile wait for
        `recv`."""
        rid = self._requests.open(from_, to, time.monotonic() + timeout)
        try:
            self._post(Deliver(from_, to, event, encode_payload(payload), self._next_seq(),
                               ("Request", rid)))
            self._wait(lambda: self._requests.settled(rid), None, "")
            reply = self._requests.outcome(rid)
            if isinstance(reply, RequestFailed):
                raise reply
            return reply
        finally:
            self._requests.close(rid)

    @property
    def late_replies(self) -> int:
        return self._requests.late

    def publish(self, from_: str, topic: str, event: str, payload: Payload = b"") -> List[str]:
        """Publishes `event` to `topic`: one message, with one sequence number, to each machine
        subscribed with a matching filter. Returns the machines it went to. Failures come
        back as DeliveryError, as for `send`."""
        check_topic(topic)
        if not self._topic_watch:
            self._topic_watch = True
            self._send(TopicWatch(True))
        self._wait(lambda: self._topics.snapshot_done, 5.0, "the hub's subscription table")
        seq = self._next_seq()
        body = encode_payload(payload)
        targets = self._topics.subscribers(topic)
        for m in targets:
            self._post(Deliver(from_, m, f"{topic}\0{event}", body, seq))
        return targets

    def subscribe(self, machine: str, topic_filter: str, timeout: float = 5.0) -> None:
        """Subscribes `machine` (registered by this client) to a topic filter (`+` one level,
        `#` the rest). Publications arrive as messages with `topic` set; the subscription is
        made again after a reconnect. Raises TopicRefused with the hub's status (the hub
        judges the filter: `BadFilter`)."""
        key = (machine, topic_filter)
        self._topic_results.pop(key, None)
        self._send(TopicSubscribe(machine, topic_filter))
        self._wait(lambda: key in self._topic_results, timeout,
                   f"the answer to subscribing {machine!r} to {topic_filter!r}")
        status = self._topic_results.pop(key)
        if status != "Ok":
            raise TopicRefused(machine, topic_filter, status)
        self._subscriptions.add(key)

    def unsubscribe(self, machine: str, topic_filter: str) -> None:
        self._subscriptions.discard((machine, topic_filter))
        self._send(TopicUnsubscribe(machine, topic_filter))

    def _post(self, d: Deliver) -> int:
        """Keeps `d` until it is settled, and writes it now if nothing holds it back."""
        if self._gone is not None:
            raise self._gone
        # An upper bound of the encoded body: the fields, their length varints, seq, kind and
        # correlation fit in 32 bytes more.
        size = len(d.payload) + sum(len(x.encode("utf-8")) for x in (d.event, d.from_, d.to)) + 32
        if self._link is not None and size > self._link.max_frame - LEN_PREFIX:
            # Near the limit: the exact size (encoding every message would cost a copy).
            if len(encode_frame(d)) > self._link.max_frame:
                raise DeliveryError(d.from_, d.to, d.event, d.seq, "too-large",
                                    f"larger than the bus's largest frame ({self._link.max_frame} bytes)")
        if not self._outstanding.has_room(size):
            if self._link is None:
                raise DeliveryError(d.from_, d.to, d.event, d.seq, "disconnected",
                                    "the hub is away and the outstanding buffer is full")
            self._wait(lambda: self._outstanding.has_room(size), SEND_BLOCK_S,
                       "room in the outstanding buffer (the receivers do not acknowledge)")
        if self._link is None and self._gone is None and time.monotonic() >= self._next_attempt:
            self._reconnect()  # a sender that never reads must come back too
        self._outstanding.add(d, size)
        self._waiting += 1
        self._transmit()
        return d.seq

    def _transmit(self) -> None:
        """Writes the messages waiting to be written on this link, in order, holding back
        those from an id not registered again yet and, after a reconnect, those to a target
        not back yet (up to GRACE_S); a held message holds back the later ones of its pair."""
        link = self._link
        if link is None or self._waiting == 0:
            return
        now = time.monotonic()
        held: Set[Tuple[str, str]] = set()
        for s in self._outstanding:
            if s.written_on == self._gen:
                continue
            pair = (s.frame.from_, s.frame.to)
            if pair in held or not self._may_write(s, now):
                held.add(pair)
                continue
            try:
                link.send(s.frame)
            except LinkLost as e:
                self._lost(str(e))
                return
            s.written_on = self._gen
            s.ever_written = True
            self._waiting -= 1

    def _may_write(self, s: Sent, now: float) -> bool:
        st = self._ids.get(s.frame.from_)
        if st is not None and not st.ok:
            return False  # registered by us, not (yet) on this link
        if now < self._grace_end:
            return self._snapshot_done and s.frame.to in self._registry
        return True

    def flush(self, timeout: float = 5.0) -> None:
        """Waits until every message sent so far is acknowledged or reported failed (a failure
        is raised as DeliveryError, and `flush` may be called again for the rest)."""
        self._send_acks()
        self._wait(lambda: len(self._outstanding) == 0, timeout,
                   f"acknowledgements ({len(self._outstanding)} message(s) unconfirmed)")

    @property
    def unacknowledged(self) -> int:
        return len(self._outstanding)

    # -- registry, watches --------------------------------------------------------------------

    def registry(self, timeout: float = 5.0) -> Dict[str, RegistryEntry]:
        """The machines on the bus (a copy, current once the hub's snapshot arrived)."""
        self._wait(lambda: self._snapshot_done, timeout, "the registry snapshot")
        return dict(self._registry)

    def wait_for(self, machine: str, timeout: float = 5.0) -> RegistryEntry:
        """Waits until `machine` is on the bus; returns its registry entry."""
        self._wait(lambda: self._snapshot_done and machine in self._registry, timeout,
                   f"{machine!r} to join the bus")
        return self._registry[machine]

    def follow_registry(self, on: bool = True) -> None:
        """From now on `recv` also returns MachineUp and MachineDown for every change."""
        self._follow = on

    def watch_state(self, machine: str, on: bool = True) -> None:
        """Asks for `machine`'s state reports (StateReport items from `recv`), now and after
        each of its steps; again after a reconnect. `on=False` stops them."""
        if on:
            self._watches.add(machine)
        else:
            self._watches.discard(machine)
        self._send(Watch(machine, on))

    def set_reporter(self, machine: str, reporter: Reporter) -> None:
        """How to report `machine`'s state when someone watches it (default: as a port)."""
        self._reporters[machine] = reporter

    def report_state(self, machine: str) -> None:
        """Sends `machine`'s state to its watchers, if it has any (after each step)."""
        if machine in self._reporting:
            self._send_state(machine)

    def _send_state(self, machine: str) -> None:
        reporter = self._reporters.get(machine)
        report = reporter() if reporter else {"machine": machine, "port": True}
        body = json.dumps(report, separators=(",", ":")).encode("utf-8")
        if self._link is not None and len(body) + 80 > self._link.max_frame:
            body = json.dumps({"machine": machine, "state": None, "truncated": True}).encode()
        self._send(State(machine, body))

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> Optional[Item]:
        """The next item for the application (a Message, or MachineUp/MachineDown/StateReport
        when asked for), or None when `timeout` passed first. What was taken before this call
        is acknowledged now. Raises DeliveryError for a message of ours that failed (once per
        message; call again for the next item) and HubGone when the hub is gone for good."""
        self._send_acks()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            left = None if deadline is None else deadline - time.monotonic()
            self._pump(None if left is None else max(0.0, left))
            if not self._pending and left is not None and left <= 0:
                return None
        item = self._pending.popleft()
        if isinstance(item, InterstateError):
            raise item
        if isinstance(item, Message):
            self._taken.append(item)
        return item

    def poll(self, timeout: float = 0.0) -> None:
        """Works the link for up to `timeout` seconds (reads frames into the queue `recv`
        hands out, answers pings, reconnects, writes what waits) without handing anything
        out: for a process that sends and does not otherwise call `recv`."""
        self._send_acks()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            self._pump(max(0.0, left))
            if left <= 0:
                return

    def ping(self, timeout: float = 5.0) -> float:
        """Pings the hub; returns the round trip in seconds."""
        self._nonce += 1
        nonce = self._nonce
        start = time.monotonic()
        self._send(Ping(nonce))
        self._wait(lambda: nonce in self._pongs, timeout, "the hub's pong")
        return self._pongs.pop(nonce) - start

    @property
    def duplicates(self) -> int:
        return self._received.duplicates

    def _send_acks(self) -> None:
        for m in self._taken:
            self._received.taken(m.to, m.sender, m.sender_pid, m.seq)
        self._taken.clear()
        owed = self._received.take_owed()
        for (receiver, sender), seq in owed.items():
            self._send(Ack(receiver, sender, seq))

    def _wait(self, done: Callable[[], bool], timeout: Optional[float], what: str) -> None:
        """Works the link until `done()`; TimeoutError naming `what` after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._send_acks()
        while not done():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"waited {timeout} s for {what} in vain")
            self._pump(left)

    def _send(self, f: Frame) -> None:
        """Writes a control frame if connected (after a reconnect the state is sent anew)."""
        if self._gone is not None:
            raise self._gone
        if self._link is not None:
            try:
                self._link.send(f)
            except LinkLost as e:
                self._lost(str(e))

    # -- the loop -----------------------------------------------------------------------------

    def _pump(self, timeout: Optional[float]) -> None:
        """Does what is due, then reads at most one frame (waiting up to `timeout`)."""
        if self._gone is not None:
            raise self._gone
        now = time.monotonic()
        self._requests.expire(now)
        link = self._link
        wait = 0.5 if timeout is None else min(timeout, 0.5)
        if link is None:
            if now >= self._next_attempt:
                self._reconnect()
            else:
                time.sleep(max(0.0, min(wait, self._next_attempt - now)))
            return
        self._timers(now, link)
        if self._link is None:
            return
        try:
            f = link.read(max(0.0, wait))
            # Then what else has arrived already, up to a bound (timers run between rounds).
            for _ in range(256):
                if f is None:
                    break
                self._handle(f)
                if self._link is not link:
                    return
                f = link.read(0.0)
        except LinkLost as e:
            self._lost(str(e))

    def _timers(self, now: float, link: Link) -> None:
        # Ping after KEEPALIVE_S of silence either way; the hub is dead when nothing at all
        # came within DEAD_HUB_S of a ping (counted from the ping, so that time this process
        # spent away from the client, in a long handler, does not count against the hub).
        if self._probe is not None and link.last_rx > self._probe:
            self._probe = None
        if now - link.last_tx >= KEEPALIVE_S or (self._probe is None and now - link.last_rx >= KEEPALIVE_S):
            self._nonce += 1
            self._send(Ping(self._nonce))
            if self._probe is None:
                self._probe = now
        if self._probe is not None and now - self._probe >= DEAD_HUB_S:
            link.close()
            self._lost(f"the hub did not answer a ping for {DEAD_HUB_S:.0f} s")
            return
        for machine, st in self._ids.items():
            if st.retry_at is not None and now >= st.retry_at:
                st.retry_at = None
                self._send(Register(machine))
        if self._waiting:
            self._transmit()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            if self._snapshot_done:
                self._received.sweep(time.time(), dict(self._registry))

    def _lost(self, why: str) -> None:
        """The link broke: reconnect (later), or give up when not allowed to."""
        if self._link is None:
            return
        self._away_since = self._link.last_rx
        self._probe = None
        self._link.close()
        self._link = None
        self._snapshot_done = False
        self._topics.reset()
        for st in self._ids.values():
            st.ok = False
            st.answer = None
            st.retry_at = None
        for s in self._outstanding:
            if s.written_on != -1:
                s.written_on = -1
                self._waiting += 1
        if not self.reconnect:
            self._gone = HubGone(why, self._outstanding.unconfirmed())
            return
        self._backoff = BACKOFF_FIRST_S
        self._next_attempt = time.monotonic() + self._backoff

    def _reconnect(self) -> None:
        now = time.monotonic()
        away = now - (self._away_since or now)
        if self.give_up_after is not None and away >= self.give_up_after:
            self._gone = HubGone(f"no hub for {away:.0f} s", self._outstanding.unconfirmed())
            raise self._gone
        try:
            link = Link.open(self.path, self.executable, self._max_frame, 0.0)
        except (NoHub, LinkLost, OSError):
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            self._next_attempt = now + self._backoff
            return
        except Rejected as e:
            if e.code != "TooManyLinks":
                self._gone = HubGone(str(e), self._outstanding.unconfirmed())
                raise self._gone from None
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            self._next_attempt = now + self._backoff
            return
        self._link = link
        self._gen += 1
        self.reconnects += 1
        self._grace_end = time.monotonic() + GRACE_S
        if time.monotonic() - (self._away_since or now) >= RESEND_WITHIN_S:
            # Receivers may have forgotten us: what the lost link may have carried is reported
            # "not confirmed" instead of being sent again (it could be delivered twice).
            for s in self._outstanding:
                if s.ever_written:
                    self._settle_failed(s, "disconnected",
                                        f"away from the bus {RESEND_WITHIN_S:.0f} s or more; not sent again")
        self._away_since = None
        self._snapshot = {}
        self._send(Subscribe(registry=True, monitor=False))
        for machine in self._ids:
            self._send(Register(machine))
        if self._topic_watch:
            self._send(TopicWatch(True))
        for machine in self._watches:
            self._send(Watch(machine, True))

    def _settle_failed(self, s: Sent, reason: str, detail: str) -> None:
        """Settles an outstanding message as failed: its request fails, or a DeliveryError
        waits for `recv`."""
        f = s.frame
        if self._outstanding.settle(f.from_, f.to, f.seq) is None:
            return
        if s.written_on != self._gen:
            self._waiting -= 1
        if f.correlation is not None and f.correlation[0] == "Request":
            if self._requests.fail(f.correlation[1], reason, detail):
                return
        self._pending.append(DeliveryError(f.from_, f.to, f.event, f.seq, reason, detail))

    def _handle(self, f: Frame) -> None:
        if isinstance(f, Deliver):
            self._handle_deliver(f)
        elif isinstance(f, Ack):
            self._outstanding.ack(f.to, f.from_, f.seq)
        elif isinstance(f, DeliveryFailed):
            s = self._outstanding.get(f.from_, f.to, f.seq)
            if s is not None:  # else settled already (an ack, or an earlier report)
                self._settle_failed(s, reason_code(f.reason), f.detail)
        elif isinstance(f, Ping):
            self._send(Pong(f.nonce))
        elif isinstance(f, Pong):
            self._pongs[f.nonce] = time.monotonic()
        elif isinstance(f, RegisterResult):
            self._handle_registered(f)
        elif isinstance(f, RegistryEntry):
            self._handle_entry(f)
        elif isinstance(f, RegistryRemoved):
            self._handle_removed(f.machine)
        elif isinstance(f, SnapshotEnd):
            self._handle_snapshot_end()
        elif isinstance(f, TopicResult):
            self._topic_results[(f.machine, f.filter)] = f.status
        elif isinstance(f, TopicEntry):
            self._topics.handle(f)
        elif isinstance(f, TopicSnapshotEnd):
            self._topics.snapshot_done = True
        elif isinstance(f, Report):
            if f.on and f.machine in self._ids:
                self._reporting.add(f.machine)
                self._send_state(f.machine)
            elif not f.on:
                self._reporting.discard(f.machine)
        elif isinstance(f, State):
            try:
                report = json.loads(f.report)
            except ValueError:
                report = {"machine": f.machine, "unreadable": f.report.decode("utf-8", "replace")}
            self._pending.append(StateReport(f.machine, report))
        elif isinstance(f, StatsRequest):
            # This client keeps no counters: it answers with an empty report, so that the
            # asker (`interstate stats`) does not wait for this process (docs/operations.md).
            report = {
                "source": {"role": "node", "pid": os.getpid(), "executable": self.executable,
                           "bus": ""},
                "metrics": [],
            }
            self._send(Stats(f.link, 0, json.dumps(report).encode()))
        elif isinstance(f, Goodbye):
            if self._link is not None:
                self._link.close()
            self._lost(f"the hub said goodbye: {f.reason}")
        # Anything else (Unknown kinds from a newer hub, Monitored, ...) is skipped.

    def _handle_deliver(self, d: Deliver) -> None:
        entry = self._registry.get(d.from_)
        pid = entry.pid if entry is not None else 0
        if not self._received.accept(d, pid):
            return
        msg = _message(d, pid)
        if d.correlation is not None and d.correlation[0] == "Reply":
            # The application has it once `request` returns it; a late one is dropped, and
            # acknowledged all the same.
            self._requests.answer(d.correlation[1], d.from_, msg)
            self._taken.append(msg)
            return
        # Acknowledged once `recv` has handed it out (see _send_acks), not while queued.
        self._pending.append(msg)

    def _handle_registered(self, f: RegisterResult) -> None:
        st = self._ids.get(f.machine)
        if st is None:
            return
        st.answer = f.status
        if f.status == "Ok":
            st.ok = True
            st.owned = True
            st.retry_every = BACKOFF_FIRST_S
            for m, flt in self._subscriptions:
                if m == f.machine:
                    self._send(TopicSubscribe(m, flt))
            self._transmit()
        elif f.status == "Taken" and st.owned:
            # Still held for our previous link (the hub has not noticed it died): ask again.
            st.retry_at = time.monotonic() + st.retry_every
            st.retry_every = min(st.retry_every * 2, REGISTER_RETRY_MAX_S)
        elif st.owned:
            # Refused for good after a reconnect: what waits to be sent from it fails.
            del self._ids[f.machine]
            for s in self._outstanding:
                if s.frame.from_ == f.machine:
                    self._settle_failed(s, "not-owner", f"the hub refused the id again: {f.status}")

    def _handle_entry(self, e: RegistryEntry) -> None:
        # A new owner of an id this client had messages out to, unacknowledged: the hub held
        # the id for its durable owner, who came back, and dropped them. They are written
        # again, in order; the hub forwards what follows the Resending frame.
        rewound = False
        for s in self._outstanding:
            if s.frame.to == e.machine and s.written_on == self._gen:
                s.written_on = -1
                self._waiting += 1
                rewound = True
        if rewound:
            self._send(Resending(e.machine))
        before = self._registry.get(e.machine)
        if before is not None and before.durable and e.durable and before.pid != e.pid:
            # A durable sender's restarted process: its numbers go on (wire.md RegistryEntry).
            self._received.carry_over(e.machine, before.pid, e.pid)
        if not self._snapshot_done:
            self._snapshot[e.machine] = e
            return
        self._registry[e.machine] = e
        self._received.departed.pop(e.machine, None)
        if self._follow:
            self._pending.append(MachineUp(e))
        self._transmit()

    def _handle_removed(self, machine: str) -> None:
        if not self._snapshot_done:
            self._snapshot.pop(machine, None)
            return
        self._registry.pop(machine, None)
        self._gone_from_bus(machine)

    def _gone_from_bus(self, machine: str) -> None:
        self._received.departed[machine] = time.time()
        # It can no longer acknowledge: what it had not, it is reported (not confirmed).
        for s in self._outstanding.to_target(machine, self._gen):
            self._settle_failed(s, "target-gone", "")
        self._requests.target_gone(machine)
        if self._follow:
            self._pending.append(MachineDown(machine))

    def _handle_snapshot_end(self) -> None:
        old, self._registry = self._registry, dict(self._snapshot)
        self._snapshot = {}
        self._snapshot_done = True
        for machine in old:
            if machine not in self._registry:
                self._gone_from_bus(machine)
        for machine, e in self._registry.items():
            if self._follow and machine not in old:
                self._pending.append(MachineUp(e))
        self._transmit()


def _message(d: Deliver, pid: int) -> Message:
    topic, event = split_publication(d.event)
    request = d.correlation[1] if d.correlation is not None and d.correlation[0] == "Request" else None
    return Message(d.from_, d.to, event, d.payload, d.seq, topic, request, pid)
