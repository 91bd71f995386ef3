//! The paths over the bus: a port of this process's node sends, a machine in a peer process
//! (`interstate bench-peer node`) answers, directly or through a separate `interstate hub`
//! process; the peer's side is here too.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate::bus::{Node, NodeConfig, PortMessage, Role, Transport};
use interstate::Behaviors;

use super::peers::wait_for;
use super::{ChildGuard, Peers, Session, Wait};

/// The transport of a node in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTransport {
    /// Unix sockets.
    Unix,
    /// Named pipes.
    Fifo,
    /// Shared memory, waiting this way.
    Shm(Wait),
}

impl NodeTransport {
    pub(super) fn spec(self) -> String {
        match self {
            NodeTransport::Unix => "unix".into(),
            NodeTransport::Fifo => "fifo".into(),
            NodeTransport::Shm(w) => format!("shm-{}", w.name()),
        }
    }
    pub(super) fn from_spec(s: &str) -> Result<NodeTransport, String> {
        match s {
            "unix" => Ok(NodeTransport::Unix),
            "fifo" => Ok(NodeTransport::Fifo),
            _ => match s.strip_prefix("shm-") {
                Some(w) => Ok(NodeTransport::Shm(Wait::parse(w)?)),
                None => Err(format!("unknown node transport '{s}'")),
            },
        }
    }
    /// The node setting, or why this build cannot measure it.
    pub fn transport(self) -> Result<Transport, String> {
        match self {
            NodeTransport::Unix => Ok(Transport::UnixSocket),
            NodeTransport::Fifo => Ok(Transport::Fifo),
            NodeTransport::Shm(w) => Ok(Transport::SharedMemory {
                ring: interstate_platform::transport::shm::DEFAULT_RING,
                wait: w.strategy(),
            }),
        }
    }
    /// `INTERSTATE_TRANSPORT` for a separate hub process.
    fn env(self) -> &'static str {
        match self {
            NodeTransport::Unix => "unix",
            NodeTransport::Fifo => "fifo",
            NodeTransport::Shm(_) => "shm",
        }
    }
}

pub(super) const ECHO_CHART: &str = r#"{
  "id": "bench-echo",
  "initial": "on",
  "states": {
    "on": { "on": { "PING": { "actions": "pong" }, "DATA": { "actions": "count" }, "EXPECT": { "actions": "expect" }, "QUIT": { "target": "off", "actions": "quit" } } },
    "off": { "type": "final" }
  }
}"#;

pub(super) fn node_config(
    bus: &str,
    dir: &Path,
    role: Role,
    transport: NodeTransport,
) -> Result<NodeConfig, String> {
    let mut c = NodeConfig::new(bus);
    c.dir = dir.to_path_buf();
    c.role = role;
    c.link_queue = 4 << 20;
    c.reconnect_buffer = 8 << 20;
    c.transport = transport.transport()?;
    Ok(c)
}

/// Two machines in two processes on a bus: a port of this process's node sends, a machine in
/// a peer process (`exe bench-peer node ...`) answers.
pub struct NodeSession {
    node: Node,
    payload: Vec<u8>,
    /// Where the port's messages are read into.
    received: PortMessage,
    _peer: ChildGuard,
    _hub: Option<ChildGuard>,
}

impl NodeSession {
    /// Starts the path: `transport` on both nodes; through a separate hub process
    /// (`exe hub`) when `via_hub`, else this process serves the bus. `pair`: two clients in
    /// shared memory take a direct ring pair (set up through the hub, which then carries
    /// none of their messages); without it this node takes none and every message crosses
    /// the hub.
    pub fn start(
        peers: &Peers,
        dir: &Path,
        transport: NodeTransport,
        via_hub: bool,
        pair: bool,
        payload: usize,
    ) -> Result<NodeSession, String> {
        let bus = format!(
            "bench-{}-{}",
            transport.spec(),
            match (via_hub, pair) {
                (true, true) => "pair",
                (true, false) => "hub",
                (false, _) => "direct",
            }
        );
        let dir_s = dir.to_str().unwrap_or_default().to_string();
        let mut config = node_config(
            &bus,
            dir,
            if via_hub { Role::Client } else { Role::Hub },
            transport,
        )?;
        if !pair {
            config.direct_pairs = 0;
        }
        let hub = if via_hub {
            let g = peers.spawn(
                &["hub", "--bus", &bus],
                &[
                    ("INTERSTATE_DIR", &dir_s),
                    ("INTERSTATE_TRANSPORT", transport.env()),
                ],
            )?;
            let sock = interstate::bus::busdir::socket_path(dir, &bus);
            wait_for("the benchmark hub", || UnixStream::connect(&sock).is_ok())?;
            Some(g)
        } else {
            None
        };
        let mut node = Node::new(config).map_err(|e| e.to_string())?;
        node.set_logger(|_| {});
        node.open_port("bench-a").map_err(|e| e.to_string())?;
        let peer = peers.spawn(
            &["bench-peer", "node", &bus, &dir_s, &transport.spec()],
            &[],
        )?;
        let joined = node
            .run_until(StdDuration::from_secs(10), |n| {
                n.registry().contains("bench-echo")
            })
            .map_err(|e| e.to_string())?;
        if !joined {
            return Err("the benchmark peer did not join the bus".into());
        }
        Ok(NodeSession {
            node,
            payload: vec![7u8; payload],
            received: PortMessage::default(),
            _peer: peer,
            _hub: hub,
        })
    }
}

impl Drop for NodeSession {
    fn drop(&mut self) {
        let _ = self
            .node
            .send_from_port("bench-a", "bench-echo", "QUIT", &[]);
        let _ = self.node.run_for(StdDuration::from_millis(20));
        // Let the peer end by itself (its `QUIT`), so that a profiler watching it writes its
        // report; killed if it takes longer.
        self._peer.wait_exit(StdDuration::from_secs(2));
    }
}

impl Session for NodeSession {
    fn round_trip(&mut self) -> Result<(), String> {
        node_round_trip(&mut self.node, &self.payload, &mut self.received)
    }

    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let t = StdInstant::now();
        node_one_way_batch(&mut self.node, &self.payload, n)?;
        Ok(t.elapsed())
    }
}

/// One `PING` from port `bench-a` to `bench-echo` and its `PONG` back. `m`: where the port's
/// messages are read into (kept by the caller: [`Node::recv_port_into`] reuses its buffers).
pub(super) fn node_round_trip(
    node: &mut Node,
    payload: &[u8],
    m: &mut PortMessage,
) -> Result<(), String> {
    node.send_from_port("bench-a", "bench-echo", "PING", payload)
        .map_err(|e| e.to_string())?;
    node.flush();
    // The 10 s limit is checked every 16th loop turn (a turn waits at most 100 ms): reading
    // the clock twice a round trip was the benchmark loop's own cost in what it measures.
    let mut started = None;
    let mut turns = 0u32;
    loop {
        while node.recv_port_into(m) {
            if m.event == "PONG" {
                return Ok(());
            }
            if m.event == interstate_platform::node::DELIVERY_ERROR_EVENT {
                return Err(format!(
                    "a PING was not delivered: {}",
                    String::from_utf8_lossy(&m.payload)
                ));
            }
        }
        node.run_once(Some(StdDuration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        turns = turns.wrapping_add(1);
        if turns % 16 == 0
            && started.get_or_insert_with(StdInstant::now).elapsed() > StdDuration::from_secs(10)
        {
            return Err("no PONG within 10 s".into());
        }
    }
}

/// `EXPECT n`, `n` times `DATA` from port `bench-a` to `bench-echo`, and the echo's `DONE`
/// once it counted them all.
pub(super) fn node_one_way_batch(node: &mut Node, payload: &[u8], n: usize) -> Result<(), String> {
    let count = n.to_string().into_bytes();
    node.send_from_port("bench-a", "bench-echo", "EXPECT", &count)
        .map_err(|e| e.to_string())?;
    let mut sent = 0;
    while sent < n {
        for _ in 0..1024.min(n - sent) {
            node.send_from_port("bench-a", "bench-echo", "DATA", payload)
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
        node.run_once(Some(StdDuration::ZERO))
            .map_err(|e| e.to_string())?;
    }
    let deadline = StdInstant::now() + StdDuration::from_secs(120);
    loop {
        node.run_once(Some(StdDuration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        while let Some(m) = node.recv_port() {
            if m.event == "DONE" {
                return Ok(());
            }
            if m.event == interstate_platform::node::DELIVERY_ERROR_EVENT {
                return Err(format!(
                    "a message was not delivered: {}",
                    String::from_utf8_lossy(&m.payload)
                ));
            }
        }
        if StdInstant::now() > deadline {
            return Err("the peer did not confirm the throughput run within 120 s".into());
        }
    }
}

/// The echo's actions: `PING` answered with `PONG` to `bench-a`, `DATA` counted up to the
/// number `EXPECT` announced and then `DONE`, `QUIT` sets `quit`.
pub(super) fn echo_behaviors(quit: std::rc::Rc<std::cell::Cell<bool>>) -> Behaviors {
    use std::cell::Cell;
    use std::rc::Rc;
    let count = Rc::new(Cell::new(0usize));
    let expect = Rc::new(Cell::new(usize::MAX));
    let (c1, c2, e1, e2) = (count.clone(), count, expect.clone(), expect);
    Behaviors::new()
        .action("quit", move |_| quit.set(true))
        .action("pong", |cx| {
            let payload = cx.payload();
            let _ = cx.send("bench-a", "PONG", payload);
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
                let _ = cx.send("bench-a", "DONE", &[]);
            }
        })
}

pub(super) fn node_peer(bus: &str, dir: &str, transport: &str) -> Result<(), String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let transport = NodeTransport::from_spec(transport)?;
    let mut node = Node::new(node_config(bus, Path::new(dir), Role::Client, transport)?)
        .map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    let quit = Rc::new(Cell::new(false));
    let behaviors = echo_behaviors(quit.clone());
    interstate::bus::add_json_machine(&mut node, "bench-echo", ECHO_CHART, behaviors)
        .map_err(|e| e.to_string())?;
    // Stop when the machine is done (its `QUIT` action sets `quit`: looking the machine up
    // by name every loop turn was a sixth of this process's work per round trip, profiled)
    // or the benchmark process is gone (asking costs a system call, so only every 4096th
    // loop turn: a busy-spinning node turns its loop about once a microsecond).
    let parent = std::os::unix::process::parent_id();
    let mut turns = 0u32;
    let stopped = node
        .run_until(StdDuration::from_secs(3600), |_| {
            turns = turns.wrapping_add(1);
            quit.get() || (turns % 4096 == 0 && std::os::unix::process::parent_id() != parent)
        })
        .map_err(|e| e.to_string())?;
    if stopped {
        Ok(())
    } else {
        Err("benchmark peer timed out".into())
    }
}
