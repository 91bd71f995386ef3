//! A port read with its acknowledgement held back (`Node::recv_port_unacknowledged`, as a
//! relay such as the gRPC gateway reads): the sender sees a message as delivered only once the
//! reader acknowledged it (`Node::acknowledge_port`, cumulative per sender), and one never
//! acknowledged comes back to its sender as not delivered when the port closes. Two nodes in
//! one test process (the hub on a thread of its own), a private bus directory.

use std::sync::mpsc;

use interstate_platform::{Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};

use interstate_platform::node::Transport;
mod support;
use support::drive;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    support::config("acks", dir, role, Transport::UnixSocket)
}

#[test]
fn only_acknowledged_messages_count_as_delivered() {
    let dir = std::env::temp_dir().join(format!("interstate-port-acks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (one_left_tx, one_left_rx) = mpsc::channel();
    let hub_dir = dir.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.open_port("sender").unwrap();
        ready_tx.send(()).unwrap();
        assert!(drive(&mut hub, |n| n.registry().contains("rx")));
        let seqs: Vec<u64> = (0..3u8)
            .map(|i| hub.send_from_port("sender", "rx", "DATA", &[i]).unwrap())
            .collect();
        // The reader acknowledges the second: the first two are delivered, the third not yet.
        assert!(
            drive(&mut hub, |n| n.unacknowledged() == 1),
            "{} unacknowledged",
            hub.unacknowledged()
        );
        one_left_tx.send(()).unwrap();
        let mut failure = None;
        assert!(drive(&mut hub, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == DELIVERY_ERROR_EVENT {
                    failure = Some(m.payload);
                }
            }
            failure.is_some()
        }));
        let failure: String = String::from_utf8(failure.unwrap()).unwrap();
        (seqs, failure)
    });
    ready_rx.recv().unwrap();
    let mut client = Node::new(config(&dir, Role::Client)).unwrap();
    client.open_port("rx").unwrap();
    let mut read = Vec::new();
    assert!(drive(&mut client, |n| {
        while let Some(m) = n.recv_port_unacknowledged("rx") {
            read.push(m);
        }
        read.len() == 3
    }));
    assert_eq!(
        read.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(),
        [[0], [1], [2]]
    );
    client.acknowledge_port(&read[1]);
    assert!(drive(&mut client, |_| one_left_rx.try_recv().is_ok()));
    assert!(client.close_port("rx"));
    assert!(drive(&mut client, |_| hub.is_finished()));
    let (seqs, failure) = hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Only the third, which was never acknowledged, failed.
    assert!(
        failure.starts_with(r#"{"to":"rx","event":"DATA","seq":"#),
        "{failure}"
    );
    assert!(
        failure.contains(&format!(r#""seq":{},"#, seqs[2])),
        "{failure} names seq {}",
        seqs[2]
    );
}
