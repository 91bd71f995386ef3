//! How many times a node copies a message's payload on its way to another process: into the
//! outstanding buffer, where it is encoded once, and onto the link: the write queue of a
//! socket, or straight into the ring on shared memory. Two nodes in one test process (the hub
//! on a thread of its own), a private bus directory, over a Unix socket and over shared
//! memory; each sends the other messages from a port and counts its copies in
//! `NodeStats::payload_copies`.

use interstate_platform::node::Transport;
use interstate_platform::transport::shm::{WaitStrategy, DEFAULT_RING};
use interstate_platform::{Node, NodeConfig, Role};

mod support;
use support::drive;

const N: u64 = 500;

fn config(dir: &std::path::Path, role: Role, transport: &Transport) -> NodeConfig {
    support::config("copies", dir, role, *transport)
}

#[test]
fn a_message_to_another_process_is_copied_twice_by_its_sender() {
    copied_twice_by_each_sender("unix", Transport::UnixSocket);
}

/// On shared memory the second copy is the one into the ring (`Conn::queue_body` stages it
/// there: no write queue between), and the receiver's copy out of the ring (not counted
/// here) is its only one: see docs/performance.md, "Copies of a large message, counted".
#[test]
fn a_message_to_another_process_over_shared_memory_is_copied_twice_by_its_sender() {
    copied_twice_by_each_sender(
        "shm",
        Transport::SharedMemory {
            ring: DEFAULT_RING,
            wait: WaitStrategy::Park,
        },
    );
}

fn copied_twice_by_each_sender(tag: &str, transport: Transport) {
    let dir = std::env::temp_dir().join(format!("interstate-copies-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let hub_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub_done_set = hub_done.clone();
    let hub_dir = dir.clone();
    let hub_transport = transport;
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub, &hub_transport)).unwrap();
        hub.open_port("sink").unwrap();
        ready_tx.send(()).unwrap();
        let mut got = 0;
        assert!(drive(&mut hub, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == "DATA" {
                    got += 1;
                }
            }
            got == N
        }));
        // The hub's own process sends as well: encoded once into its outstanding buffer,
        // then copied onto the client's link.
        let before = hub.stats().payload_copies;
        for i in 0..N {
            hub.send_from_port("sink", "src", "BACK", &i.to_le_bytes())
                .unwrap();
        }
        let ok = drive(&mut hub, |n| n.unacknowledged() == 0);
        assert!(
            ok,
            "hub: {} unacknowledged, {:?}",
            hub.unacknowledged(),
            hub.stats()
        );
        hub_done_set.store(true, std::sync::atomic::Ordering::SeqCst);
        hub.stats().payload_copies - before
    });
    ready_rx.recv().unwrap();
    let mut client = Node::new(config(&dir, Role::Client, &transport)).unwrap();
    client.open_port("src").unwrap();
    assert!(drive(&mut client, |n| n.registry().contains("sink")));
    let before = client.stats().payload_copies;
    for i in 0..N {
        client
            .send_from_port("src", "sink", "DATA", &[i as u8; 64])
            .unwrap();
    }
    assert!(drive(&mut client, |n| n.unacknowledged() == 0));
    let copies = client.stats().payload_copies - before;
    let mut back = 0;
    assert!(
        drive(&mut client, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == "BACK" {
                    back += 1;
                }
            }
            // (Driven until the hub has the acknowledgements of what it sent.)
            back == N && hub_done.load(std::sync::atomic::Ordering::SeqCst)
        }),
        "client got {back}, {:?}",
        client.stats()
    );
    let hub_copies = hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        copies,
        2 * N,
        "client: into the outstanding buffer, onto the link"
    );
    assert_eq!(
        hub_copies,
        2 * N,
        "hub: into the outstanding buffer, onto the link"
    );
}
