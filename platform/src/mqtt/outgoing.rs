//! Each destination node's inbox publish, gathered in a loop turn (the rule is the core's
//! [`interstate_core::mqtt::inbox`]): the messages for the node's machines and the answers
//! (acknowledgements, failures) for its senders travel in one MQTT publish, so that a reply
//! carries the acknowledgement of the request it answers. A publish holding a message
//! leaves at the end of the loop turn (`pump`); one holding only answers waits up to
//! [`inbox::ANSWER_DELAY`] for a message to ride on.
//!
//! Nothing here allocates per message in steady state: each node's payload buffer and inbox
//! topic are made once and reused; a payload is copied out only when the session's store
//! has no room for it yet (`unsent`).

use std::collections::VecDeque;

use interstate_core::mqtt::bridge::{BridgeTopic, Envelope};
use interstate_core::mqtt::delivery::InboxMessage;
use interstate_core::mqtt::{inbox, MqttError, Session};
use interstate_core::wire::FailReason;
use interstate_core::Instant;

use super::delivery::{NodeId, PairId};
use super::{MqttBridge, Tx};
use crate::node::PortMessage;

/// Pairs with an acknowledgement owed to one node at once (more: the owed ones are written).
const OWED: usize = 32;

/// What a QoS 1 PUBLISH packet takes in the session's store beyond its topic and payload,
/// at most: the fixed header (1 + up to 4 bytes of length), the topic's length, the packet id.
const PACKET_OVERHEAD: usize = 1 + 4 + 2 + 2;

/// Bytes kept free in the store: the session encodes its short packets (PUBACK, PINGREQ)
/// at the store's tail.
const STORE_MARGIN: usize = 64;

/// One destination node's publish being gathered.
pub(super) struct NodeOut {
    pub(super) rule: inbox::Outgoing<PairId, OWED>,
    /// The payload: [`inbox::RECORDS_TAG`] and the records, once something is written.
    buf: Vec<u8>,
    /// `P/NODE/in`.
    topic: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Answer,
}

enum Written {
    Yes,
    /// It does not go into this publish: publish what was gathered first.
    PublishFirst,
}

impl NodeOut {
    pub(super) fn new(prefix: &str, node: &str) -> Self {
        let mut topic = String::new();
        // Writing to a String cannot fail.
        let _ = BridgeTopic::Inbox { node }.write(prefix, &mut topic);
        NodeOut {
            rule: inbox::Outgoing::new(),
            buf: Vec::new(),
            topic,
        }
    }

    /// Store bytes the gathered publish will take.
    fn reserved(&self) -> usize {
        if self.buf.is_empty() {
            0
        } else {
            self.buf.len() + self.topic.len() + PACKET_OVERHEAD
        }
    }

    fn write(&mut self, msg: &InboxMessage<'_>, now: Instant, kind: Kind, max: usize) -> Written {
        let tag = usize::from(self.buf.is_empty());
        let bound = inbox::record_bound(msg) + tag;
        if !self.rule.fits(bound, max) {
            return Written::PublishFirst;
        }
        if tag == 1 {
            self.buf.push(inbox::RECORDS_TAG);
        }
        let at = self.buf.len();
        self.buf.resize(at + bound, 0);
        // The bound holds every record: the write cannot fail.
        let n = inbox::write_record(msg, &mut self.buf[at..]).unwrap_or(0);
        self.buf.truncate(at + n);
        if n == 0 {
            self.buf.truncate(at - tag);
            return Written::Yes;
        }
        match kind {
            Kind::Message => self.rule.wrote_message(n + tag),
            Kind::Answer => self.rule.wrote_answer(now, n + tag),
        }
        Written::Yes
    }
}

/// The session side of publishing, borrowed apart from the tables (whose strings the
/// records borrow).
struct Publisher<'a> {
    session: &'a mut Session<Box<[u8]>>,
    tx: &'a mut Vec<u8>,
    unsent: &'a mut VecDeque<(NodeId, Vec<u8>)>,
    now: Instant,
    max: usize,
}

impl Publisher<'_> {
    /// Writes `msg` into `out`, publishing what was gathered first when it does not fit.
    fn write(
        &mut self,
        node: NodeId,
        out: &mut NodeOut,
        msg: &InboxMessage<'_>,
        kind: Kind,
    ) -> Result<(), String> {
        if let Written::PublishFirst = out.write(msg, self.now, kind, self.max) {
            self.publish(node, out)?;
            out.write(msg, self.now, kind, self.max);
        }
        Ok(())
    }

    /// Publishes what `out` gathered (owed acknowledgements stay owed: write them first).
    /// Without room in the session's store it waits in `unsent`, in order.
    fn publish(&mut self, node: NodeId, out: &mut NodeOut) -> Result<(), String> {
        let mut result = Ok(());
        if !out.buf.is_empty() {
            if self.unsent.is_empty() {
                match self.session.publish(
                    self.now,
                    &out.topic,
                    &out.buf,
                    true,
                    false,
                    &mut Tx(self.tx),
                ) {
                    Ok(_) => {}
                    Err(MqttError::StoreFull) => self.unsent.push_back((node, out.buf.clone())),
                    Err(e) => {
                        result = Err(format!(
                            "could not publish {} bytes to {}: {e}",
                            out.buf.len(),
                            out.topic
                        ))
                    }
                }
            } else {
                self.unsent.push_back((node, out.buf.clone()));
            }
        }
        out.buf.clear();
        out.rule.published();
        result
    }
}

impl MqttBridge {
    /// The most bytes of records in one publish: [`inbox::PUBLISH_BYTES`], less for a small
    /// store (every publish must fit an empty store).
    fn publish_max(&self) -> usize {
        inbox::PUBLISH_BYTES.min(self.session.capacity() / 4)
    }

    fn publisher_parts(&self) -> (Instant, usize) {
        (self.node.now(), self.publish_max())
    }

    /// Writes the acknowledgements owed to node `node` into its publish.
    pub(super) fn write_owed(&mut self, node: NodeId) {
        let (now, max) = self.publisher_parts();
        let d = &mut self.delivery;
        let Some(out) = d.out.get_mut(usize::from(node)) else {
            return;
        };
        if !out.rule.owes() {
            return;
        }
        let mut p = Publisher {
            session: &mut self.session,
            tx: &mut self.tx,
            unsent: &mut d.unsent,
            now,
            max,
        };
        let mut error = None;
        while let Some((pair, seq)) = out.rule.take_owed() {
            let Some((port, to)) = d.pair_names.get(&pair) else {
                continue;
            };
            // The sender's own id (its port here may be `NODE/ID`).
            let from = self
                .aliases
                .get(port)
                .map_or(port.as_str(), |(_, id)| id.as_str());
            let msg = InboxMessage::Ack { from, to, seq };
            if let Err(e) = p.write(node, out, &msg, Kind::Answer) {
                error = Some(e);
            }
        }
        if let Some(e) = error {
            self.log(&e);
        }
    }

    /// Owes node `node` the acknowledgement of `pair`'s messages up to `seq`.
    pub(super) fn owe_ack(&mut self, node: NodeId, pair: PairId, seq: u64) {
        let now = self.node.now();
        let Some(out) = self.delivery.out.get_mut(usize::from(node)) else {
            return;
        };
        if out.rule.owe_ack(now, pair, seq).is_err() {
            self.write_owed(node);
            if let Some(out) = self.delivery.out.get_mut(usize::from(node)) {
                let _ = out.rule.owe_ack(now, pair, seq);
            }
        }
    }

    /// Answers node `node` that message `seq` from `from` to `to` failed here, behind the
    /// acknowledgements owed to it (a later acknowledgement of the pair would cover it).
    pub(super) fn answer_failed(
        &mut self,
        node: NodeId,
        from: &str,
        to: &str,
        seq: u64,
        reason: FailReason,
        detail: &str,
    ) {
        self.write_owed(node);
        let (now, max) = self.publisher_parts();
        let d = &mut self.delivery;
        let Some(out) = d.out.get_mut(usize::from(node)) else {
            return;
        };
        let mut p = Publisher {
            session: &mut self.session,
            tx: &mut self.tx,
            unsent: &mut d.unsent,
            now,
            max,
        };
        let msg = InboxMessage::Failed {
            from,
            to,
            seq,
            reason,
            detail,
        };
        if let Err(e) = p.write(node, out, &msg, Kind::Answer) {
            self.log(&e);
        }
    }

    /// Whether the session's store takes `more` bytes beside every publish gathered.
    fn room_for(&self, more: usize) -> bool {
        let reserved: usize = self.delivery.out.iter().map(NodeOut::reserved).sum();
        self.delivery.unsent.is_empty() && reserved + more + STORE_MARGIN <= self.session.room()
    }

    /// Writes `m` into the publish for node `node` (its owner), behind the acknowledgements
    /// owed to that node. Gives it back (`Some`) when the session's store has no room for
    /// it yet; fails it back to its sender when it could never fit.
    pub(super) fn gather_message(&mut self, m: PortMessage, node: NodeId) -> Option<PortMessage> {
        let incarnation = self
            .delivery
            .incarnations
            .get(self.delivery.node_name(node))
            .copied()
            .unwrap_or(0);
        let bound = {
            let msg = self.message_record(&m, incarnation);
            inbox::record_bound(&msg) + 1
        };
        let topic = self
            .delivery
            .out
            .get(usize::from(node))
            .map_or(0, |o| o.topic.len());
        let need = bound + topic + PACKET_OVERHEAD;
        if need + STORE_MARGIN > self.session.capacity() {
            let detail = format!(
                "larger than the bridge's MQTT store ({} bytes)",
                self.session.capacity()
            );
            self.fail_back(&m, FailReason::TooLarge, &detail);
            return None;
        }
        if !self.room_for(need) {
            // What was gathered goes first; the message waits for the broker's PUBACKs.
            self.flush_outgoing(true);
            if !self.room_for(need) {
                return Some(m);
            }
        }
        self.write_owed(node);
        let (now, max) = self.publisher_parts();
        let d = &mut self.delivery;
        let out = d.out.get_mut(usize::from(node))?;
        let mut p = Publisher {
            session: &mut self.session,
            tx: &mut self.tx,
            unsent: &mut d.unsent,
            now,
            max,
        };
        let msg = InboxMessage::Message {
            origin: &self.config.node_name,
            incarnation,
            envelope: Envelope {
                from: &m.from,
                to: &m.port,
                event: &m.event,
                payload: &m.payload,
                seq: m.seq,
            },
        };
        if let Err(e) = p.write(node, out, &msg, Kind::Message) {
            self.log(&e);
        }
        self.stats.forwarded += 1;
        self.awaiting_answer(m, node);
        None
    }

    fn message_record<'a>(&'a self, m: &'a PortMessage, incarnation: u64) -> InboxMessage<'a> {
        InboxMessage::Message {
            origin: &self.config.node_name,
            incarnation,
            envelope: Envelope {
                from: &m.from,
                to: &m.port,
                event: &m.event,
                payload: &m.payload,
                seq: m.seq,
            },
        }
    }

    /// Publishes what is due (`force`: everything gathered): at the end of a loop turn, every
    /// publish holding a message, and those holding only answers once their delay passed or
    /// enough gathered. Then what waited for room in the store.
    pub(super) fn flush_outgoing(&mut self, force: bool) {
        let now = self.node.now();
        for i in 0..self.delivery.out.len() {
            let rule = &self.delivery.out[i].rule;
            if rule.is_empty() || !(force || rule.due(now)) {
                continue;
            }
            let node = NodeId::try_from(i).unwrap_or(NodeId::MAX);
            self.write_owed(node);
            let (now, max) = self.publisher_parts();
            let d = &mut self.delivery;
            let out = &mut d.out[i];
            let mut p = Publisher {
                session: &mut self.session,
                tx: &mut self.tx,
                unsent: &mut d.unsent,
                now,
                max,
            };
            if let Err(e) = p.publish(node, out) {
                self.log(&e);
            }
        }
        self.send_unsent();
    }

    /// When gathered answers are due at the latest (`None`: none gathered).
    pub(super) fn outgoing_deadline(&self) -> Option<Instant> {
        self.delivery
            .out
            .iter()
            .filter_map(|o| o.rule.deadline())
            .min()
    }

    /// Publishes what waited for room in the session's store, in order, while it has room.
    pub(super) fn send_unsent(&mut self) {
        let now = self.node.now();
        while let Some((node, bytes)) = self.delivery.unsent.front() {
            let topic = self
                .delivery
                .out
                .get(usize::from(*node))
                .map_or("", |o| o.topic.as_str());
            match self
                .session
                .publish(now, topic, bytes, true, false, &mut Tx(&mut self.tx))
            {
                Ok(_) => {
                    self.delivery.unsent.pop_front();
                }
                Err(MqttError::StoreFull) => return,
                Err(e) => {
                    let what = format!("could not publish to {topic}: {e}");
                    self.delivery.unsent.pop_front();
                    self.log(&what);
                }
            }
        }
    }
}
