//! Publish/subscribe in a node: subscriptions of its machines and ports (held by the hub,
//! asked for again with each registration), and the fan-out of a publication or a broadcast
//! into one ordinary message per receiver.
//!
//! A publication from a machine (or port) of this node goes to every machine the node's copy
//! of the bus's subscriptions names for its topic, in the copy's slot order, as a message
//! with the publisher's next sequence number whose event field is `TOPIC \0 EVENT`
//! (`interstate_core::topic`): each is kept in the outstanding buffer until its subscriber
//! acknowledges it, sent again after a reconnect, dropped as a duplicate if it arrives
//! twice, and reported to the publisher as `xstate.error.delivery` naming the subscriber if
//! it fails, exactly like a direct message. A fan-out stopped by backpressure resumes at the
//! next subscriber (its position is kept with the publishing machine). A broadcast goes the
//! same way to every machine in the node's registry copy but the sender.

use interstate_core::bus::policy::Registration;
use interstate_core::bus::{SubscribeError, TopicMirror, TopicNews};
use interstate_core::topic::{
    check_filter, check_topic, publication_event, Subscription, TopicStatus,
};
use interstate_core::wire::{is_reserved_event, Deliver, FailReason};
use interstate_core::{Correlation, Instant, Target};
use std::time::Duration as StdDuration;

use crate::error::PlatformError;

use super::client_side::Sink;
use super::hosting::Routed;
use super::hub_side::HubIoImpl;
use super::local::{Deferred, Failure};
use super::{Node, Side};

/// How many subscriptions on the bus a node's copy holds (the hub's table holds as many).
pub const NODE_TOPIC_COPY: usize = 1024;
/// How many subscriptions a node's own machines and ports may hold (the hub allows one link
/// as many: `interstate_core::hub::SUBSCRIPTIONS_PER_LINK`).
pub const NODE_SUBSCRIPTIONS: usize = 256;

/// The hub's subscription table, on the heap: [`NODE_TOPIC_COPY`] slots.
pub(super) struct HubSlots(Box<[Subscription]>);

impl AsRef<[Subscription]> for HubSlots {
    fn as_ref(&self) -> &[Subscription] {
        &self.0
    }
}

impl AsMut<[Subscription]> for HubSlots {
    fn as_mut(&mut self) -> &mut [Subscription] {
        &mut self.0
    }
}

impl interstate_core::topic::SubscriptionSlots for HubSlots {
    fn empty() -> Self {
        HubSlots(vec![Subscription::EMPTY; NODE_TOPIC_COPY].into_boxed_slice())
    }
}

/// A client node's copy of the bus's subscriptions and its own, over boxed slots.
pub(super) type Mirror = TopicMirror<Box<[Subscription]>, Box<[Subscription]>>;

/// An empty copy, allocated once.
pub(super) fn mirror() -> Box<Mirror> {
    Box::new(TopicMirror::new(
        vec![Subscription::EMPTY; NODE_TOPIC_COPY].into_boxed_slice(),
        vec![Subscription::EMPTY; NODE_SUBSCRIPTIONS].into_boxed_slice(),
    ))
}

/// What a topic frame from the hub means for the log.
pub(super) fn news(n: TopicNews<'_>, deferred: &mut Deferred) {
    match n {
        TopicNews::Nothing => {}
        TopicNews::Refused {
            machine,
            filter,
            status,
        } => deferred.logs.push(format!(
            "the hub refused the subscription of '{machine}' to '{filter}': {}",
            status.as_str()
        )),
        TopicNews::CopyFull { machine, filter } => deferred.logs.push(format!(
            "this process's copy of the bus's subscriptions is full ({NODE_TOPIC_COPY}): its \
             publications will miss '{machine}' subscribed to '{filter}'"
        )),
    }
}

/// Where a publishing machine's fan-out stands (kept while backpressure stops it).
#[derive(Default)]
pub(super) struct FanOut {
    /// The next slot of the subscription table (or index of `targets`) to send to.
    next: usize,
    /// A broadcast's receivers, fixed when it starts.
    targets: Option<Vec<String>>,
}

fn subscription_error(machine: &str, filter: &str, problem: impl Into<String>) -> PlatformError {
    PlatformError::Subscription {
        machine: machine.into(),
        filter: filter.into(),
        problem: problem.into(),
    }
}

impl Node {
    fn hosts(&self, id: &str) -> bool {
        self.local.by_id.contains_key(id) || self.local.ports.contains_key(id)
    }

    /// Subscribes the hosted machine or port `machine` to the topic filter `filter` (MQTT's
    /// rules: `+` one level, `#` the rest; see `docs/json-format.md`). Publications to a
    /// matching topic reach it from any process, once each. The hub holds the subscription
    /// while the machine is registered (this node asks for it again after a reconnect); a
    /// client node's subscription refused by the hub (its table full: 1024 on the bus, 256
    /// per process) is logged and dropped.
    pub fn subscribe(&mut self, machine: &str, filter: &str) -> Result<(), PlatformError> {
        if !self.hosts(machine) {
            return Err(PlatformError::BadMachineId { id: machine.into() });
        }
        check_filter(filter).map_err(|e| subscription_error(machine, filter, e.as_str()))?;
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                let status = h.hub.subscribe_local(machine, filter, &mut io);
                self.settle(deferred);
                if status != TopicStatus::Ok {
                    return Err(subscription_error(machine, filter, status.as_str()));
                }
            }
            Side::Client(c) => {
                let registered = c.client.registration(machine) == Some(Registration::Registered);
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.topics
                    .subscribe(machine, filter, registered, &mut sink)
                    .map_err(|e| match e {
                        SubscribeError::Filter(e) => subscription_error(machine, filter, e.as_str()),
                        SubscribeError::Full => subscription_error(
                            machine,
                            filter,
                            format!("this process holds {NODE_SUBSCRIPTIONS} subscriptions, the most it may"),
                        ),
                    })?;
                self.flush();
            }
        }
        Ok(())
    }

    /// Ends a subscription made with [`Node::subscribe`].
    pub fn unsubscribe(&mut self, machine: &str, filter: &str) {
        let now = self.now();
        match &mut self.side {
            Side::Hub(h) => {
                let mut deferred = Deferred::default();
                let mut io = HubIoImpl::new(
                    &mut h.links,
                    &mut self.local,
                    Some(&mut h.delivery),
                    now,
                    &mut deferred,
                );
                h.hub.unsubscribe_local(machine, filter, &mut io);
                self.settle(deferred);
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.topics.unsubscribe(machine, filter, &mut sink);
            }
        }
    }

    /// The machines a publication to `topic` from this node reaches now, as far as this node
    /// knows.
    pub fn subscribers(&self, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((slot, m)) = self.next_subscriber(topic, at) {
            out.push(m.to_string());
            at = slot + 1;
        }
        out
    }

    /// Whether the hub has confirmed holding `machine`'s subscription to `filter`: a
    /// publication from any process made from now on reaches it. (Always, in the hub's own
    /// process, once [`Node::subscribe`] returned.)
    pub fn subscription_held(&self, machine: &str, filter: &str) -> bool {
        match &self.side {
            Side::Hub(h) => h
                .hub
                .subscriptions()
                .iter()
                .any(|s| s.1 == machine && s.2 == filter),
            Side::Client(c) => c.topics.is_held(machine, filter),
        }
    }

    /// Whether this node's copy of the bus's subscriptions is current (always, for the hub).
    pub fn subscriptions_synced(&self) -> bool {
        match &self.side {
            Side::Hub(_) => true,
            Side::Client(c) => c.topics.is_synced(),
        }
    }

    /// The first subscriber of `topic` at slot `from` or later (no allocation).
    fn next_subscriber(&self, topic: &str, from: usize) -> Option<(usize, heapless::String<64>)> {
        let found = match &self.side {
            Side::Hub(h) => h.hub.subscriptions().next_subscriber(topic, from),
            Side::Client(c) => c.topics.table().next_subscriber(topic, from),
        };
        found.map(|(slot, m)| (slot, heapless::String::try_from(m).unwrap_or_default()))
    }

    /// Every machine on the bus this node knows of but `except`, sorted.
    fn broadcast_targets(&self, except: &str) -> Vec<String> {
        let mut all: Vec<String> = self
            .local
            .registry
            .entries()
            .into_iter()
            .map(|e| e.machine)
            .chain(self.local.by_id.keys().cloned())
            .chain(self.local.ports.keys().cloned())
            .filter(|m| m != except)
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Publishes from a port (see [`Node::open_port`]): one message to each subscriber of
    /// `topic`, with one sequence number. Returns how many subscribers it went to; failures
    /// come back to the port as `xstate.error.delivery` messages naming the subscriber.
    /// Waits for room like [`Node::send_from_port`] (up to 5 s per subscriber). Allocates
    /// nothing for topics and event names of up to 256 bytes together.
    pub fn publish_from_port(
        &mut self,
        port: &str,
        topic: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<usize, PlatformError> {
        check_topic(topic).map_err(interstate_core::Error::BadTopic)?;
        let mut small = [0u8; 256];
        let mut large = Vec::new();
        let n = topic.len() + 1 + event.len();
        let buf: &mut [u8] = if n <= small.len() {
            &mut small
        } else {
            large.resize(n, 0);
            &mut large
        };
        let field = publication_event(topic, event, buf).unwrap_or_default();
        self.fan_out_from_port(port, Some(topic), field, event, payload)
    }

    /// Sends `event` from a port to every machine on the bus this node knows of but the port.
    /// Returns how many it went to.
    pub fn broadcast_from_port(
        &mut self,
        port: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<usize, PlatformError> {
        self.fan_out_from_port(port, None, event, event, payload)
    }

    /// One message from `port` to each subscriber of `topic` (in slot order), or to every
    /// machine but the port for a broadcast, all with one sequence number.
    fn fan_out_from_port(
        &mut self,
        port: &str,
        topic: Option<&str>,
        field: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<usize, PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        let seq = self.next_port_seq(port)?;
        let targets = match topic {
            Some(_) => Vec::new(),
            None => self.broadcast_targets(port),
        };
        let (mut at, mut sent) = (0, 0);
        loop {
            let next = match topic {
                Some(t) => self.next_subscriber(t, at),
                None => targets.get(at).map(|m| {
                    (
                        at,
                        heapless::String::try_from(m.as_str()).unwrap_or_default(),
                    )
                }),
            };
            let Some((slot, to)) = next else {
                return Ok(sent);
            };
            let mut deadline = None;
            loop {
                let mut deferred = Deferred::default();
                let d = Deliver {
                    from: port,
                    to: &to,
                    event: field,
                    payload,
                    seq,
                    correlation: Correlation::None,
                };
                let routed = self.route(None, d, &mut deferred);
                self.settle(deferred);
                if routed == Routed::Sent {
                    break;
                }
                if self.local.port_full(&to) {
                    // A port of this process: only its reader makes room (see
                    // `send_from_port`). The subscribers before it have the message.
                    return Err(PlatformError::PortQueueFull {
                        port: to.to_string(),
                        capacity: self.local.port_queue,
                    });
                }
                let deadline = *deadline
                    .get_or_insert_with(|| std::time::Instant::now() + StdDuration::from_secs(5));
                if std::time::Instant::now() > deadline {
                    return Err(PlatformError::io(
                        "publishing",
                        None,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the bus stayed full for 5 s",
                        ),
                    ));
                }
                // The table keeps its slots meanwhile: the fan-out resumes at the next one.
                self.acknowledge_queued();
                self.run_once(Some(StdDuration::from_millis(5)))?;
            }
            sent += 1;
            at = slot + 1;
        }
    }

    /// Fans out the publication or broadcast at `nth` in machine `i`'s outbox, from where
    /// backpressure last stopped it. `Full`: stopped again (call again later).
    pub(super) fn fan_out(
        &mut self,
        i: usize,
        nth: usize,
        now: Instant,
        buf: &mut Vec<u8>,
        deferred: &mut Deferred,
    ) -> Routed {
        let h = &self.local.machines[i];
        let Some(m) = h.machine.outbox_nth(nth) else {
            return Routed::Sent;
        };
        let published = match m.target {
            Target::Topic(t) => Some(t),
            Target::Broadcast => None,
            _ => return Routed::Sent,
        };
        let seq = h.seq;
        // One copy of the message, since the receivers' steps need the node.
        buf.clear();
        buf.extend_from_slice(h.id.as_bytes());
        let from_end = buf.len();
        if let Some(t) = published {
            buf.extend_from_slice(t.as_bytes());
            buf.push(0);
        }
        let name_at = buf.len();
        buf.extend_from_slice(m.event.as_bytes());
        let event_end = buf.len();
        buf.extend_from_slice(m.payload);
        let text = |r: std::ops::Range<usize>| std::str::from_utf8(&buf[r]).unwrap_or("");
        let (from, field, name) = (
            text(0..from_end),
            text(from_end..event_end),
            text(name_at..event_end),
        );
        let payload = &buf[event_end..];
        let topic = published.is_some().then(|| text(from_end..name_at - 1));
        let bad = if is_reserved_event(name) {
            Some(FailReason::Reserved)
        } else {
            None
        };
        if let Some(reason) = bad.or_else(|| {
            topic
                .is_some_and(|t| check_topic(t).is_err())
                .then_some(FailReason::UnknownTarget)
        }) {
            deferred
                .direct
                .push(Failure::found(from, topic.unwrap_or(""), name, seq, reason));
            return Routed::Sent;
        }
        if topic.is_none() && self.local.machines[i].fanout.targets.is_none() {
            let targets = self.broadcast_targets(from);
            self.local.machines[i].fanout.targets = Some(targets);
        }
        let mut at = self.local.machines[i].fanout.next;
        loop {
            let next = match topic {
                Some(t) => self.next_subscriber(t, at),
                None => self.local.machines[i]
                    .fanout
                    .targets
                    .as_ref()
                    .and_then(|ts| ts.get(at))
                    .map(|m| {
                        (
                            at,
                            heapless::String::try_from(m.as_str()).unwrap_or_default(),
                        )
                    }),
            };
            let Some((slot, to)) = next else {
                break;
            };
            let d = Deliver {
                from,
                to: &to,
                event: field,
                payload,
                seq,
                correlation: Correlation::None,
            };
            if self.route(Some(now), d, deferred) == Routed::Full {
                self.local.machines[i].fanout.next = slot;
                return Routed::Full;
            }
            at = slot + 1;
        }
        self.local.machines[i].fanout = FanOut::default();
        Routed::Sent
    }
}
