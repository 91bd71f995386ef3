//! What actions and guards see: the orchestrated context.
//!
//! An action never performs I/O and never delivers an event itself. Everything it sends is
//! queued in the machine's bounded outbox (or its timer table, for delayed sends) and handed to
//! the host after the macrostep. That is what rules out the send-while-holding deadlocks of
//! synchronous in-action delivery.

use serde::{Deserialize, Serialize};

use crate::chart::{Chart, EventId};
use crate::error::Error;
use crate::time::{Duration, Instant};

/// An event: its name, its id if the chart knows the name, and its payload bytes.
///
/// Payloads are opaque bytes to the core; [`ActionContext::payload_as`] decodes postcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Event<'a> {
    pub(crate) id: Option<EventId>,
    pub(crate) name: &'a str,
    pub(crate) payload: &'a [u8],
}

impl<'a> Event<'a> {
    /// An event by name, with no payload. The machine looks the name up in its chart.
    pub const fn new(name: &'a str) -> Self {
        Event {
            id: None,
            name,
            payload: &[],
        }
    }
    /// An event by its interned id: no lookup by name when it is sent.
    pub fn from_id(chart: &Chart<'a>, id: EventId) -> Self {
        Event {
            id: Some(id),
            name: chart.event_name(id),
            payload: &[],
        }
    }
    /// The same event with a payload.
    pub const fn with_payload(self, payload: &'a [u8]) -> Self {
        Event { payload, ..self }
    }
    /// The event name.
    pub fn name(&self) -> &'a str {
        self.name
    }
    /// The id, if the event was created from one or resolved by a machine.
    pub fn id(&self) -> Option<EventId> {
        self.id
    }
    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// The id of a pending delayed send, for [`ActionContext::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SendId(pub u32);

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Target<'a> {
    /// This machine: delivered back to it as an external event after the macrostep.
    ThisMachine,
    /// A machine by id, in this process or another.
    Machine(&'a str),
    /// A publication to a topic: one message to every machine on the bus subscribed with a
    /// matching filter (see [`crate::topic`]).
    Topic(&'a str),
    /// Every machine on the bus but the sender (an emergency stop).
    Broadcast,
}

/// How a publication's target is kept in a machine's outbox and in a chart's strings: this
/// byte, then the topic (machine ids cannot contain control characters).
pub const PUBLISH_MARK: u8 = 0x01;
/// How a broadcast's target is kept: this byte alone.
pub const BROADCAST_MARK: u8 = 0x02;

impl<'a> Target<'a> {
    /// The target an outbox (or a chart) keeps as the string `s`.
    pub fn from_stored(s: &'a str) -> Target<'a> {
        match s.as_bytes().first() {
            Some(&PUBLISH_MARK) => Target::Topic(&s[1..]),
            Some(&BROADCAST_MARK) if s.len() == 1 => Target::Broadcast,
            _ => Target::Machine(s),
        }
    }
}

/// Which transport a process is reached over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportKind {
    /// Same process: delivered without encoding.
    InProcess,
    /// Unix domain socket.
    UnixSocket,
    /// Named pipes.
    Fifo,
    /// Shared memory rings.
    SharedMemory,
    /// A serial line.
    Serial,
}

/// What the host knows about the process hosting a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The machine id asked about.
    pub machine_id: heapless::String<64>,
    /// Process id.
    pub pid: u32,
    /// User id of the process.
    pub uid: u32,
    /// Executable name (truncated to 64 bytes).
    pub executable: heapless::String<64>,
    /// How that process is reached.
    pub transport: TransportKind,
    /// When the machine registered, on the host's clock.
    pub registered_at: Instant,
    /// Whether it is this process.
    pub local: bool,
}

/// The machine-side effects an action can request. Implemented by the machine's storage.
pub(crate) trait Effects {
    fn send(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        payload: &[u8],
        delay: Option<Duration>,
    ) -> Result<SendId, Error>;
    fn send_encoded(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        delay: Option<Duration>,
        encode: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<SendId, Error>;
    fn cancel(&mut self, id: SendId) -> bool;
}

/// The orchestrated context an action runs with.
///
/// It offers the machine id, the event being processed and its payload, and deferred sends:
/// to a machine in any process, to this machine, delayed. Sends return an error when the
/// machine's bounded storage is full; the error is also counted in the step's report, so it
/// cannot go unnoticed.
pub struct ActionContext<'a> {
    pub(crate) effects: &'a mut dyn Effects,
    pub(crate) machine_id: &'a str,
    pub(crate) event: Event<'a>,
    pub(crate) now: Instant,
    pub(crate) failures: &'a mut u32,
    /// The machine's context (its methods are in `machine/context_store.rs`).
    pub(crate) context: crate::machine::ContextRef<'a>,
}

impl<'a> ActionContext<'a> {
    /// The id of the machine running the action.
    pub fn machine_id(&self) -> &str {
        self.machine_id
    }
    /// The event being processed.
    pub fn event(&self) -> Event<'a> {
        self.event
    }
    /// The current event's payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.event.payload
    }
    /// Decodes the current event's payload as postcard.
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, postcard::Error> {
        postcard::from_bytes(self.event.payload)
    }
    /// The time the host passed in for this step.
    pub fn now(&self) -> Instant {
        self.now
    }
    fn count<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if r.is_err() {
            *self.failures += 1;
        }
        r
    }
    /// Sends `event` with `payload` to the machine `target`, after this step.
    pub fn send(&mut self, target: &str, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(self.now, Target::Machine(target), event, payload, None)
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` with a postcard-encoded `value` as payload.
    pub fn send_value<T: Serialize>(
        &mut self,
        target: &str,
        event: &str,
        value: &T,
    ) -> Result<(), Error> {
        let r = self
            .effects
            .send_encoded(self.now, Target::Machine(target), event, None, &mut |buf| {
                postcard::to_slice(value, buf).ok().map(|b| b.len())
            })
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` to this machine, as an external event after this macrostep.
    pub fn send_self(&mut self, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(self.now, Target::ThisMachine, event, payload, None)
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` to `target` (a machine id, or this machine) after `delay`. The send is
    /// scheduled in this machine's timer table; the returned id cancels it.
    pub fn send_after(
        &mut self,
        target: Target<'_>,
        event: &str,
        delay: Duration,
        payload: &[u8],
    ) -> Result<SendId, Error> {
        let r = self
            .effects
            .send(self.now, target, event, payload, Some(delay));
        self.count(r)
    }
    /// Publishes `event` with `payload` to `topic`, after this step: every machine on the bus
    /// subscribed with a matching filter receives it once, as if sent to it directly (a
    /// failure for a subscriber comes back as `xstate.error.delivery` naming it). Fails with
    /// [`Error::BadTopic`] for a topic with wildcards, empty or too long.
    pub fn publish(&mut self, topic: &str, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = crate::topic::check_topic(topic)
            .map_err(Error::BadTopic)
            .and_then(|()| {
                self.effects
                    .send(self.now, Target::Topic(topic), event, payload, None)
            })
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` with `payload` to every machine on the bus but this one, after this
    /// step (an emergency stop).
    pub fn broadcast(&mut self, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(self.now, Target::Broadcast, event, payload, None)
            .map(|_| ());
        self.count(r)
    }
    /// Cancels a pending delayed send. Returns whether it was still pending.
    pub fn cancel(&mut self, id: SendId) -> bool {
        self.effects.cancel(id)
    }
}

/// What a guard sees: the event, the machine id and the machine's context.
pub struct GuardContext<'a> {
    pub(crate) machine_id: &'a str,
    pub(crate) event: Event<'a>,
    /// The machine's context (its methods are in `machine/context_store.rs`).
    pub(crate) context: crate::machine::ContextView<'a>,
}

impl<'a> GuardContext<'a> {
    /// The id of the machine evaluating the guard.
    pub fn machine_id(&self) -> &str {
        self.machine_id
    }
    /// The event being processed.
    pub fn event(&self) -> Event<'a> {
        self.event
    }
    /// Decodes the current event's payload as postcard.
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, postcard::Error> {
        postcard::from_bytes(self.event.payload)
    }
}

/// The host's side of a machine: the user's actions, guards and named delays, bound by id.
///
/// The host-side facade binds names to closures and implements this trait; a device can
/// implement it directly with a `match` on the ids.
pub trait Behavior {
    /// Runs a user action.
    fn action(&mut self, action: crate::ActionId, cx: &mut ActionContext<'_>);
    /// Evaluates a named guard.
    fn guard(&mut self, guard: crate::GuardId, cx: &GuardContext<'_>) -> bool;
    /// The duration of a named delay; `None` makes the step fail with [`Error::UnboundDelay`].
    fn delay(&mut self, delay: crate::DelayId) -> Option<Duration> {
        let _ = delay;
        None
    }
    /// A `log` action's message.
    fn log(&mut self, machine_id: &str, message: &str) {
        let _ = (machine_id, message);
    }
}

/// A [`Behavior`] whose actions do nothing and whose guards are all false.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBehavior;

impl Behavior for NoBehavior {
    fn action(&mut self, _: crate::ActionId, _: &mut ActionContext<'_>) {}
    fn guard(&mut self, _: crate::GuardId, _: &GuardContext<'_>) -> bool {
        false
    }
}
