"""What `Client.recv` hands the application: messages, registry changes, state reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from .wire import RegistryEntry

# A payload: bytes as they are, a str as UTF-8, anything else as its JSON text (the runtime's
# convention: the Rust facade and JSON charts read payloads as JSON).
Payload = Union[bytes, bytearray, str, Dict[str, Any], List[Any], int, float, bool, None]


def encode_payload(payload: Payload) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if payload is None:
        return b""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


@dataclass
class Message:
    """An event for one of this client's machine ids.

    `topic` is set for a publication (the event is then the published event's name);
    `request` is the request id when the sender asked for a reply (answer with
    `Client.reply`). `seq` is the sender's sequence number."""

    sender: str
    to: str
    event: str
    payload: bytes
    seq: int
    topic: Optional[str] = None
    request: Optional[int] = None
    # The sender's process id as the registry shows it (0 when unknown).
    sender_pid: int = 0

    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload as JSON (None for an empty payload)."""
        return json.loads(self.payload) if self.payload else None


@dataclass
class MachineUp:
    """A machine joined the bus (after `Client.follow_registry()`)."""

    entry: RegistryEntry

    @property
    def machine(self) -> str:
        return self.entry.machine


@dataclass
class MachineDown:
    """A machine left the bus (after `Client.follow_registry()`)."""

    machine: str


@dataclass
class StateReport:
    """A state report of a machine this client watches (`Client.watch_state`): the JSON
    object docs/wire.md describes under State (`status`, `state`, `accepts`, ...)."""

    machine: str
    report: Dict[str, Any]


Item = Union[Message, MachineUp, MachineDown, StateReport]
