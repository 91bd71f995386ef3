//! Closing a port: a bridge takes a remote machine's id off the bus when the remote node
//! withdraws it (see `crate::mqtt`). Reading one port's messages with the acknowledgement
//! held back: a gateway acknowledges only once its own client confirms (see
//! `interstate-grpc`). What a relaying program (the MQTT bridge) needs beside: hearing
//! when its ports' messages were acknowledged, and refusing a message it had taken; sending
//! from a port without waiting for room.

use interstate_core::wire::{is_reserved_event, Deliver, DeliveryFailed, FailReason};
use interstate_core::Correlation;

use super::client_side::Sink;
use super::hosting::Routed;
use super::hub_side::HubIoImpl;
use super::local::{Deferred, Failure};
use super::PortMessage;
use super::{Node, Side};

/// Messages the program read with [`Node::recv_port_into`] and gave back: the next
/// messages for ports are built in their buffers (cleared and refilled) instead of in new
/// ones, so that a port's steady traffic allocates nothing on receipt and frees nothing
/// when read (four allocations and four frees a message otherwise, counted).
#[derive(Default)]
pub(super) struct PortSpares(Vec<PortMessage>);

impl PortSpares {
    /// Kept at most: a burst read back does not keep its buffers for ever.
    const KEEP: usize = 64;

    /// A message for `port`, in a spare's buffers when there is one. `event`: (topic,
    /// event name) as split from the wire's event field.
    pub(super) fn message(
        &mut self,
        port: &str,
        from: &str,
        event: (Option<&str>, &str),
        payload: &[u8],
        seq: u64,
        correlation: Correlation,
    ) -> PortMessage {
        let (topic, event) = event;
        let Some(mut m) = self.0.pop() else {
            return PortMessage {
                port: port.to_string(),
                from: from.to_string(),
                event: event.to_string(),
                topic: topic.map(str::to_string),
                payload: payload.to_vec(),
                seq,
                correlation,
            };
        };
        refill(&mut m.port, port);
        refill(&mut m.from, from);
        refill(&mut m.event, event);
        match (topic, &mut m.topic) {
            (Some(t), Some(kept)) => refill(kept, t),
            (t, kept) => *kept = t.map(str::to_string),
        }
        m.payload.clear();
        m.payload.extend_from_slice(payload);
        m.seq = seq;
        m.correlation = correlation;
        m
    }

    /// Keeps `m`'s buffers for a later message (up to [`Self::KEEP`] of them).
    pub(super) fn give_back(&mut self, m: PortMessage) {
        if self.0.len() < Self::KEEP {
            self.0.push(m);
        }
    }
}

/// `s` := `with`, in `s`'s buffer.
fn refill(s: &mut String, with: &str) {
    s.clear();
    s.push_str(with);
}

impl Node {
    /// [`Node::recv_port`] into `message`: the next message for any port replaces what
    /// `message` held, whose buffers the node keeps for a later message (so a program that
    /// reads its ports this way, with one `PortMessage` it keeps, allocates nothing per
    /// message: see `tests/port_no_alloc.rs`). `false`, and `message` untouched, when no
    /// message waits. Acknowledged as [`Node::recv_port`] acknowledges.
    pub fn recv_port_into(&mut self, message: &mut PortMessage) -> bool {
        let Some(m) = self.recv_port() else {
            return false;
        };
        let spent = std::mem::replace(message, m);
        self.local.port_spares.give_back(spent);
        true
    }

    /// [`Node::send_from_port`] without waiting: one attempt, `Ok(None)` when the bus is full
    /// (nothing was sent; try again once a loop turn has taken acknowledgements). For a
    /// caller inside a loop turn, or one that must not block.
    pub fn try_send_from_port(
        &mut self,
        port: &str,
        to: &str,
        event: &str,
        payload: &[u8],
    ) -> Result<Option<u64>, crate::PlatformError> {
        if is_reserved_event(event) {
            return Err(interstate_core::Error::ReservedEvent.into());
        }
        let seq = self.next_port_seq(port)?;
        let mut deferred = Deferred::default();
        let d = Deliver {
            from: port,
            to,
            event,
            payload,
            seq,
            correlation: Correlation::None,
        };
        let routed = self.route(None, d, &mut deferred);
        self.settle(deferred);
        if routed == Routed::Sent {
            return Ok(Some(seq));
        }
        // Not sent: the number is the next send's.
        if let Some(s) = self.local.port_seq.get_mut(port) {
            *s -= 1;
        }
        Ok(None)
    }

    /// The next message for the port `port`, not acknowledged to its sender: the caller
    /// acknowledges it with [`Node::acknowledge_port`] once whoever it relays the message to
    /// has it. One never acknowledged is reported to its sender as not delivered once the
    /// port closes or the process ends, as one left unread is.
    ///
    /// Acknowledgements are cumulative per sender: acknowledging a message acknowledges every
    /// earlier one from the same sender to the same port, so acknowledge in the order read.
    pub fn recv_port_unacknowledged(&mut self, port: &str) -> Option<PortMessage> {
        let m = self.local.ports.get_mut(port)?.pop_front()?;
        self.local.taken();
        Some(m)
    }

    /// How many messages wait unread in port `port` (0 for no such port). Those from
    /// machines and ports of this process are at most `NodeConfig::port_queue`.
    pub fn port_pending(&self, port: &str) -> usize {
        self.local.ports.get(port).map_or(0, |q| q.len())
    }

    /// Acknowledges a message [`Node::recv_port_unacknowledged`] returned (and, cumulatively,
    /// the earlier ones from its sender to its port). Messages from this process (sequence
    /// number 0) need none.
    pub fn acknowledge_port(&mut self, message: &PortMessage) {
        if message.seq != 0 {
            self.side
                .received_mut()
                .handed(&message.port, &message.from, message.seq);
        }
    }

    /// Keeps (`on`) the acknowledgements of the ports' messages for
    /// [`Node::next_port_ack`]: a relay learns that way that its receiver took what it
    /// passed on. Off by default (nothing is kept).
    pub fn watch_port_acks(&mut self, on: bool) {
        self.local.port_acks = on.then(Default::default);
    }

    /// The next acknowledgement of a port's messages, as (port, receiver, seq): `receiver`
    /// took every message the port sent it up to `seq` (cumulative). Only while
    /// [`Node::watch_port_acks`] is on; messages to machines of this process are not
    /// acknowledged (nor reported here).
    pub fn next_port_ack(&mut self) -> Option<(String, String, u64)> {
        self.local.port_acks.as_mut()?.pop_front()
    }

    /// Keeps (`on`) the messages queued unread in ports unacknowledged while
    /// [`Node::send_from_port`] waits for room. A relay that acknowledges only once the far
    /// side confirmed sets it; a program that may block sending to a peer that blocks
    /// sending back must not (their acknowledgements would wait on each other).
    pub fn hold_port_acks(&mut self, on: bool) {
        self.local.hold_port_acks = on;
    }

    /// Refuses `message` (read from one of this node's ports with
    /// [`Node::recv_port_unacknowledged`]): its sender is told it failed, with `reason` and
    /// `detail` (cut to the bus's bound), as the hub tells of a message it could not
    /// deliver (`xstate.error.delivery`), once. Acknowledge it afterwards (the report goes
    /// first on the link), so that its slot in the sender's buffer frees. A message from
    /// this process (sequence number 0) has no one to tell.
    pub fn refuse_port_message(
        &mut self,
        message: &PortMessage,
        reason: FailReason,
        detail: &str,
    ) -> Result<(), crate::PlatformError> {
        if message.seq == 0 {
            return Ok(());
        }
        if !self.local.ports.contains_key(&message.port) {
            return Err(crate::PlatformError::BadMachineId {
                id: message.port.clone(),
            });
        }
        let detail =
            interstate_core::wire::cut_at_char(detail, interstate_core::wire::MAX_STOP_ERROR);
        let f = DeliveryFailed {
            from: &message.from,
            to: &message.port,
            event: &message.event,
            seq: message.seq,
            reason,
            detail,
        };
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
                h.hub.refused_by_local(&f, &mut io);
                self.settle(deferred);
                Ok(())
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                if c.client.report_found_failure(&f, &mut sink) {
                    Ok(())
                } else {
                    Err(crate::PlatformError::io(
                        "refusing a message",
                        None,
                        std::io::Error::new(
                            std::io::ErrorKind::NotConnected,
                            "not connected to the hub, or its link is full; the message stays unacknowledged",
                        ),
                    ))
                }
            }
        }
    }

    /// [`Node::acknowledge_port`] by the message's port, sender and sequence number.
    pub fn acknowledge_port_seq(&mut self, port: &str, from: &str, seq: u64) {
        if seq != 0 {
            self.side.received_mut().handed(port, from, seq);
        }
    }

    /// Closes a port opened with [`Node::open_port`]: its id leaves the bus (the hub answers
    /// later messages to it with `unknown-target`), what it had received unread is discarded
    /// unacknowledged (its senders hear of it as from any machine that leaves the bus), and
    /// its subscriptions end.
    /// Returns whether `id` was a port of this node.
    pub fn close_port(&mut self, id: &str) -> bool {
        if !self.local.ports.contains_key(id) {
            return false;
        }
        // What the port sent goes to the hub before its Unregister: the hub refuses a
        // message from an id that is no longer registered (`not-owner`). And what it was
        // handed is acknowledged now, whatever the policy: else the hub reports those
        // messages to their senders as lost with the port.
        self.turn_now = self.now();
        self.transmit();
        self.emit_acks_when(true);
        self.flush_all();
        self.local.ports.remove(id);
        self.local.registry.remove(id);
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
                h.hub.unregister_local(id, &mut io);
                self.settle(deferred);
            }
            Side::Client(c) => {
                let mut sink = Sink::new(c.conn.as_mut(), &mut self.local.stats.payload_copies);
                c.client.unregister(id, &mut sink);
                c.topics.forget(id);
            }
        }
        true
    }

    /// Whether `id` is a machine, port or invoked service of this node: a message to it
    /// is delivered in this process, at once, without crossing the hub (and is not
    /// acknowledged: [`Node::next_port_ack`] never reports it).
    pub fn hosts_here(&self, id: &str) -> bool {
        self.local.hosts(id)
    }

    /// Whether `id` is a machine of this node that stopped on an error (it takes no more
    /// messages), and the error its senders are told.
    pub fn stopped_here(&self, id: &str) -> Option<String> {
        let &i = self.local.by_id.get(id)?;
        self.local.machines[i]
            .stopped
            .then(|| self.local.stop_error(id))
    }

    /// Routes what this node's machines sent now instead of at the end of the loop turn: a
    /// relay that passed a message to a machine of its own node ([`Node::hosts_here`]) has
    /// the machine's answer in its outbox, and the relay reads its ports right after.
    pub fn route_outboxes(&mut self) -> Result<(), crate::PlatformError> {
        self.turn_now = self.now();
        self.pump()
    }

    /// Tells the machine or port `from` of this node that its message `event` to `to` failed
    /// (`xstate.error.delivery` with `reason`, `detail` and `seq`, or the request's error for
    /// a request), as the node tells of a failure it found itself. A relay uses it for
    /// messages it took from a port of its own node ([`Node::hosts_here`]: sequence number
    /// 0, never acknowledged through the hub) and then could not deliver: the MQTT bridge
    /// for a machine hosted beside it whose message another node refused. Returns whether
    /// `from` is here.
    pub fn fail_local_send(
        &mut self,
        from: &str,
        to: &str,
        event: &str,
        seq: u64,
        reason: FailReason,
        detail: &str,
    ) -> bool {
        if !self.local.by_id.contains_key(from) && !self.local.ports.contains_key(from) {
            return false;
        }
        let mut f = Failure::found(from, to, event, seq, reason);
        f.detail =
            interstate_core::wire::cut_at_char(detail, interstate_core::wire::MAX_STOP_ERROR)
                .to_string();
        let mut deferred = Deferred::default();
        deferred.direct.push(f);
        self.settle(deferred);
        true
    }
}
