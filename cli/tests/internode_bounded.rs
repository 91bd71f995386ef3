//! Issue 15, bounded memory for a sender hosted in the bridge's process: a port of the
//! bridge's own node (this test process runs bridge A as a library, `MqttBridge`) floods a
//! machine of bus B while the broker is frozen (SIGSTOP). The bridge's port for the remote
//! machine holds at most `NodeConfig::port_queue` messages, the bridge at most
//! `mqtt::AWAITING` unanswered; beyond that `send_from_port` is refused (`PortQueueFull`),
//! so what the sender got accepted is bounded however long it tries. Once the broker runs
//! again, every accepted message is delivered exactly once and in order, or reported failed
//! to the port; none is lost silently.
//!
//! Needs `/usr/sbin/mosquitto` (`scripts/test.sh` installs it).

mod support;

use std::time::{Duration, Instant};

use interstate::bus::{Node, NodeConfig, PlatformError, Role, Transport, DELIVERY_ERROR_EVENT};
use interstate_cli::mosquitto::Mosquitto;
use interstate_platform::mqtt::{parse_mqtt_url, MqttBridge, MqttBridgeConfig, AWAITING};
use serde_json::Value;
use support::*;

const PORT_QUEUE: usize = 256;

#[test]
fn a_sender_hosted_in_the_bridge_flooding_a_frozen_broker_stays_bounded_and_loses_nothing() {
    let broker_dir = std::env::temp_dir().join(format!("istr-mqtt-{}-bounded", std::process::id()));
    let broker = Mosquitto::start(&broker_dir, "").unwrap_or_else(|e| panic!("{e}"));
    let url = broker.url(false);
    let mut a = Bus::new("inode-bounded-a");
    let mut b = Bus::new("inode-bounded-b");
    a.start_hub();
    b.start_hub();
    let bridge_b = b.interstate(
        "bridge host-b",
        &["bridge", "--mqtt", &url, "--node", "host-b"],
    );
    b.wait_line(bridge_b, true, "B's connection", STEP_LIMIT, |l| {
        l.contains("connected to the broker")
    });
    let worker = b.start_sink("worker", &["--timeout-ms", "300000"]);

    // Bridge A in this process, its node a client of bus A's hub, with the port `flood`.
    let mut config = NodeConfig::new(&a.name);
    config.dir = a.dir.clone();
    config.role = Role::Client;
    config.transport = Transport::UnixSocket;
    config.port_queue = PORT_QUEUE;
    let mut node = Node::new(config).unwrap();
    node.set_logger(|_| {});
    let bridge_config = MqttBridgeConfig::new(parse_mqtt_url(&url).unwrap(), "host-a");
    let mut bridge = MqttBridge::new(node, bridge_config).unwrap();
    bridge.set_logger(|_| {});
    bridge.node().open_port("flood").unwrap();
    let end = Instant::now() + STEP_LIMIT;
    while !bridge.node().registry().contains("worker") {
        assert!(
            Instant::now() < end,
            "worker never reached bus A{}",
            b.dump()
        );
        bridge.run_once(Some(Duration::from_millis(20))).unwrap();
    }

    // The broker frozen: nothing the bridge publishes is acknowledged.
    let pid = rustix::process::Pid::from_raw(broker.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let attempts = 20_000;
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut max_port = 0;
    for i in 0..attempts {
        match bridge.node().send_from_port(
            "flood",
            "worker",
            "DATA",
            format!("{{\"n\":{i}}}").as_bytes(),
        ) {
            Ok(_) => accepted += 1,
            Err(PlatformError::PortQueueFull { .. }) => refused += 1,
            Err(e) => panic!("send {i}: {e}"),
        }
        if i % 64 == 0 {
            bridge.run_once(Some(Duration::ZERO)).unwrap();
        }
        max_port = max_port.max(bridge.node().port_pending("worker"));
    }
    assert!(max_port <= PORT_QUEUE, "the port held {max_port}");
    assert!(
        bridge.unanswered() <= AWAITING,
        "the bridge held {}",
        bridge.unanswered()
    );
    assert!(refused > 0, "the sender was held back: {accepted} accepted");
    assert!(
        accepted as usize <= PORT_QUEUE + AWAITING,
        "accepted {accepted} of {attempts}: bounded by the port and the bridge"
    );
    eprintln!(
        "frozen broker: {accepted} accepted, {refused} refused; port {max_port}, unanswered {}",
        bridge.unanswered()
    );

    // The broker runs again: everything accepted is answered.
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let mut failed = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        bridge.run_once(Some(Duration::from_millis(20))).unwrap();
        while let Some(m) = bridge.node().recv_port_unacknowledged("flood") {
            assert_eq!(m.event, DELIVERY_ERROR_EVENT, "{m:?}");
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            failed.push(v);
        }
        if bridge.unanswered() == 0 && bridge.node().port_pending("worker") == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "still {} unanswered{}",
            bridge.unanswered(),
            b.dump()
        );
    }
    b.term(worker);
    let tally = b.wait_json(worker, "the worker's tally", STEP_LIMIT, |v| {
        v.get("distinct").is_some()
    });
    let distinct = u(&tally, "distinct");
    assert_eq!(tally["bad_payload"], 0, "{tally}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    assert_eq!(
        distinct + failed.len() as u64,
        accepted,
        "every accepted message delivered or reported failed: {tally} {failed:?}"
    );
    eprintln!("delivered {distinct}, reported failed {}", failed.len());
    bridge.shutdown();
    drop(broker);
    let _ = std::fs::remove_dir_all(&broker_dir);
}
