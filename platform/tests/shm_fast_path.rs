//! The event loop's fast path for shared memory (a turn whose spin found input skips the
//! readiness scan and looks at timers only when the earliest is due) under a stream that
//! never lets a busy-spinning node's spin come back empty: a machine's timer still fires,
//! its send gets out, and every streamed message arrives, in order, once. Two nodes in one
//! test process (the hub on a thread of its own), a private bus directory, no timing goals.

use std::time::Duration;

use interstate_core::{image, Machine, NoBehavior};
use interstate_platform::node::Transport;
use interstate_platform::transport::shm::{WaitStrategy, DEFAULT_RING};
use interstate_platform::{Node, NodeConfig, Role};

/// The `lamp` chart (`no_std_core/check/lamp.json`): TOGGLE sends `LAMP_ON` to
/// `controller`, and its timer `LAMP_OFF` 300 ms later.
static LAMP: &[u8] = include_bytes!("../../no_std_core/check/lamp.isch");

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("shm-fast-path");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = Transport::SharedMemory {
        ring: DEFAULT_RING,
        wait: WaitStrategy::BusySpin,
    };
    c
}

#[test]
fn a_timer_fires_while_a_stream_keeps_the_ring_busy() {
    let dir = std::env::temp_dir().join(format!("interstate-shm-fast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let hub_dir = dir.clone();
    let hub_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub_done_set = hub_done.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.open_port("controller").unwrap();
        ready_tx.send(()).unwrap();
        let limit = std::time::Instant::now() + Duration::from_secs(20);
        while !(hub.is_registered("lamp") && hub.is_registered("sink")) {
            assert!(std::time::Instant::now() < limit, "the client did not join");
            hub.run_once(Some(Duration::from_millis(10))).unwrap();
        }
        hub.send_from_port("controller", "lamp", "TOGGLE", &[])
            .unwrap();
        // Stream to the client's port until the lamp's timer has sent LAMP_OFF: a loop that
        // skipped timers while input kept coming would never let it out.
        let mut events = Vec::new();
        let mut sent = 0u64;
        while !events.iter().any(|e| e == "LAMP_OFF") {
            assert!(
                std::time::Instant::now() < limit,
                "no LAMP_OFF within 20 s: {events:?}"
            );
            if hub.unacknowledged() < 256 {
                for _ in 0..32 {
                    hub.send_from_port("controller", "sink", "DATA", &sent.to_le_bytes())
                        .unwrap();
                    sent += 1;
                }
            }
            hub.run_once(Some(Duration::ZERO)).unwrap();
            while let Some(m) = hub.recv_port() {
                events.push(m.event);
            }
        }
        assert_eq!(events, ["LAMP_ON", "LAMP_OFF"]);
        hub.send_from_port("controller", "sink", "STOP", &[])
            .unwrap();
        sent_tx.send(sent).unwrap();
        assert!(hub
            .run_until(Duration::from_secs(20), |n| n.unacknowledged() == 0)
            .unwrap());
        hub_done_set.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    ready_rx.recv().unwrap();
    let mut client = Node::new(config(&dir, Role::Client)).unwrap();
    let chart = image::decode(LAMP).unwrap();
    let lamp: Machine<'static> = Machine::new(chart, "lamp").unwrap();
    client
        .add_sized_machine(Box::new(lamp), Box::new(NoBehavior))
        .unwrap();
    client.open_port("sink").unwrap();
    let mut next = 0u64;
    let mut stopped = false;
    assert!(client
        .run_until(Duration::from_secs(30), |n| {
            while let Some(m) = n.recv_port() {
                match m.event.as_str() {
                    "DATA" => {
                        assert_eq!(m.payload, next.to_le_bytes(), "in order, once");
                        next += 1;
                    }
                    "STOP" => stopped = true,
                    other => panic!("unexpected {other}"),
                }
            }
            stopped
        })
        .unwrap());
    let sent = sent_rx.recv().unwrap();
    assert_eq!(next, sent, "every streamed message arrived");
    // Until the hub has its acknowledgements (and has its own).
    assert!(client
        .run_until(Duration::from_secs(20), |_| {
            hub_done.load(std::sync::atomic::Ordering::SeqCst)
        })
        .unwrap());
    assert_eq!(client.unacknowledged(), 0);
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
