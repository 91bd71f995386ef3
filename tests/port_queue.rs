//! A port holds at most `NodeConfig::port_queue` unread messages from its own process
//! (issue 15: a machine hosted in the MQTT bridge's process sending faster than the broker
//! takes must not grow the bridge's port for the remote machine without bound). A machine's
//! messages beyond the bound wait in its outbox (backpressure, nothing lost, order kept) and
//! go once the port's reader takes some; a port's `send_from_port` to a full port is
//! refused (`PortQueueFull`), and so is a port's publication reaching one. A private bus,
//! the machine and the ports in the hub's own process.

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, PlatformError, Role};
use interstate::Behaviors;

/// Each TICK is forwarded, payload and all, to the port `reader`.
const FORWARDER: &str = r#"{"id":"forwarder","initial":"on","states":{
  "on":{"on":{"TICK":{"actions":{"type":"sendTo","to":"reader","event":"DATA","data":{"from":"event"}}}}}}}"#;

const BOUND: usize = 16;

fn hub(test: &str) -> (Node, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("interstate-portq-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new("portq");
    c.dir = dir.clone();
    c.role = Role::Hub;
    c.transport = interstate::bus::Transport::UnixSocket;
    c.port_queue = BOUND;
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});
    (n, dir)
}

/// Runs the loop until `done` (20 s at most: a limit for a broken build, not a timing).
fn drive(n: &mut Node, mut done: impl FnMut(&mut Node) -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !done(n) {
        assert!(Instant::now() < end, "never done: {:?}", n.stats());
        n.run_once(Some(Duration::from_millis(2))).unwrap();
    }
}

#[test]
fn a_machine_flooding_a_port_waits_at_the_bound_and_loses_nothing() {
    let (mut n, dir) = hub("machine");
    add_json_machine(&mut n, "forwarder", FORWARDER, Behaviors::new()).unwrap();
    n.open_port("reader").unwrap();
    drive(&mut n, |n| n.registry().contains("forwarder"));

    // 60 messages while nobody reads: 16 in the port, the rest in the machine's outbox
    // (64 messages), the machine still running.
    let total = 60;
    for i in 0..total {
        n.send_local("forwarder", "TICK", format!("{i}").as_bytes())
            .unwrap_or_else(|e| panic!("tick {i}: {e}"));
        n.run_once(Some(Duration::ZERO)).unwrap();
        assert!(
            n.port_pending("reader") <= BOUND,
            "{}",
            n.port_pending("reader")
        );
    }
    assert_eq!(n.port_pending("reader"), BOUND);

    // Reading makes room: every message arrives, once, in order (the loop does not sleep
    // on a message waiting for room: reading wakes it).
    let mut got = Vec::new();
    drive(&mut n, |n| {
        while let Some(m) = n.recv_port() {
            assert_eq!(m.event, "DATA", "{m:?}");
            got.push(
                String::from_utf8(m.payload)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
            );
        }
        assert!(n.port_pending("reader") <= BOUND);
        got.len() == total
    });
    assert_eq!(got, (0..total).collect::<Vec<_>>());
    assert!(n.stopped_here("forwarder").is_none(), "the machine runs on");
    drop(n);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_sending_to_a_full_port_is_refused_until_it_is_read() {
    let (mut n, dir) = hub("port");
    n.open_port("writer").unwrap();
    n.open_port("reader").unwrap();
    drive(&mut n, |n| n.registry().contains("reader"));
    for i in 0..BOUND {
        n.send_from_port("writer", "reader", "DATA", format!("{i}").as_bytes())
            .unwrap();
    }
    match n.send_from_port("writer", "reader", "DATA", b"over") {
        Err(e @ PlatformError::PortQueueFull { .. }) => {
            let text = e.to_string();
            assert!(text.contains("'reader'") && text.contains("16"), "{text}");
        }
        other => panic!("expected PortQueueFull, got {other:?}"),
    }
    // A publication from a port reaching the full port is refused the same way.
    n.subscribe("reader", "news").unwrap();
    drive(&mut n, |n| n.subscriptions_synced());
    assert!(matches!(
        n.publish_from_port("writer", "news", "NEWS", b""),
        Err(PlatformError::PortQueueFull { .. })
    ));
    assert_eq!(n.port_pending("reader"), BOUND);
    let first = n.recv_port_unacknowledged("reader").unwrap();
    assert_eq!(first.payload, b"0");
    n.send_from_port("writer", "reader", "DATA", b"16").unwrap();
    let mut rest = Vec::new();
    while let Some(m) = n.recv_port_unacknowledged("reader") {
        rest.push(String::from_utf8(m.payload).unwrap());
    }
    let expected: Vec<String> = (1..=BOUND).map(|i| i.to_string()).collect();
    assert_eq!(rest, expected, "nothing lost, in order");
    drop(n);
    let _ = std::fs::remove_dir_all(&dir);
}
