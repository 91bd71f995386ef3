//! What actions and guards see: the orchestrated context.
//!
//! An action never performs I/O and never delivers an event itself. Everything it sends is
//! queued in the machine's bounded outbox (or its timer table, for delayed sends) and handed to
//! the host after the macrostep. That is what rules out the send-while-holding deadlocks of
//! synchronous in-action delivery.

use serde::{Deserialize, Serialize};

use crate::chart::{Chart, EventId};
use crate::error::Error;
use crate::request::RequestId;
use crate::time::{Duration, Instant};
use crate::wire::Correlation;

/// An event: its name, its id if the chart knows the name, its payload bytes, and, for an
/// event from another machine, who sent it and the request it opens or answers.
///
/// Payloads are opaque bytes to the core; [`ActionContext::payload_as`] decodes postcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Event<'a> {
    pub(crate) id: Option<EventId>,
    pub(crate) name: &'a str,
    pub(crate) payload: &'a [u8],
    pub(crate) sender: Option<&'a str>,
    pub(crate) correlation: Correlation,
}

impl<'a> Event<'a> {
    /// An event by name, with no payload. The machine looks the name up in its chart.
    pub const fn new(name: &'a str) -> Self {
        Event {
            id: None,
            name,
            payload: &[],
            sender: None,
            correlation: Correlation::None,
        }
    }
    /// An event by its interned id: no lookup by name when it is sent.
    pub fn from_id(chart: &Chart<'a>, id: EventId) -> Self {
        Event {
            id: Some(id),
            name: chart.event_name(id),
            payload: &[],
            sender: None,
            correlation: Correlation::None,
        }
    }
    /// The same event with a payload.
    pub const fn with_payload(self, payload: &'a [u8]) -> Self {
        Event { payload, ..self }
    }
    /// The same event, sent by the machine `sender` (the host passes the sender of every
    /// message it delivers: actions reply to it with [`ActionContext::reply`]).
    pub const fn with_sender(self, sender: &'a str) -> Self {
        Event {
            sender: Some(sender),
            ..self
        }
    }
    /// The same event as a request or a reply (the correlation its message carried).
    pub const fn with_correlation(self, correlation: Correlation) -> Self {
        Event {
            correlation,
            ..self
        }
    }
    /// The machine that sent it, if it came from one.
    pub fn sender(&self) -> Option<&'a str> {
        self.sender
    }
    /// The request it opens or answers, if any.
    pub fn correlation(&self) -> Correlation {
        self.correlation
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
        correlation: Correlation,
    ) -> Result<SendId, Error>;
    fn send_encoded(
        &mut self,
        now: Instant,
        target: Target<'_>,
        event: &str,
        delay: Option<Duration>,
        correlation: Correlation,
        encode: &mut dyn FnMut(&mut [u8]) -> Option<usize>,
    ) -> Result<SendId, Error>;
    fn cancel(&mut self, id: SendId) -> bool;
    /// Opens a request (an entry in the pending table) and queues its message; both or
    /// neither.
    fn request(
        &mut self,
        now: Instant,
        target: &str,
        event: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<RequestId, Error>;
}

/// The orchestrated context an action runs with.
///
/// It offers the machine id, the event being processed, its payload and its sender, and
/// deferred sends: to a machine in any process, to this machine, delayed, a reply to the
/// sender, a request with a timeout. Sends return an error when the
/// machine's bounded storage is full; the error is also counted in the step's report, so it
/// cannot go unnoticed.
pub struct ActionContext<'a> {
    pub(crate) effects: &'a mut dyn Effects,
    pub(crate) machine_id: &'a str,
    /// The event where the step holds it: an action call copies nothing of it.
    pub(crate) event: &'a Event<'a>,
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
        *self.event
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
            .send(
                self.now,
                Target::Machine(target),
                event,
                payload,
                None,
                Correlation::None,
            )
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
            .send_encoded(
                self.now,
                Target::Machine(target),
                event,
                None,
                Correlation::None,
                &mut |buf| postcard::to_slice(value, buf).ok().map(|b| b.len()),
            )
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` to this machine, as an external event after this macrostep.
    pub fn send_self(&mut self, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(
                self.now,
                Target::ThisMachine,
                event,
                payload,
                None,
                Correlation::None,
            )
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
        let r = self.effects.send(
            self.now,
            target,
            event,
            payload,
            Some(delay),
            Correlation::None,
        );
        self.count(r)
    }
    /// The machine that sent the current event, if it came from one (not from the host, a
    /// timer or this machine's own `raise`).
    pub fn sender(&self) -> Option<&'a str> {
        self.event.sender
    }
    /// Sends `event` with `payload` back to the current event's sender, after this step.
    /// When the current event is a request ([`Correlation::Request`]), this is its reply: it
    /// carries the request's id, and the requester receives it as the answer to that
    /// request. [`Error::NoSender`] when the event has no sender.
    ///
    /// The sender's id is copied into the outbox's byte space with the message: it survives
    /// the step without allocating.
    pub fn reply(&mut self, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = match self.event.sender {
            None => Err(Error::NoSender),
            Some(to) => self
                .effects
                .send(
                    self.now,
                    Target::Machine(to),
                    event,
                    payload,
                    None,
                    reply_to(self.event.correlation),
                )
                .map(|_| ()),
        };
        self.count(r)
    }
    /// Whom to answer for the current event, to reply from a later step with
    /// [`send_reply`](Self::send_reply); `None` when the event has no sender.
    pub fn reply_to(&self) -> Option<ReplyTo> {
        let mut sender = heapless::String::new();
        sender.push_str(self.event.sender?).ok()?;
        Some(ReplyTo {
            sender,
            correlation: reply_to(self.event.correlation),
        })
    }
    /// Sends `event` with `payload` as the reply kept in `to` (see
    /// [`reply_to`](Self::reply_to)): the answer to its request, when it was one.
    pub fn send_reply(&mut self, to: &ReplyTo, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(
                self.now,
                Target::Machine(&to.sender),
                event,
                payload,
                None,
                to.correlation,
            )
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` with `payload` to `target` as a request, and waits `timeout` for its
    /// reply. The reply arrives as an ordinary event whose [`Event::correlation`] is
    /// [`Correlation::Reply`] with the returned id; if none comes in time, or the target
    /// leaves the bus or never receives the request, this machine gets
    /// [`crate::request::REQUEST_ERROR_EVENT`] instead, exactly once. A reply after that is
    /// dropped. [`Error::RequestsFull`] when as many requests wait as the machine's table
    /// holds.
    pub fn request(
        &mut self,
        target: &str,
        event: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<RequestId, Error> {
        let r = self
            .effects
            .request(self.now, target, event, payload, timeout);
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
                self.effects.send(
                    self.now,
                    Target::Topic(topic),
                    event,
                    payload,
                    None,
                    Correlation::None,
                )
            })
            .map(|_| ());
        self.count(r)
    }
    /// Sends `event` with `payload` to every machine on the bus but this one, after this
    /// step (an emergency stop).
    pub fn broadcast(&mut self, event: &str, payload: &[u8]) -> Result<(), Error> {
        let r = self
            .effects
            .send(
                self.now,
                Target::Broadcast,
                event,
                payload,
                None,
                Correlation::None,
            )
            .map(|_| ());
        self.count(r)
    }
    /// Cancels a pending delayed send. Returns whether it was still pending.
    pub fn cancel(&mut self, id: SendId) -> bool {
        self.effects.cancel(id)
    }
}

/// Whom to answer, kept for a reply sent from a later step (after a timer, once work is
/// done): the sender of an event and the correlation its reply carries. Fixed-size: an
/// action's code can keep it without allocating. See [`ActionContext::reply_to`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    /// The machine to answer.
    pub sender: heapless::String<{ crate::machine::MAX_MACHINE_ID }>,
    /// What the reply carries: [`Correlation::Reply`] when the event was a request.
    pub correlation: Correlation,
}

/// The correlation of a reply to an event with correlation `c`: the request's id when the
/// event was a request, none otherwise.
pub(crate) fn reply_to(c: Correlation) -> Correlation {
    match c {
        Correlation::Request(id) => Correlation::Reply(id),
        _ => Correlation::None,
    }
}

/// What a guard sees: the event, the machine id and the machine's context.
pub struct GuardContext<'a> {
    pub(crate) machine_id: &'a str,
    /// The event where the step holds it: a guard call copies nothing of it.
    pub(crate) event: &'a Event<'a>,
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
        *self.event
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
