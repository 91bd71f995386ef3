//! The `hosted` path of `interstate bench --transport mqtt`: the machines hosted in the
//! bridges' own nodes. This process runs a bridge ([`MqttBridge`], node `bench-node-c` on
//! bus C) whose node has the port `bench-a`; the peer (`interstate bench-peer mqtt-hosted`)
//! runs a bridge (node `bench-node-d` on bus D) whose node hosts the echo machine. A
//! message crosses this process, the broker and the peer, and back: the same processes as
//! the raw ping-pong. Each bus has its hub (in the registry, as any bus), off the path.
//!
//! The two bridges use their own topic prefix, so that the ids `bench-a` and `bench-echo`
//! do not meet the ones of the `internode` path.

use std::path::Path;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate::bus::{Node, Role};
use interstate_platform::mqtt::{parse_mqtt_url, MqttBridge, MqttBridgeConfig};
use interstate_platform::node::DELIVERY_ERROR_EVENT;

use super::mqtt::{start_hub, BATCH};
use super::node::{echo_behaviors, node_config, NodeTransport, ECHO_CHART};
use super::{ChildGuard, Peers, Session};

/// A bridge on bus `bus` (directory `dir`) as node `node` under topic prefix `prefix`, its
/// node a client of the bus's hub.
fn bridge(
    url: &str,
    prefix: &str,
    bus: &str,
    dir: &Path,
    node: &str,
) -> Result<MqttBridge, String> {
    let mut n = Node::new(node_config(bus, dir, Role::Client, NodeTransport::Unix)?)
        .map_err(|e| e.to_string())?;
    n.set_logger(|_| {});
    let mut config = MqttBridgeConfig::new(parse_mqtt_url(url).map_err(|e| e.to_string())?, node);
    config.prefix = prefix.into();
    let mut b = MqttBridge::new(n, config).map_err(|e| e.to_string())?;
    b.set_logger(|_| {});
    Ok(b)
}

/// This process's side: the bridge whose node has the port `bench-a`.
pub(super) struct HostedSession {
    bridge: MqttBridge,
    pub(super) payload: Vec<u8>,
    _processes: Vec<ChildGuard>,
}

/// Starts the hubs of buses C and D, the peer, and this process's bridge; returns once the
/// echo is on bus C. `tag` makes the directories and the topic prefix this session's own:
/// a session is started for each measurement and dropped after it, since a bridge not
/// driven while the other paths are measured would miss its keepalive and be declared
/// down by the broker.
pub(super) fn start(
    peers: &Peers,
    root: &Path,
    url: &str,
    tag: &str,
) -> Result<HostedSession, String> {
    let (dir_c, dir_d) = (
        root.join(format!("bus-c-{tag}")),
        root.join(format!("bus-d-{tag}")),
    );
    let prefix = format!("bench-hosted-{tag}");
    for d in [&dir_c, &dir_d] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut processes = vec![
        start_hub(peers, &dir_c, "bench-c")?,
        start_hub(peers, &dir_d, "bench-d")?,
    ];
    let sd = dir_d.to_str().unwrap_or_default();
    processes.push(peers.spawn(
        &["bench-peer", "mqtt-hosted", url, &prefix, "bench-d", sd],
        &[],
    )?);
    let mut bridge = bridge(url, &prefix, "bench-c", &dir_c, "bench-node-c")?;
    bridge
        .node()
        .open_port("bench-a")
        .map_err(|e| e.to_string())?;
    let end = StdInstant::now() + StdDuration::from_secs(20);
    while !bridge.node().registry().contains("bench-echo") {
        if StdInstant::now() > end {
            return Err(
                "the echo hosted in the peer's bridge did not appear on bus C within 20 s".into(),
            );
        }
        bridge
            .run_once(Some(StdDuration::from_millis(20)))
            .map_err(|e| e.to_string())?;
    }
    Ok(HostedSession {
        bridge,
        payload: Vec::new(),
        _processes: processes,
    })
}

impl HostedSession {
    /// Runs the bridge until `bench-a` receives `event`.
    fn wait_for(&mut self, event: &str, limit: StdDuration) -> Result<(), String> {
        let deadline = StdInstant::now() + limit;
        loop {
            self.bridge
                .run_once(Some(StdDuration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            while let Some(m) = self.bridge.node().recv_port_unacknowledged("bench-a") {
                if m.event == event {
                    return Ok(());
                }
                if m.event == DELIVERY_ERROR_EVENT {
                    return Err(format!(
                        "a message was not delivered: {}",
                        String::from_utf8_lossy(&m.payload)
                    ));
                }
            }
            if StdInstant::now() > deadline {
                return Err(format!("no {event} within {} s", limit.as_secs()));
            }
        }
    }

    fn send(&mut self, event: &str, payload: &[u8]) -> Result<(), String> {
        self.bridge
            .node()
            .send_from_port("bench-a", "bench-echo", event, payload)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Session for HostedSession {
    fn round_trip(&mut self) -> Result<(), String> {
        let payload = std::mem::take(&mut self.payload);
        let sent = self.send("PING", &payload);
        self.payload = payload;
        sent?;
        // Publishes it now (the port is in this process: no loop turn needed to reach it).
        self.bridge.pump().map_err(|e| e.to_string())?;
        self.wait_for("PONG", StdDuration::from_secs(10))
    }

    fn one_way(&mut self, n: usize) -> Result<StdDuration, String> {
        let t = StdInstant::now();
        let payload = std::mem::take(&mut self.payload);
        let mut left = n;
        let result = (|| {
            while left > 0 {
                let batch = left.min(BATCH);
                self.send("EXPECT", batch.to_string().as_bytes())?;
                let mut sent = 0;
                while sent < batch {
                    for _ in 0..256.min(batch - sent) {
                        self.send("DATA", &payload)?;
                        sent += 1;
                    }
                    self.bridge
                        .run_once(Some(StdDuration::ZERO))
                        .map_err(|e| e.to_string())?;
                }
                self.bridge.pump().map_err(|e| e.to_string())?;
                self.wait_for("DONE", StdDuration::from_secs(120))?;
                left -= batch;
            }
            Ok(())
        })();
        self.payload = payload;
        result.map(|()| t.elapsed())
    }
}

impl Drop for HostedSession {
    fn drop(&mut self) {
        let _ = self.send("QUIT", &[]);
        let _ = self.bridge.run_for(StdDuration::from_millis(100));
        self.bridge.shutdown();
    }
}

/// The peer (`interstate bench-peer mqtt-hosted URL PREFIX BUS DIR`): a bridge whose node
/// hosts the echo machine; runs until the echo is told `QUIT` or the benchmark process is
/// gone.
pub(super) fn hosted_peer(url: &str, prefix: &str, bus: &str, dir: &str) -> Result<(), String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut bridge = bridge(url, prefix, bus, Path::new(dir), "bench-node-d")?;
    let quit = Rc::new(Cell::new(false));
    interstate::bus::add_json_machine(
        bridge.node(),
        "bench-echo",
        ECHO_CHART,
        echo_behaviors(quit.clone()),
    )
    .map_err(|e| e.to_string())?;
    let parent = std::os::unix::process::parent_id();
    let end = StdInstant::now() + StdDuration::from_secs(3600);
    let mut turns = 0u32;
    while !quit.get() && StdInstant::now() < end {
        bridge
            .run_once(Some(StdDuration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        turns = turns.wrapping_add(1);
        if turns % 1024 == 0 && std::os::unix::process::parent_id() != parent {
            break;
        }
    }
    bridge.shutdown();
    Ok(())
}
