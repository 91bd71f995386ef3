"""`Machine`: a Python process as a first-class member of the bus, one handler per event.

    from interstate import Client, Machine

    with Client.connect() as client:
        worker = Machine(client, "ml-worker")

        @worker.on("CLASSIFY")
        def classify(ev):
            worker.state = "busy"
            ev.reply("RESULT", {"label": "cat"})
            worker.state = "idle"

        worker.run()

The machine registers its id, takes each event for it from the bus and runs the handler of
its name (or the `"*"` handler), acknowledging it once the handler returned. It reports its
state to watchers (`interstate status`, `interstate inspect`) in the Rust nodes' format, with
`state` as the handler set it. A handler that raises stops the machine as a Rust machine stops
on an error: the bus is told (`Stopped`: later messages to it fail as `target-stopped` with
the error), and the exception leaves `run`. `xstate.machine.up` / `xstate.machine.down`
handlers get registry changes of the machines `follow` named.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Set

from .client import Client
from .errors import DeliveryError
from .items import MachineDown, MachineUp, Message, Payload

MACHINE_UP = "xstate.machine.up"
MACHINE_DOWN = "xstate.machine.down"


class Event:
    """The event a handler runs on: the message, and how to answer it."""

    def __init__(self, machine: "Machine", name: str, message: Optional[Message]):
        self.machine = machine
        self.name = name
        self.message = message

    @property
    def sender(self) -> Optional[str]:
        return self.message.sender if self.message else None

    @property
    def payload(self) -> bytes:
        return self.message.payload if self.message else b""

    @property
    def topic(self) -> Optional[str]:
        return self.message.topic if self.message else None

    def data(self) -> Any:
        """The payload as JSON (None when empty)."""
        return self.message.json() if self.message else None

    def reply(self, event: str, payload: Payload = b"") -> int:
        """Answers the sender (the reply to its request, when it was one)."""
        if self.message is None or not self.message.sender:
            raise ValueError(f"{self.name} has no sender to reply to")
        return self.machine.client.reply(self.message, event, payload)


Handler = Callable[[Event], None]
FailureHandler = Callable[[DeliveryError], None]


class Machine:
    """A machine id on the bus run by handlers. `state` and `context` are the handler's to
    set; they are what state reports show."""

    def __init__(self, client: Client, machine_id: str, state: str = "idle", register: bool = True):
        self.client = client
        self.id = machine_id
        self.state = state
        self.context: Dict[str, Any] = {}
        self._handlers: Dict[str, Handler] = {}
        self._on_failure: Optional[FailureHandler] = None
        self._followed: Set[str] = set()
        self._last_events: List[str] = []
        self._errors: List[str] = []
        self._status = "active"
        self._running = False
        if register:
            client.register(machine_id)
        client.set_reporter(machine_id, self.report)

    def on(self, event: str) -> Callable[[Handler], Handler]:
        """Decorator: run the function for each `event` (`"*"`: every event without its own
        handler)."""

        def add(fn: Handler) -> Handler:
            self._handlers[event] = fn
            return fn

        return add

    def on_failure(self, fn: FailureHandler) -> FailureHandler:
        """Decorator: run the function for each message of this machine that was not delivered
        or not confirmed. Without one, each is written to stderr and the machine goes on, as a
        Rust machine with no transition for `xstate.error.delivery` ignores it (a requester
        that exits as soon as it has its reply, like `interstate request`, leaves before it
        acknowledges it: `target-gone`)."""
        self._on_failure = fn
        return fn

    def send(self, to: str, event: str, payload: Payload = b"") -> int:
        return self.client.send(self.id, to, event, payload)

    def request(self, to: str, event: str, payload: Payload = b"", timeout: float = 5.0) -> Message:
        return self.client.request(self.id, to, event, payload, timeout)

    def publish(self, topic: str, event: str, payload: Payload = b"") -> List[str]:
        return self.client.publish(self.id, topic, event, payload)

    def subscribe(self, topic_filter: str) -> None:
        self.client.subscribe(self.id, topic_filter)

    def follow(self, machine: str) -> None:
        """Have the `xstate.machine.up` / `xstate.machine.down` handlers called when `machine`
        joins or leaves the bus."""
        self._followed.add(machine)
        self.client.follow_registry(True)

    def stop(self) -> None:
        """Ends `run` after the current handler."""
        self._running = False

    def run(self, timeout: Optional[float] = None) -> None:
        """Handles events until `stop()` (or until `timeout` seconds passed)."""
        self._running = True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._running:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            self.step(left if left is not None else 1.0)

    def step(self, timeout: Optional[float] = None) -> bool:
        """Handles at most one item from the bus; False when none came within `timeout`."""
        try:
            item = self.client.recv(timeout)
        except DeliveryError as e:
            if e.from_ != self.id:
                raise
            if self._on_failure is not None:
                self._on_failure(e)
            else:
                print(f"{self.id}: {e}", file=sys.stderr, flush=True)
            return True
        if item is None:
            return False
        if isinstance(item, Message):
            if item.to == self.id:
                self._dispatch(item.event, item)
        elif isinstance(item, MachineUp) and item.machine in self._followed:
            self._dispatch(MACHINE_UP, None, item.machine)
        elif isinstance(item, MachineDown) and item.machine in self._followed:
            self._dispatch(MACHINE_DOWN, None, item.machine)
        return True

    def _dispatch(self, name: str, message: Optional[Message], about: Optional[str] = None) -> None:
        handler = self._handlers.get(name) or self._handlers.get("*")
        if handler is None:
            return
        if message is None and about is not None:
            # A registry change, as the Rust runtime's event: no sender, {"machine": id}.
            message = Message("", self.id, name, json.dumps({"machine": about}).encode(), 0)
        ev = Event(self, name, message)
        self._last_events = (self._last_events + [name[:40]])[-8:]
        try:
            handler(ev)
        except Exception as e:
            error = f"{type(e).__name__} in the handler of {name}: {e}"
            self._errors = (self._errors + [error])[-4:]
            self._status = "stopped"
            self._running = False
            self.client.report_state(self.id)
            self.client.stopped(self.id, error)
            raise
        self.client.report_state(self.id)

    def report(self) -> Dict[str, Any]:
        """The state report watchers get (the Rust nodes' fields)."""
        return {
            "machine": self.id,
            "status": self._status,
            "state": self.state,
            "accepts": sorted(k for k in self._handlers if not k.startswith("xstate.")),
            "last_events": list(self._last_events),
            "errors": list(self._errors),
            "at_ms": int(time.time() * 1000),
            "context": self.context,
        }
