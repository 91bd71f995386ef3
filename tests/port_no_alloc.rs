//! A port's steady traffic allocates nothing in its process when the program reads it with
//! `Node::recv_port_into` (one `PortMessage` kept and refilled): the port of the node that
//! serves the bus sends `PING` to a machine in another node, which answers `PONG`; the
//! port's side sends, routes, receives and reads with no allocation, over a Unix socket and
//! over shared memory. A counting global allocator proves it.
//!
//! One test in this file only: the allocator counts every thread while armed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, PortMessage, Role, Transport};
use interstate::Behaviors;

#[path = "support/counting_alloc_process.rs"]
mod counting_alloc_process;
use counting_alloc_process::{ALLOCATIONS, ARMED};

const ECHO: &str = r#"{"id":"echo","initial":"on","states":{"on":{"on":{"PING":{"actions":"pong"},"STOP":"off"}},"off":{"type":"final"}}}"#;

fn config(dir: &std::path::Path, role: Role, transport: Transport) -> NodeConfig {
    let mut c = NodeConfig::new("portnoalloc");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = transport;
    c
}

#[test]
fn a_ports_steady_traffic_read_into_one_message_allocates_nothing() {
    port_steady_state(Transport::UnixSocket);
    port_steady_state(Transport::SHARED_MEMORY);
}

fn port_steady_state(transport: Transport) {
    let shm = matches!(transport, Transport::SharedMemory { .. });
    let dir = std::env::temp_dir().join(format!(
        "interstate-port-noalloc-{}-{shm}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let stop = Arc::new(AtomicBool::new(false));

    let mut node = Node::new(config(&dir, Role::Hub, transport)).expect("serve the bus");
    node.set_logger(|_| {});
    node.open_port("port").expect("open the port");

    let (d2, stop2) = (dir.clone(), stop.clone());
    let echo = std::thread::spawn(move || {
        let mut node = Node::new(config(&d2, Role::Client, transport)).expect("join the bus");
        node.set_logger(|_| {});
        let behaviors = Behaviors::new().action("pong", |cx| {
            let payload = cx.payload();
            cx.reply("PONG", payload).expect("a sender to answer");
        });
        add_json_machine(&mut node, "echo", ECHO, behaviors).expect("add the echo");
        while !stop2.load(Ordering::Relaxed) {
            node.run_once(Some(Duration::from_millis(10))).unwrap();
        }
    });
    assert!(
        node.run_until(Duration::from_secs(10), |n| n.registry().contains("echo"))
            .unwrap(),
        "the echo did not join"
    );

    let mut m = PortMessage::default();
    let mut round_trip = |node: &mut Node| {
        node.send_from_port("port", "echo", "PING", b"0123456789abcdef")
            .expect("room to send");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            node.run_once(Some(Duration::from_millis(10))).unwrap();
            if node.recv_port_into(&mut m) {
                assert_eq!(
                    (m.port.as_str(), m.from.as_str(), m.event.as_str()),
                    ("port", "echo", "PONG")
                );
                assert_eq!(m.payload, b"0123456789abcdef");
                assert!(m.seq > 0, "a message from another process is numbered");
                return;
            }
            assert!(Instant::now() < deadline, "no PONG within 10 s");
        }
    };
    // Warm-up: the connection, the registrations, the first entries of every map and the
    // spare message's buffers.
    for _ in 0..500 {
        round_trip(&mut node);
    }
    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..2_000 {
        round_trip(&mut node);
    }
    ARMED.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.swap(0, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    echo.join().unwrap();
    let stats = node.stats();
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);

    assert!(stats.received >= 2_500, "{stats:?}");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations during 2 000 round trips from a port read with \
         recv_port_into (shared memory: {shm})"
    );
}
