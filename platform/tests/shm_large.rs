//! Large payloads over shared memory: a 64 KiB payload crosses from a port in one node to a
//! port in another and back, intact, with the frame bound raised to hold it (the default,
//! 64 KiB of frame body, leaves no room for the message's names beside a 64 KiB payload).
//! Two nodes in one test process (the hub on a thread of its own), a private bus directory.

use std::time::Duration;

use interstate_platform::node::Transport;
use interstate_platform::transport::shm::{WaitStrategy, DEFAULT_RING};
use interstate_platform::{Node, NodeConfig, Role};

mod support;
use support::drive;

/// 64 KiB of payload plus room for the names, the sequence number and the frame's fields.
const MAX_FRAME: u32 = 64 * 1024 + 1024;

fn config(dir: &std::path::Path, role: Role, wait: WaitStrategy) -> NodeConfig {
    let transport = Transport::SharedMemory {
        ring: DEFAULT_RING,
        wait,
    };
    let mut c = support::config("shm-large", dir, role, transport);
    c.max_frame = MAX_FRAME;
    c
}

fn payload(seed: u8) -> Vec<u8> {
    (0..64 * 1024)
        .map(|i: usize| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn round_trips(tag: &str, wait: WaitStrategy) {
    let dir =
        std::env::temp_dir().join(format!("interstate-shm-large-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let hub_dir = dir.clone();
    let hub_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub_done_set = hub_done.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub, wait)).unwrap();
        hub.open_port("echo").unwrap();
        ready_tx.send(()).unwrap();
        let mut answered = 0;
        // Echoes each payload back, reversed, so that the answer is not the question.
        assert!(drive(&mut hub, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == "BIG" {
                    let mut back = m.payload.clone();
                    back.reverse();
                    n.send_from_port("echo", "src", "BACK", &back).unwrap();
                    answered += 1;
                }
            }
            answered == 3 && n.unacknowledged() == 0
        }));
        hub_done_set.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    ready_rx.recv().unwrap();
    let mut client = Node::new(config(&dir, Role::Client, wait)).unwrap();
    client.open_port("src").unwrap();
    assert!(drive(&mut client, |n| n.registry().contains("echo")));
    for seed in 0..3u8 {
        let sent = payload(seed);
        client.send_from_port("src", "echo", "BIG", &sent).unwrap();
        let mut got = None;
        assert!(drive(&mut client, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == "BACK" {
                    got = Some(m.payload);
                }
            }
            got.is_some()
        }));
        let mut got = got.unwrap();
        got.reverse();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "payload {seed} came back changed");
    }
    // Driven until the hub has the acknowledgements of what it sent.
    assert!(drive(&mut client, |n| n.unacknowledged() == 0
        && hub_done.load(std::sync::atomic::Ordering::SeqCst)));
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_64_kib_payload_crosses_shared_memory_and_back_intact_parked() {
    round_trips("park", WaitStrategy::Park);
}

#[test]
fn a_64_kib_payload_crosses_shared_memory_and_back_intact_spinning() {
    round_trips(
        "spin",
        WaitStrategy::SpinThenPark(Duration::from_micros(50)),
    );
}
