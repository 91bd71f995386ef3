//! End-to-end acknowledgement through the bridge (the rules are the core's
//! [`interstate_core::mqtt::delivery`]):
//!
//! - sending side: a message read from a port (a remote machine) stays unacknowledged to its
//!   local sender until the remote node's bridge answers: an Ack (its bus took it) or a
//!   Failed (with that bus's reason); the node going down, or no answer within
//!   [`MqttBridgeConfig::ack_timeout`](super::MqttBridgeConfig::ack_timeout), fails it as
//!   `node-unreachable`. A failure reaches the sender through the hub as the refusal of the
//!   message by its receiver ([`Node::refuse_port_message`]);
//! - receiving side: a message passed to this bus from the port of its remote sender is
//!   answered to the sending node once this bus acknowledged it ([`Node::next_port_ack`]) or
//!   reported it failed (an `xstate.error.delivery` to that port).

use std::collections::HashMap;

use interstate_core::mqtt::bridge::{self, BridgeTopic, Envelope};
use interstate_core::mqtt::delivery::{self as rules, InboxMessage};
use interstate_core::mqtt::presence::sent_to_this_run;
use interstate_core::mqtt::MqttError;
use interstate_core::wire::FailReason;
use interstate_core::{hub::ALL_FAIL_REASONS, Duration};

use super::{MqttBridge, Tx};
use crate::node::{PortMessage, DELIVERY_ERROR_EVENT};

/// The most messages published to other nodes and not yet answered: beyond it the bridge
/// stops reading its ports, and their senders' buffers fill (backpressure).
pub const AWAITING: usize = 4096;

/// The most messages from other nodes passed to this bus and not yet acknowledged there:
/// beyond it the next one is answered failed (`queue-full`) instead of passed on.
pub const RELAYED: usize = 4096;

/// A (sender, receiver) pair's handle in the tables.
pub(super) type PairId = u32;
/// A node's handle in the tables.
pub(super) type NodeId = u16;

/// The end-to-end state of a bridge.
pub(super) struct Delivery {
    pub(super) awaiting: Box<rules::Awaiting<PairId, NodeId, AWAITING>>,
    pub(super) relayed: Box<rules::Relayed<PairId, NodeId, RELAYED>>,
    pairs: HashMap<(String, String), PairId>,
    pair_names: HashMap<PairId, (String, String)>,
    next_pair: PairId,
    nodes: HashMap<String, NodeId>,
    node_names: Vec<String>,
    /// The event name of each message awaiting an answer (a refusal names it).
    events: HashMap<(PairId, u64), String>,
    /// Answers for other nodes the session's store had no room for yet, in order.
    pub(super) answers: std::collections::VecDeque<(String, Vec<u8>)>,
    /// Each node's current run, from its status: what messages for it are stamped with
    /// (`presence`).
    pub(super) incarnations: HashMap<String, u64>,
    /// The last sequence number given to a message from a machine hosted in the bridge's
    /// own node to a remote machine, per (sender, port): such messages reach the port
    /// without the hub and carry no number of the bus (`number_hosted`).
    hosted_seq: HashMap<(String, String), u64>,
    /// Acks for messages passed to machines of the bridge's own process, not published yet:
    /// (origin node, sender, receiver as addressed, seq), one per run of the same pair (an
    /// Ack is cumulative). Published before anything else leaves (`flush_hosted_acks`).
    pending_acks: Vec<(String, String, String, u64)>,
    /// The nodes whose status arrived on this bridge's current connection: messages for
    /// the others wait (their status may be stale: the broker may have restarted).
    pub(super) fresh: std::collections::HashSet<String>,
    last_sweep: std::time::Instant,
}

impl Delivery {
    pub(super) fn new() -> Self {
        Delivery {
            awaiting: Box::default(),
            relayed: Box::default(),
            pairs: HashMap::new(),
            pair_names: HashMap::new(),
            next_pair: 0,
            nodes: HashMap::new(),
            node_names: Vec::new(),
            events: HashMap::new(),
            answers: Default::default(),
            incarnations: HashMap::new(),
            hosted_seq: HashMap::new(),
            pending_acks: Vec::new(),
            fresh: Default::default(),
            last_sweep: std::time::Instant::now(),
        }
    }

    fn pair(&mut self, from: &str, to: &str) -> PairId {
        if let Some(&p) = self.pairs.get(&(from.to_string(), to.to_string())) {
            return p;
        }
        while self.pair_names.contains_key(&self.next_pair) {
            self.next_pair = self.next_pair.wrapping_add(1);
        }
        let p = self.next_pair;
        self.next_pair = self.next_pair.wrapping_add(1);
        self.pairs.insert((from.into(), to.into()), p);
        self.pair_names.insert(p, (from.into(), to.into()));
        p
    }

    fn known_pair(&self, from: &str, to: &str) -> Option<PairId> {
        self.pairs.get(&(from.to_string(), to.to_string())).copied()
    }

    pub(super) fn node(&mut self, name: &str) -> NodeId {
        if let Some(&n) = self.nodes.get(name) {
            return n;
        }
        // Node names are few (one per bridge of the prefix) and kept for the bridge's life.
        let n = NodeId::try_from(self.node_names.len()).unwrap_or(NodeId::MAX);
        self.node_names.push(name.into());
        self.nodes.insert(name.into(), n);
        n
    }

    /// The name of node `id`.
    pub(super) fn node_name(&self, id: NodeId) -> Option<String> {
        self.node_names.get(usize::from(id)).cloned()
    }

    /// Every node named so far.
    pub(super) fn node_names(&self) -> Vec<String> {
        self.node_names.clone()
    }

    /// Forgets the pairs no table holds any more (every second at most), so that the
    /// handles do not grow with every short-lived sender.
    fn sweep(&mut self) {
        if self.last_sweep.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        self.last_sweep = std::time::Instant::now();
        let unused: Vec<PairId> = self
            .pair_names
            .keys()
            .copied()
            .filter(|p| !self.awaiting.holds_pair(*p) && !self.relayed.holds_pair(*p))
            .collect();
        for p in unused {
            if let Some(names) = self.pair_names.remove(&p) {
                self.pairs.remove(&names);
            }
        }
    }
}

/// The reason named by a code of `xstate.error.delivery` (`target-gone`, ...).
fn reason_from_code(code: &str) -> FailReason {
    ALL_FAIL_REASONS
        .into_iter()
        .find(|r| r.code() == code)
        .unwrap_or(FailReason::TargetGone)
}

impl MqttBridge {
    /// Reads the ports' messages while there is room to keep them until answered.
    pub(super) fn read_ports(&mut self) {
        let ports: Vec<String> = self
            .ports
            .keys()
            .chain(self.aliases.keys())
            .cloned()
            .collect();
        let mut progress = true;
        while progress {
            progress = false;
            for port in &ports {
                if self.delivery.awaiting.len() + self.waiting.len() >= AWAITING {
                    return;
                }
                if let Some(m) = self.node.recv_port_unacknowledged(port) {
                    progress = true;
                    self.forward(m);
                }
            }
        }
    }

    /// Gives a message from a machine (or port) hosted in the bridge's own node its number:
    /// it reached the port in this process, without the hub, so it has none (0). Numbered,
    /// it is de-duplicated and answered end to end like a message from another process;
    /// the answer is then told to its sender here (`tell_failed`), not through the hub.
    /// Messages the bridge's ports pass between two other nodes keep 0, as before.
    pub(super) fn number_hosted(&mut self, m: &mut PortMessage) {
        if m.seq != 0 || m.event == DELIVERY_ERROR_EVENT || !self.sender_hosted(&m.from) {
            return;
        }
        let last = self
            .delivery
            .hosted_seq
            .entry((m.from.clone(), m.port.clone()))
            // Above whatever an earlier run of this bridge gave the pair (the receiving
            // node remembers the last number per sender): the wall clock in nanoseconds.
            .or_insert_with(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX >> 1))
            });
        *last += 1;
        m.seq = *last;
    }

    /// Whether `from` is a machine or port hosted in the bridge's own node (not one of its
    /// ports for remote machines): its messages reach the ports without the hub.
    pub(super) fn sender_hosted(&self, from: &str) -> bool {
        self.owner_of(from).is_none() && self.node.hosts_here(from)
    }

    /// Tells the sender of a message forwarded from a port that it failed: through the hub
    /// when it is another process's machine, directly when it is hosted in this node.
    pub(super) fn tell_failed(&mut self, m: &PortMessage, reason: FailReason, detail: &str) {
        self.stats.failed_back += 1;
        if self.sender_hosted(&m.from) {
            self.node
                .fail_local_send(&m.from, &m.port, &m.event, m.seq, reason, detail);
            return;
        }
        if let Err(e) = self.node.refuse_port_message(m, reason, detail) {
            let what = format!(
                "could not report a failed delivery to '{}': {e} (its node reports it when this port closes)",
                m.from
            );
            self.log(&what);
        }
    }

    /// A message for a remote machine went out: it waits for its node's answer.
    pub(super) fn awaiting_answer(&mut self, m: &PortMessage, owner: &str) {
        if m.seq == 0 {
            return;
        }
        let d = &mut self.delivery;
        let pair = d.pair(&m.from, &m.port);
        let node = d.node(owner);
        let now = self.node.now();
        if d.awaiting.push(pair, node, m.seq, now).is_ok() {
            d.events.insert((pair, m.seq), m.event.clone());
        } else {
            // Cannot happen: the ports are read only while there is room.
            if !self.sender_hosted(&m.from) {
                self.node.acknowledge_port_seq(&m.port, &m.from, m.seq);
            }
        }
    }

    /// The envelope of `m` for node `owner`.
    pub(super) fn envelope_for(&self, m: &PortMessage, owner: &str, out: &mut Vec<u8>) -> bool {
        let msg = InboxMessage::Message {
            origin: &self.config.node_name,
            incarnation: self.delivery.incarnations.get(owner).copied().unwrap_or(0),
            envelope: Envelope {
                from: &m.from,
                to: &m.port,
                event: &m.event,
                payload: &m.payload,
                seq: m.seq,
            },
        };
        let need = m.from.len() + m.port.len() + m.event.len() + m.payload.len() + owner.len() + 96;
        out.resize(need, 0);
        match bridge::encode(&msg, out) {
            Some(b) => {
                let n = b.len();
                out.truncate(n);
                true
            }
            None => false,
        }
    }

    /// Acknowledges to the local senders what the tables released.
    fn release(&mut self, released: Vec<(PairId, u64)>) {
        for (pair, seq) in released {
            let Some((from, to)) = self.delivery.pair_names.get(&pair).cloned() else {
                continue;
            };
            self.delivery
                .events
                .retain(|(p, s), _| *p != pair || *s > seq);
            // A sender hosted in this node was never acknowledged through the hub.
            if !self.sender_hosted(&from) {
                self.node.acknowledge_port_seq(&to, &from, seq);
            }
        }
    }

    /// Tells the sender of message `seq` of `pair` that it failed.
    fn refuse(&mut self, pair: PairId, seq: u64, reason: FailReason, detail: &str) {
        let Some((from, to)) = self.delivery.pair_names.get(&pair).cloned() else {
            return;
        };
        let event = self
            .delivery
            .events
            .remove(&(pair, seq))
            .unwrap_or_default();
        let m = PortMessage {
            port: to,
            from,
            event,
            topic: None,
            payload: Vec::new(),
            seq,
            correlation: interstate_core::Correlation::None,
        };
        self.tell_failed(&m, reason, detail);
    }

    /// Node `node` is unreachable (its will, or a new connection of it): what waited for
    /// its answer fails.
    pub(super) fn node_unreachable(&mut self, node: &str, why: &str) {
        let Some(&id) = self.delivery.nodes.get(node) else {
            return;
        };
        let (mut failed, mut released) = (Vec::new(), Vec::new());
        self.delivery.awaiting.node_unreachable(
            id,
            &mut |p, s| failed.push((p, s)),
            &mut |p, s| released.push((p, s)),
        );
        if !failed.is_empty() {
            self.log(&format!(
                "{} message(s) to node '{node}' failed as node-unreachable: {why}",
                failed.len()
            ));
        }
        for (p, s) in failed {
            self.refuse(p, s, FailReason::NodeUnreachable, why);
        }
        self.release(released);
    }

    /// Messages without an answer within the bound fail; unused pair handles go.
    pub(super) fn expire_awaiting(&mut self) {
        let bound = Duration::from_millis(
            u64::try_from(self.config.ack_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        let now = self.node.now();
        if self
            .delivery
            .awaiting
            .next_deadline(bound)
            .is_some_and(|d| d <= now)
        {
            let (mut failed, mut released) = (Vec::new(), Vec::new());
            self.delivery.awaiting.expire(
                now,
                bound,
                &mut |p, s| failed.push((p, s)),
                &mut |p, s| released.push((p, s)),
            );
            let why = format!(
                "no answer from its node within {} ms (not confirmed: it may still arrive)",
                self.config.ack_timeout.as_millis()
            );
            self.log(&format!(
                "{} message(s) failed as node-unreachable: {why}",
                failed.len()
            ));
            for (p, s) in failed {
                self.refuse(p, s, FailReason::NodeUnreachable, &why);
            }
            self.release(released);
        }
        self.delivery.sweep();
    }

    /// The port `id` is about to close (its machine left): its messages are forgotten
    /// here, their senders' nodes report them as for any receiver that leaves. A sender
    /// hosted in this node has no other node to tell it: what it sent that waits unread in
    /// the port or unanswered by the remote node fails now (`target-gone`; for the
    /// unanswered ones, not confirmed: the remote node may have delivered them).
    pub(super) fn forget_port(&mut self, id: &str) {
        let mut unread = Vec::new();
        while let Some(m) = self.node.recv_port_unacknowledged(id) {
            unread.push(m);
        }
        for mut m in unread {
            if m.seq == 0 && m.event != DELIVERY_ERROR_EVENT && self.sender_hosted(&m.from) {
                self.number_hosted(&mut m);
                self.tell_failed(&m, FailReason::TargetGone, "its node withdrew it");
            }
        }
        let pairs: Vec<PairId> = self
            .delivery
            .pair_names
            .iter()
            .filter(|(_, (_, to))| to == id)
            .map(|(p, _)| *p)
            .collect();
        for p in pairs {
            let hosted_sender = self
                .delivery
                .pair_names
                .get(&p)
                .is_some_and(|(from, _)| self.sender_hosted(from));
            if hosted_sender {
                let mut seqs: Vec<u64> = self
                    .delivery
                    .events
                    .keys()
                    .filter(|(q, _)| *q == p)
                    .map(|(_, s)| *s)
                    .collect();
                seqs.sort_unstable();
                for s in seqs {
                    self.refuse(
                        p,
                        s,
                        FailReason::TargetGone,
                        "its node withdrew it before answering (not confirmed: it may have been delivered)",
                    );
                }
            }
            self.delivery.awaiting.forget_pair(p);
            self.delivery.events.retain(|(q, _), _| *q != p);
        }
    }

    /// Something arrived on this node's inbox.
    pub(super) fn inbox(&mut self, payload: &[u8]) {
        match bridge::decode::<InboxMessage<'_>>(payload) {
            Some(InboxMessage::Message {
                origin,
                incarnation,
                envelope,
            }) => self.relay(origin, incarnation, &envelope),
            Some(InboxMessage::Ack { from, to, seq }) => {
                let Some(pair) = self.delivery.known_pair(from, to) else {
                    return;
                };
                let mut released = Vec::new();
                self.delivery
                    .awaiting
                    .acked(pair, seq, &mut |p, s| released.push((p, s)));
                self.release(released);
            }
            Some(InboxMessage::Failed {
                from,
                to,
                seq,
                reason,
                detail,
            }) => {
                let Some(pair) = self.delivery.known_pair(from, to) else {
                    return;
                };
                let mut released = Vec::new();
                if self
                    .delivery
                    .awaiting
                    .failed(pair, seq, &mut |p, s| released.push((p, s)))
                {
                    let owner = self.ports.get(to).cloned().unwrap_or_default();
                    let detail = if detail.is_empty() {
                        format!("on node '{owner}'")
                    } else {
                        format!("on node '{owner}': {detail}")
                    };
                    self.refuse(pair, seq, reason, &detail);
                }
                self.release(released);
            }
            None => {
                self.stats.dropped_in += 1;
                self.log("dropped a malformed message from the broker");
            }
        }
    }

    /// Passes a message from node `origin` to this bus, or answers it failed.
    fn relay(&mut self, origin: &str, incarnation: u64, env: &Envelope<'_>) {
        let fail = |this: &mut Self, reason: FailReason, detail: &str| {
            this.stats.dropped_in += 1;
            this.answer(
                origin,
                &InboxMessage::Failed {
                    from: env.from,
                    to: env.to,
                    seq: env.seq,
                    reason,
                    detail,
                },
            );
        };
        if !sent_to_this_run(incarnation, self.presence.run()) {
            // Sent to an earlier run of this node: its sender's bridge gave it up when this
            // node's new run began (or does now, on the answer).
            return fail(
                self,
                FailReason::NodeUnreachable,
                "sent to an earlier run of the node",
            );
        }
        let key = (format!("{origin}/{}", env.from), env.to.to_string());
        if !bridge::is_new(self.last_seq.get(&key).copied(), env.seq) {
            self.stats.duplicates += 1;
            return;
        }
        // The sender's port here: its id, or `ORIGIN/ID` when a machine of this bus (or
        // another node) keeps the plain id here (the conflict rule), so that replies find it.
        let alias = format!("{origin}/{}", env.from);
        let sender = if self.ports.get(env.from).is_some_and(|n| n == origin) {
            env.from
        } else if self.aliases.contains_key(&alias) {
            alias.as_str()
        } else {
            let detail = format!(
                "no registry record for sender '{}' reached this node",
                env.from
            );
            return fail(self, FailReason::NotOwner, &detail);
        };
        if !self.delivery.relayed.has_room() {
            let detail = format!("{RELAYED} messages wait for this node's bus already");
            return fail(self, FailReason::QueueFull, &detail);
        }
        self.last_seq.insert(key, env.seq);
        // `NODE/ID` addressed this node's machine `ID` explicitly.
        let receiver = env
            .to
            .strip_prefix(self.config.node_name.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(env.to);
        if self.sender_hosted(receiver) {
            return self.relay_here(origin, env, sender, receiver);
        }
        match self
            .node
            .send_from_port(sender, receiver, env.event, env.payload)
        {
            Ok(local) => {
                self.stats.delivered += 1;
                let d = &mut self.delivery;
                let pair = d.pair(sender, env.to);
                let node = d.node(origin);
                // Room was checked above.
                let _ = d.relayed.push(pair, node, local, env.seq);
            }
            Err(e) => {
                let detail = format!("{e}");
                fail(self, FailReason::QueueFull, &detail);
            }
        }
    }

    /// Passes a message from node `origin` to `receiver`, a machine or port hosted in the
    /// bridge's own node: it takes it now, in this process, without the hub, so it is
    /// answered at once (an Ack, or a Failed for a machine that stopped) and its answer
    /// (the machine's sends) leaves in the same loop turn (`route_outboxes` in `pump`).
    fn relay_here(&mut self, origin: &str, env: &Envelope<'_>, sender: &str, receiver: &str) {
        if let Some(error) = self.node.stopped_here(receiver) {
            self.stats.dropped_in += 1;
            return self.answer(
                origin,
                &InboxMessage::Failed {
                    from: env.from,
                    to: env.to,
                    seq: env.seq,
                    reason: FailReason::TargetStopped,
                    detail: &error,
                },
            );
        }
        match self
            .node
            .send_from_port(sender, receiver, env.event, env.payload)
        {
            Ok(_) => {
                self.stats.delivered += 1;
                self.routed_here = true;
                // Published once what the broker brought has been passed on (one Ack for a
                // run of messages of a pair), before the machine's replies, which are read
                // from the ports later: a reply never overtakes the acknowledgement of what
                // it answers.
                match self.delivery.pending_acks.last_mut() {
                    Some((o, f, t, seq)) if o == origin && f == env.from && t == env.to => {
                        *seq = env.seq;
                    }
                    _ => self.delivery.pending_acks.push((
                        origin.to_string(),
                        env.from.to_string(),
                        env.to.to_string(),
                        env.seq,
                    )),
                }
            }
            Err(e) => {
                self.stats.dropped_in += 1;
                let detail = format!("{e}");
                self.answer(
                    origin,
                    &InboxMessage::Failed {
                        from: env.from,
                        to: env.to,
                        seq: env.seq,
                        reason: FailReason::QueueFull,
                        detail: &detail,
                    },
                );
            }
        }
    }

    /// Answers for the nodes whose messages this bus acknowledged or failed.
    pub(super) fn answer_acks(&mut self) {
        while let Some((port, receiver, local)) = self.node.next_port_ack() {
            for to in self.addressed_as(&receiver) {
                let Some(pair) = self.delivery.known_pair(&port, &to) else {
                    continue;
                };
                if let Some((node, seq)) = self.delivery.relayed.acked(pair, local) {
                    let origin = self.delivery.node_names[usize::from(node)].clone();
                    let from = self.sender_id(&port);
                    self.answer(
                        &origin,
                        &InboxMessage::Ack {
                            from: &from,
                            to: &to,
                            seq,
                        },
                    );
                }
            }
        }
    }

    /// The sender's own id for a port that relays its messages (`NODE/ID` is `ID`).
    fn sender_id(&self, port: &str) -> String {
        self.aliases
            .get(port)
            .map_or_else(|| port.to_string(), |(_, id)| id.clone())
    }

    /// The ids a machine of this bus may have been addressed by from other nodes: its own,
    /// and `NODE/ID` with this node's name (the bus's numbers are shared by both).
    fn addressed_as(&self, receiver: &str) -> [String; 2] {
        [
            receiver.to_string(),
            format!("{}/{receiver}", self.config.node_name),
        ]
    }

    /// An `xstate.error.delivery` for a message this bridge passed on from port `port`.
    pub(super) fn relayed_failed(&mut self, port: &str, payload: &[u8]) {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let (Some(to), Some(local)) = (
            v.get("to").and_then(|t| t.as_str()),
            v.get("seq").and_then(|s| s.as_u64()),
        ) else {
            return;
        };
        let reason = reason_from_code(v.get("reason").and_then(|r| r.as_str()).unwrap_or(""));
        let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or("");
        for addressed in self.addressed_as(to) {
            let Some(pair) = self.delivery.known_pair(port, &addressed) else {
                continue;
            };
            if let Some((node, seq)) = self.delivery.relayed.failed(pair, local) {
                let origin = self.delivery.node_names[usize::from(node)].clone();
                let from = self.sender_id(port);
                self.answer(
                    &origin,
                    &InboxMessage::Failed {
                        from: &from,
                        to: &addressed,
                        seq,
                        reason,
                        detail,
                    },
                );
                return;
            }
        }
    }

    /// Publishes the Acks `relay_here` gathered (see `Delivery::pending_acks`).
    pub(super) fn flush_hosted_acks(&mut self) {
        for (origin, from, to, seq) in std::mem::take(&mut self.delivery.pending_acks) {
            self.answer(
                &origin,
                &InboxMessage::Ack {
                    from: &from,
                    to: &to,
                    seq,
                },
            );
        }
    }

    fn answer(&mut self, node: &str, msg: &InboxMessage<'_>) {
        // Answers keep the order of the messages they answer.
        if !self.delivery.pending_acks.is_empty() {
            self.flush_hosted_acks();
        }
        let mut buf = vec![0u8; 512 + node.len()];
        if let InboxMessage::Failed { detail, .. } = msg {
            buf.resize(buf.len() + detail.len(), 0);
        }
        let Some(bytes) = bridge::encode(msg, &mut buf).map(|b| b.to_vec()) else {
            return;
        };
        self.delivery.answers.push_back((node.to_string(), bytes));
        self.send_answers();
    }

    /// Publishes the answers waiting, in order, while the session's store has room.
    pub(super) fn send_answers(&mut self) {
        while let Some((node, bytes)) = self.delivery.answers.front() {
            let topic = self.topic(BridgeTopic::Inbox { node });
            let now = self.node.now();
            match self
                .session
                .publish(now, &topic, bytes, true, false, &mut Tx(&mut self.tx))
            {
                Ok(_) => {
                    self.delivery.answers.pop_front();
                }
                Err(MqttError::StoreFull) => return,
                Err(e) => {
                    let what = format!("could not answer node '{node}': {e}");
                    self.delivery.answers.pop_front();
                    self.log(&what);
                }
            }
        }
    }

    /// Whether `m` is a failure report for a message this bridge passed on (handled here).
    pub(super) fn relayed_report(&mut self, m: &PortMessage) -> bool {
        if m.event != DELIVERY_ERROR_EVENT {
            return false;
        }
        self.relayed_failed(&m.port, &m.payload);
        true
    }
}
