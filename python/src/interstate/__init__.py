"""interstate: the Python client of the interstate event bus.

A Python process joins a bus served by `interstate hub` (or by any interstate process),
registers machine ids, sends and receives events, makes and answers requests, publishes and
subscribes, follows the registry and watches machines' states, as a Rust node does, with the
same delivery rules (docs/guarantees.md). Standard library only; see docs/python.md.

    from interstate import Client

    with Client.connect(bus="default") as c:
        c.register("py-tool")
        c.send("py-tool", "worker", "DO_WORK", {"task": 1})
        msg = c.recv(timeout=5.0)          # a Message, or None
        reply = c.request("py-tool", "echo", "PING", {"n": 1}, timeout=5.0)
"""

from .busdir import bus_dir, default_bus, socket_path
from .client import Client
from .errors import (
    BadBusSetting, DeliveryError, HubGone, InterstateError, NoHub, ProtocolError,
    RegistrationRefused, Rejected, RequestFailed, TopicRefused,
)
from .items import Item, MachineDown, MachineUp, Message, Payload, StateReport
from .machine import Event, Machine
from .wire import RegistryEntry

__version__ = "0.1.0"

__all__ = [
    "BadBusSetting", "Client", "DeliveryError", "Event", "HubGone", "InterstateError", "Item",
    "Machine", "MachineDown", "MachineUp", "Message", "NoHub", "Payload", "ProtocolError",
    "RegistrationRefused", "RegistryEntry", "Rejected", "RequestFailed", "StateReport",
    "TopicRefused", "bus_dir", "default_bus", "socket_path",
]
