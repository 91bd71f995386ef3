//! The publish/subscribe path: a port of this process's node (serving the bus) publishes to
//! a topic that [`SUBSCRIBERS`] machines in one peer process (`interstate bench-peer
//! pubsub`) subscribe to. Its throughput is **publications per second, each delivered to
//! every subscriber**: a run of `n` ends when every subscriber has all `n`. Its round trip is
//! a publication out and every subscriber's answer back.

use std::path::Path;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate::bus::{Node, PortMessage, Role};
use interstate::Behaviors;

use super::node::{node_config, NodeTransport};
use super::{ChildGuard, Peers, Session};

/// Subscribers of the benchmark's topic.
pub const SUBSCRIBERS: usize = 8;

const TOPIC: &str = "bench/data";

const SUBSCRIBER_CHART: &str = r#"{
  "id": "bench-sub",
  "subscribe": "bench/data",
  "initial": "on",
  "states": {
    "on": { "on": { "PING": { "actions": "pong" }, "DATA": { "actions": "count" }, "EXPECT": { "actions": "expect" }, "QUIT": "off" } },
    "off": { "type": "final" }
  }
}"#;

/// A publisher here, [`SUBSCRIBERS`] subscribers in a peer process.
pub struct PubSubSession {
    node: Node,
    payload: Vec<u8>,
    /// Where the port's answers are read into ([`Node::recv_port_into`] reuses its buffers).
    received: PortMessage,
    _peer: ChildGuard,
}

impl PubSubSession {
    /// Starts the path over `transport`; this process serves the bus.
    pub fn start(
        peers: &Peers,
        dir: &Path,
        transport: NodeTransport,
        payload: usize,
    ) -> Result<PubSubSession, String> {
        let bus = format!("bench-{}-pubsub", transport.spec());
        let dir_s = dir.to_str().unwrap_or_default().to_string();
        let mut node =
            Node::new(node_config(&bus, dir, Role::Hub, transport)?).map_err(|e| e.to_string())?;
        node.set_logger(|_| {});
        node.open_port("bench-pub").map_err(|e| e.to_string())?;
        let peer = peers.spawn(
            &[
                "bench-peer",
                "pubsub",
                &bus,
                &dir_s,
                &transport.spec(),
                &SUBSCRIBERS.to_string(),
            ],
            &[],
        )?;
        let subscribed = node
            .run_until(StdDuration::from_secs(10), |n| {
                n.subscribers(TOPIC).len() == SUBSCRIBERS
            })
            .map_err(|e| e.to_string())?;
        if !subscribed {
            return Err("the benchmark's subscribers did not subscribe".into());
        }
        Ok(PubSubSession {
            node,
            payload: vec![7u8; payload],
            received: PortMessage::default(),
            _peer: peer,
        })
    }

    /// Drives the loop until every subscriber has answered `event`.
    fn answers(&mut self, event: &str, limit: StdDuration) -> Result<(), String> {
        let deadline = StdInstant::now() + limit;
        let mut got = 0;
        loop {
            while self.node.recv_port_into(&mut self.received) {
                if self.received.event == event {
                    got += 1;
                }
            }
            if got == SUBSCRIBERS {
                return Ok(());
            }
            if StdInstant::now() > deadline {
                return Err(format!(
                    "{got} of {SUBSCRIBERS} subscribers answered {event}"
                ));
            }
            self.node
                .run_once(Some(StdDuration::from_millis(50)))
                .map_err(|e| e.to_string())?;
        }
    }

    fn publish(&mut self, event: &str, payload: &[u8]) -> Result<(), String> {
        self.node
            .publish_from_port("bench-pub", TOPIC, event, payload)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Drop for PubSubSession {
    fn drop(&mut self) {
        let _ = self.publish("QUIT", &[]);
        let _ = self.node.run_for(StdDuration::from_millis(20));
    }
}

impl Session for PubSubSession {
    fn round_trip(&mut self) -> Result<(), String> {
        let payload = std::mem::take(&mut self.payload);
        let r = self.publish("PING", &payload);
        self.payload = payload;
        r?;
        self.node.flush();
        self.answers("PONG", StdDuration::from_secs(10))
    }

    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let t = StdInstant::now();
        self.publish("EXPECT", n.to_string().as_bytes())?;
        let payload = std::mem::take(&mut self.payload);
        let mut sent = 0;
        while sent < n {
            for _ in 0..1024.min(n - sent) {
                if let Err(e) = self.publish("DATA", &payload) {
                    self.payload = payload;
                    return Err(e);
                }
                sent += 1;
            }
            self.node
                .run_once(Some(StdDuration::ZERO))
                .map_err(|e| e.to_string())?;
        }
        self.payload = payload;
        self.answers("DONE", StdDuration::from_secs(120))?;
        Ok(t.elapsed())
    }
}

/// The peer: `n` subscribing machines, each answering PING with PONG and, once it has the
/// number of DATA an EXPECT announced, sending DONE.
pub(super) fn pubsub_peer(bus: &str, dir: &str, transport: &str, n: usize) -> Result<(), String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let transport = NodeTransport::from_spec(transport)?;
    let mut node = Node::new(node_config(bus, Path::new(dir), Role::Client, transport)?)
        .map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    let ids: Vec<String> = (0..n).map(|i| format!("bench-sub-{i}")).collect();
    for id in &ids {
        let count = Rc::new(Cell::new(0usize));
        let expect = Rc::new(Cell::new(usize::MAX));
        let (c1, c2, e1, e2) = (count.clone(), count, expect.clone(), expect);
        let behaviors = Behaviors::new()
            .action("pong", |cx| {
                let _ = cx.send("bench-pub", "PONG", &[]);
            })
            .action("expect", move |cx| {
                e1.set(
                    std::str::from_utf8(cx.payload())
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                );
                c1.set(0);
            })
            .action("count", move |cx| {
                c2.set(c2.get() + 1);
                if c2.get() == e2.get() {
                    let _ = cx.send("bench-pub", "DONE", &[]);
                }
            });
        interstate::bus::add_json_machine(&mut node, id, SUBSCRIBER_CHART, behaviors)
            .map_err(|e| e.to_string())?;
    }
    let parent = std::os::unix::process::parent_id();
    let mut turns = 0u32;
    let stopped = node
        .run_until(StdDuration::from_secs(3600), |node| {
            turns = turns.wrapping_add(1);
            ids.iter()
                .all(|id| node.machine(id).is_none_or(|m| m.is_done()))
                || (turns % 4096 == 0 && std::os::unix::process::parent_id() != parent)
        })
        .map_err(|e| e.to_string())?;
    if stopped {
        Ok(())
    } else {
        Err("benchmark peer timed out".into())
    }
}
