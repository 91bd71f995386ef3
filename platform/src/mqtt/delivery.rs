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

use std::collections::{HashMap, HashSet, VecDeque};

use interstate_core::mqtt::bridge::Envelope;
use interstate_core::mqtt::delivery::{self as rules, InboxMessage};
use interstate_core::mqtt::inbox;
use interstate_core::mqtt::presence::sent_to_this_run;
use interstate_core::wire::FailReason;
use interstate_core::{hub::ALL_FAIL_REASONS, Duration};
use rustc_hash::FxHashMap;

use super::outgoing::NodeOut;
use super::MqttBridge;
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

/// Per key, a map keyed by a second string: looked up by two `&str` without building a
/// key (no allocation per message).
type ByTwo<V> = FxHashMap<String, FxHashMap<String, V>>;

fn get_two<V: Copy>(map: &ByTwo<V>, a: &str, b: &str) -> Option<V> {
    map.get(a)?.get(b).copied()
}

fn set_two<V>(map: &mut ByTwo<V>, a: &str, b: &str, v: V) {
    if let Some(inner) = map.get_mut(a) {
        if let Some(slot) = inner.get_mut(b) {
            *slot = v;
        } else {
            inner.insert(b.to_string(), v);
        }
    } else {
        map.entry(a.to_string())
            .or_default()
            .insert(b.to_string(), v);
    }
}

/// The end-to-end state of a bridge.
pub(super) struct Delivery {
    pub(super) awaiting: Box<rules::Awaiting<PairId, NodeId, AWAITING>>,
    pub(super) relayed: Box<rules::Relayed<PairId, NodeId, RELAYED>>,
    /// (sender, receiver) -> handle.
    pairs: ByTwo<PairId>,
    pub(super) pair_names: FxHashMap<PairId, (String, String)>,
    next_pair: PairId,
    nodes: HashMap<String, NodeId>,
    node_names: Vec<String>,
    /// Per pair, the sequence number and event name of each message awaiting an answer,
    /// in order (a refusal names the event).
    events: FxHashMap<PairId, VecDeque<(u64, String)>>,
    /// Per node (by handle), its inbox publish being gathered (`outgoing`).
    pub(super) out: Vec<NodeOut>,
    /// Publishes the session's store had no room for yet, in order: (node, payload).
    pub(super) unsent: VecDeque<(NodeId, Vec<u8>)>,
    /// Each node's current run, from its status: what messages for it are stamped with
    /// (`presence`).
    pub(super) incarnations: HashMap<String, u64>,
    /// The last sequence number given to a message from a machine hosted in the bridge's
    /// own node to a remote machine, per (sender, port): such messages reach the port
    /// without the hub and carry no number of the bus (`number_hosted`).
    hosted_seq: ByTwo<u64>,
    /// The nodes whose status arrived on this bridge's current connection: messages for
    /// the others wait (their status may be stale: the broker may have restarted).
    pub(super) fresh: HashSet<String>,
    /// Per (remote node, sender there), per receiver as addressed: the highest sequence
    /// number passed on (duplicates are dropped by it).
    last_seq: FxHashMap<String, ByTwo<u64>>,
    /// `ORIGIN/ID` built for a lookup, kept to be reused.
    scratch_alias: String,
    last_sweep: std::time::Instant,
}

impl Delivery {
    pub(super) fn new() -> Self {
        Delivery {
            awaiting: Box::default(),
            relayed: Box::default(),
            pairs: FxHashMap::default(),
            pair_names: FxHashMap::default(),
            next_pair: 0,
            nodes: HashMap::new(),
            node_names: Vec::new(),
            events: FxHashMap::default(),
            out: Vec::new(),
            unsent: VecDeque::new(),
            incarnations: HashMap::new(),
            hosted_seq: FxHashMap::default(),
            fresh: HashSet::new(),
            last_seq: FxHashMap::default(),
            scratch_alias: String::new(),
            last_sweep: std::time::Instant::now(),
        }
    }

    fn pair(&mut self, from: &str, to: &str) -> PairId {
        if let Some(p) = get_two(&self.pairs, from, to) {
            return p;
        }
        while self.pair_names.contains_key(&self.next_pair) {
            self.next_pair = self.next_pair.wrapping_add(1);
        }
        let p = self.next_pair;
        self.next_pair = self.next_pair.wrapping_add(1);
        set_two(&mut self.pairs, from, to, p);
        self.pair_names.insert(p, (from.into(), to.into()));
        p
    }

    fn known_pair(&self, from: &str, to: &str) -> Option<PairId> {
        get_two(&self.pairs, from, to)
    }

    /// The handle of node `name`, its inbox topic under `prefix` made once.
    pub(super) fn node(&mut self, name: &str, prefix: &str) -> NodeId {
        if let Some(&n) = self.nodes.get(name) {
            return n;
        }
        // Node names are few (one per bridge of the prefix) and kept for the bridge's life.
        let n = NodeId::try_from(self.node_names.len()).unwrap_or(NodeId::MAX);
        self.node_names.push(name.into());
        self.nodes.insert(name.into(), n);
        self.out.push(NodeOut::new(prefix, name));
        n
    }

    pub(super) fn node_name(&self, node: NodeId) -> &str {
        self.node_names
            .get(usize::from(node))
            .map_or("", String::as_str)
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
            .filter(|p| {
                !self.awaiting.holds_pair(*p)
                    && !self.relayed.holds_pair(*p)
                    && !self.out.iter().any(|o| o.rule.owes_pair(*p))
            })
            .collect();
        for p in unused {
            self.events.remove(&p);
            if let Some((from, to)) = self.pair_names.remove(&p) {
                if let Some(inner) = self.pairs.get_mut(&from) {
                    inner.remove(&to);
                    if inner.is_empty() {
                        self.pairs.remove(&from);
                    }
                }
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
    /// Reads the ports' messages while there is room to keep them until answered: one per
    /// port per round, so that a busy port does not hold the others back.
    pub(super) fn read_ports(&mut self) {
        let mut got = std::mem::take(&mut self.read_buf);
        loop {
            let room = AWAITING.saturating_sub(self.delivery.awaiting.len() + self.waiting.len());
            for port in self.ports.keys().chain(self.aliases.keys()) {
                if got.len() >= room {
                    break;
                }
                if let Some(m) = self.node.recv_port_unacknowledged(port) {
                    got.push(m);
                }
            }
            if got.is_empty() {
                break;
            }
            for m in got.drain(..) {
                self.forward(m);
            }
        }
        self.read_buf = got;
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
        let seq = match get_two(&self.delivery.hosted_seq, &m.from, &m.port) {
            Some(last) => last + 1,
            // Above whatever an earlier run of this bridge gave the pair (the receiving
            // node remembers the last number per sender): the wall clock in nanoseconds.
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX >> 1))
                .saturating_add(1),
        };
        set_two(&mut self.delivery.hosted_seq, &m.from, &m.port, seq);
        m.seq = seq;
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

    /// A message for a remote machine was written to node `node`'s publish: it waits for
    /// that node's answer. Its event name is kept (moved, not copied) for a refusal.
    pub(super) fn awaiting_answer(&mut self, m: PortMessage, node: NodeId) {
        if m.seq == 0 {
            return;
        }
        let now = self.node.now();
        let d = &mut self.delivery;
        let pair = d.pair(&m.from, &m.port);
        if d.awaiting.push(pair, node, m.seq, now).is_ok() {
            d.events
                .entry(pair)
                .or_default()
                .push_back((m.seq, m.event));
        } else if !self.sender_hosted(&m.from) {
            // Cannot happen: the ports are read only while there is room.
            self.node.acknowledge_port_seq(&m.port, &m.from, m.seq);
        }
    }

    /// Acknowledges to the local sender what the tables released: `pair`'s messages up to
    /// `seq`.
    fn release(&mut self, pair: PairId, seq: u64) {
        if let Some(q) = self.delivery.events.get_mut(&pair) {
            while q.front().is_some_and(|(s, _)| *s <= seq) {
                q.pop_front();
            }
        }
        let hosted = match self.delivery.pair_names.get(&pair) {
            Some((from, _)) => self.sender_hosted(from),
            None => return,
        };
        // A sender hosted in this node was never acknowledged through the hub.
        if !hosted {
            if let Some((from, to)) = self.delivery.pair_names.get(&pair) {
                self.node.acknowledge_port_seq(to, from, seq);
            }
        }
    }

    fn release_all(&mut self, released: Vec<(PairId, u64)>) {
        for (pair, seq) in released {
            self.release(pair, seq);
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
            .get_mut(&pair)
            .and_then(|q| {
                let i = q.iter().position(|(s, _)| *s == seq)?;
                q.remove(i)
            })
            .map(|(_, e)| e)
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
        self.release_all(released);
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
            self.release_all(released);
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
                let seqs: Vec<u64> = self
                    .delivery
                    .events
                    .get(&p)
                    .map(|q| q.iter().map(|(s, _)| *s).collect())
                    .unwrap_or_default();
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
            self.delivery.events.remove(&p);
        }
    }

    /// A publish arrived on this node's inbox: its records, in order.
    pub(super) fn inbox(&mut self, payload: &[u8]) {
        for record in inbox::records(payload) {
            match record {
                Ok(msg) => self.inbox_record(msg),
                Err(()) => {
                    self.stats.dropped_in += 1;
                    self.log("dropped a malformed message from the broker (a bridge of another version under the same prefix?)");
                }
            }
        }
    }

    fn inbox_record(&mut self, msg: InboxMessage<'_>) {
        match msg {
            InboxMessage::Message {
                origin,
                incarnation,
                envelope,
            } => self.relay(origin, incarnation, &envelope),
            InboxMessage::Ack { from, to, seq } => {
                let Some(pair) = self.delivery.known_pair(from, to) else {
                    return;
                };
                // One pair's prefix at most: no list needed.
                let mut released = None;
                self.delivery
                    .awaiting
                    .acked(pair, seq, &mut |p, s| released = Some((p, s)));
                if let Some((p, s)) = released {
                    self.release(p, s);
                }
            }
            InboxMessage::Failed {
                from,
                to,
                seq,
                reason,
                detail,
            } => {
                let Some(pair) = self.delivery.known_pair(from, to) else {
                    return;
                };
                let mut released = None;
                if self
                    .delivery
                    .awaiting
                    .failed(pair, seq, &mut |p, s| released = Some((p, s)))
                {
                    let owner = self.ports.get(to).cloned().unwrap_or_default();
                    let detail = if detail.is_empty() {
                        format!("on node '{owner}'")
                    } else {
                        format!("on node '{owner}': {detail}")
                    };
                    self.refuse(pair, seq, reason, &detail);
                }
                if let Some((p, s)) = released {
                    self.release(p, s);
                }
            }
        }
    }

    /// Passes a message from node `origin` to this bus, or answers it failed.
    fn relay(&mut self, origin: &str, incarnation: u64, env: &Envelope<'_>) {
        let origin_id = self.delivery.node(origin, &self.config.prefix);
        let fail = |this: &mut Self, reason: FailReason, detail: &str| {
            this.stats.dropped_in += 1;
            this.answer_failed(origin_id, env.from, env.to, env.seq, reason, detail);
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
        let last = self
            .delivery
            .last_seq
            .get(origin)
            .and_then(|m| get_two(m, env.from, env.to));
        if !interstate_core::mqtt::bridge::is_new(last, env.seq) {
            self.stats.duplicates += 1;
            return;
        }
        // The sender's port here: its id, or `ORIGIN/ID` when a machine of this bus (or
        // another node) keeps the plain id here (the conflict rule), so that replies find it.
        let alias;
        let sender = if self.ports.get(env.from).is_some_and(|n| n == origin) {
            env.from
        } else {
            alias = format!("{origin}/{}", env.from);
            if self.aliases.contains_key(&alias) {
                alias.as_str()
            } else {
                let detail = format!(
                    "no registry record for sender '{}' reached this node",
                    env.from
                );
                return fail(self, FailReason::NotOwner, &detail);
            }
        };
        if !self.delivery.relayed.has_room() {
            let detail = format!("{RELAYED} messages wait for this node's bus already");
            return fail(self, FailReason::QueueFull, &detail);
        }
        match self.delivery.last_seq.get_mut(origin) {
            Some(m) => set_two(m, env.from, env.to, env.seq),
            None => {
                let mut m = FxHashMap::default();
                set_two(&mut m, env.from, env.to, env.seq);
                self.delivery.last_seq.insert(origin.to_string(), m);
            }
        }
        // `NODE/ID` addressed this node's machine `ID` explicitly.
        let receiver = env
            .to
            .strip_prefix(self.config.node_name.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(env.to);
        if self.sender_hosted(receiver) {
            return self.relay_here(origin_id, env, sender, receiver);
        }
        match self
            .node
            .send_from_port(sender, receiver, env.event, env.payload)
        {
            Ok(local) => {
                self.stats.delivered += 1;
                let d = &mut self.delivery;
                let pair = d.pair(sender, env.to);
                // Room was checked above.
                let _ = d.relayed.push(pair, origin_id, local, env.seq);
            }
            Err(e) => {
                let detail = format!("{e}");
                fail(self, FailReason::QueueFull, &detail);
            }
        }
    }

    /// Passes a message from node `origin` to `receiver`, a machine or port hosted in the
    /// bridge's own node: it takes it now, in this process, without the hub, so it is
    /// answered at once (an Ack, or a Failed for a machine that stopped). The Ack is owed
    /// to `origin`'s publish: the machine's reply, read from the ports in the same loop turn
    /// (`route_outboxes` in `pump`), carries it, behind it.
    fn relay_here(&mut self, origin: NodeId, env: &Envelope<'_>, sender: &str, receiver: &str) {
        if let Some(error) = self.node.stopped_here(receiver) {
            self.stats.dropped_in += 1;
            return self.answer_failed(
                origin,
                env.from,
                env.to,
                env.seq,
                FailReason::TargetStopped,
                &error,
            );
        }
        match self
            .node
            .send_from_port(sender, receiver, env.event, env.payload)
        {
            Ok(_) => {
                self.stats.delivered += 1;
                self.routed_here = true;
                let pair = self.delivery.pair(sender, env.to);
                self.owe_ack(origin, pair, env.seq);
            }
            Err(e) => {
                self.stats.dropped_in += 1;
                let detail = format!("{e}");
                self.answer_failed(
                    origin,
                    env.from,
                    env.to,
                    env.seq,
                    FailReason::QueueFull,
                    &detail,
                );
            }
        }
    }

    /// Answers for the nodes whose messages this bus acknowledged.
    pub(super) fn answer_acks(&mut self) {
        while let Some((port, receiver, local)) = self.node.next_port_ack() {
            // The receiver as addressed from the other node: its id, or `NODE/ID` with this
            // node's name (the bus's numbers are shared by both).
            let mut pairs = [None, None];
            if let Some(inner) = self.delivery.pairs.get(&port) {
                pairs[0] = inner.get(&receiver).copied();
                let q = &mut self.delivery.scratch_alias;
                q.clear();
                q.push_str(&self.config.node_name);
                q.push('/');
                q.push_str(&receiver);
                pairs[1] = inner.get(q.as_str()).copied();
            }
            for pair in pairs.into_iter().flatten() {
                if let Some((node, seq)) = self.delivery.relayed.acked(pair, local) {
                    self.owe_ack(node, pair, seq);
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
        let addressed = [to.to_string(), format!("{}/{to}", self.config.node_name)];
        for addressed in addressed {
            let Some(pair) = self.delivery.known_pair(port, &addressed) else {
                continue;
            };
            if let Some((node, seq)) = self.delivery.relayed.failed(pair, local) {
                let from = self.sender_id(port);
                self.answer_failed(node, &from, &addressed, seq, reason, detail);
                return;
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
