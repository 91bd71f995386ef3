//! Which nodes are there, through the bridge (the rules are the core's
//! [`interstate_core::mqtt::presence`]): this node's run and connection, published in its
//! status and its will; the other nodes' statuses, read so that a broker restart (which
//! publishes every bridge's will) is not taken for the nodes leaving.
//!
//! - another node's will starts its **grace** ([`MqttBridgeConfig::node_grace`]): its
//!   machines stay on this bus, what waits for its answer keeps waiting, new messages for it
//!   wait in the bridge; back in the same run, nothing has failed;
//! - a node back in **a new run** (restarted, away for more than half the grace, or its
//!   session lost by the broker) drops what was sent to its earlier run: what waited for
//!   its answer fails (`node-unreachable`);
//! - the grace passing, or a clean stop, takes the node **down**: what waits fails, its
//!   machines leave this bus (watchers see `xstate.machine.down`).

use std::time::Duration as StdDuration;

use interstate_core::mqtt::presence::{self as rules, Change, Presence};
use interstate_core::Duration;

use super::delivery::NodeId;
use super::{MqttBridge, MqttBridgeConfig};

/// [`MqttBridgeConfig::node_grace`]'s default, in milliseconds: longer than a broker
/// restart and the longest wait between reconnection attempts (5 s), so that the nodes of
/// a restarted broker come back within it, and within half of it, in the same run.
pub const DEFAULT_NODE_GRACE_MS: u64 = 12_000;

/// The most nodes a bridge follows.
const NODES: usize = 1024;

/// The wall clock in milliseconds (a run's or a connection's number: above every earlier
/// one of the node, even across its restarts).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn core_duration(d: StdDuration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// This node's run and connection, and the other nodes as it sees them.
pub(super) struct Presences {
    others: Box<Presence<NodeId, NODES>>,
    run: u64,
    connection: u64,
    /// A CONNACK came in this process already (the next one may resume its run).
    connected_before: bool,
    /// When the broker was last heard from (a packet, its closing the connection).
    last_heard: std::time::Instant,
    grace: StdDuration,
}

impl Presences {
    pub(super) fn new(config: &MqttBridgeConfig) -> Self {
        Presences {
            others: Box::new(Presence::new(core_duration(config.node_grace))),
            run: wall_ms(),
            connection: 0,
            connected_before: false,
            last_heard: std::time::Instant::now(),
            grace: config.node_grace,
        }
    }

    /// A new connection's number, and the will it registers.
    pub(super) fn next_connection(&mut self) -> heapless::String<32> {
        self.connection = wall_ms().max(self.connection + 1);
        rules::status_lost(self.connection)
    }

    /// The status this connection publishes.
    pub(super) fn status_up(&self) -> heapless::String<48> {
        rules::status_up(self.run, self.connection)
    }

    /// The broker was heard from now.
    pub(super) fn heard(&mut self) {
        self.last_heard = std::time::Instant::now();
    }

    /// This node's run: messages stamped with another are refused.
    pub(super) fn run(&self) -> u64 {
        self.run
    }
}

impl MqttBridge {
    /// The broker accepted a connection: this node goes on with its run, or starts a new one
    /// (see [`rules::resumes_run`]). Without its session, the answers other nodes sent it
    /// meanwhile are gone: what waits for them fails.
    pub(super) fn connected_run(&mut self, session_present: bool) {
        let p = &mut self.presence;
        let first = !p.connected_before;
        let away = p.last_heard.elapsed();
        p.connected_before = true;
        if rules::resumes_run(
            first,
            session_present,
            core_duration(away),
            core_duration(p.grace),
        ) || first
        {
            return;
        }
        p.run = wall_ms().max(p.run + 1);
        let why = if session_present {
            format!(
                "it was away for {} ms, more than half of --node-grace-ms ({} ms): other nodes may have given up on what they sent it",
                away.as_millis(),
                p.grace.as_millis()
            )
        } else {
            "the broker had no session for it: what was queued for it is gone".to_string()
        };
        self.log(&format!(
            "this node starts a new run: {why}; messages sent to its earlier run are refused"
        ));
        if !session_present {
            let nodes = self.delivery.node_names();
            for node in nodes {
                self.node_unreachable(
                    &node,
                    "the broker lost this node's session, and with it the answers queued for it",
                );
            }
        }
    }

    /// Another node's status arrived.
    pub(super) fn node_status(&mut self, node: &str, payload: &[u8]) {
        let Some(status) = rules::parse_status(payload) else {
            self.log(&format!("ignored a malformed status of node '{node}'"));
            return;
        };
        let id = self.delivery.node(node, &self.config.prefix);
        let now = self.node.now();
        let Ok(change) = self.presence.others.status(id, status, now) else {
            self.log(&format!(
                "ignored node '{node}': this bridge follows {NODES} nodes at most"
            ));
            return;
        };
        match change {
            Change::Nothing => {}
            Change::Up { .. } | Change::NewRun => {
                let run = self.presence.others.run_of(id).unwrap_or(0);
                let back = self.down.remove(node) || matches!(change, Change::Up { back: true });
                if back || !self.delivery.incarnations.contains_key(node) {
                    self.log(&format!("node '{node}' is up"));
                }
                self.delivery.fresh.insert(node.to_string());
                self.delivery.incarnations.insert(node.to_string(), run);
                if change == Change::NewRun {
                    // It drops what was sent to its earlier run.
                    let why = format!("node '{node}' started a new run before answering");
                    self.node_unreachable(node, &why);
                }
            }
            Change::Absent => {
                self.delivery.fresh.remove(node);
                self.log(&format!(
                    "node '{node}' lost its connection to the broker: waiting up to {} ms for it to come back",
                    self.presence.grace.as_millis()
                ));
            }
            Change::Down => self.node_gone(node, &format!("node '{node}' went down")),
        }
        self.settle_node(node);
    }

    /// The absent nodes whose grace passed are down.
    pub(super) fn expire_absent(&mut self) {
        let now = self.node.now();
        while let Some(id) = self.presence.others.expired(now) {
            let node = self.delivery.node_name(id).to_string();
            if node.is_empty() {
                continue;
            }
            let why = format!(
                "node '{node}' did not come back within {} ms",
                self.presence.grace.as_millis()
            );
            self.node_gone(&node, &why);
            self.settle_node(&node);
        }
    }

    /// Node `node` is down: what waits for it fails (before its machines' ports close: the
    /// reports go from them), and its claims stop counting.
    fn node_gone(&mut self, node: &str, why: &str) {
        if self.down.insert(node.to_string()) {
            self.log(&format!("node '{node}' is down"));
        }
        self.delivery.incarnations.remove(node);
        self.delivery.fresh.remove(node);
        self.node_unreachable(node, why);
    }

    /// Gives each machine id `node` claims to the node that keeps it now.
    fn settle_node(&mut self, node: &str) {
        let ids: Vec<String> = self
            .claims
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.settle_owner(&id);
            self.settle_alias(node, &id);
        }
    }
}
