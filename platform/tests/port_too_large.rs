//! A message larger than the bus's frame bound, sent from a port of the hub's own process
//! to another process: reported to the port as `too-large` (the outstanding buffer takes it
//! back), and the port's next messages go through and are acknowledged as before. Two
//! nodes in one test process (the hub on a thread of its own), a private bus directory.

use std::sync::mpsc;

use interstate_platform::{Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};

use interstate_platform::node::Transport;
mod support;
use support::drive;

const MAX_FRAME: u32 = 2048;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = support::config("too-large", dir, role, Transport::UnixSocket);
    c.max_frame = MAX_FRAME;
    c
}

#[test]
fn a_message_over_the_frame_bound_fails_and_the_next_ones_go_through() {
    let dir = std::env::temp_dir().join(format!("interstate-too-large-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = mpsc::channel();
    let hub_dir = dir.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.open_port("sender").unwrap();
        ready_tx.send(()).unwrap();
        assert!(drive(&mut hub, |n| n.registry().contains("rx")));
        hub.send_from_port("sender", "rx", "DATA", &[1]).unwrap();
        let big = vec![7u8; MAX_FRAME as usize];
        let failed = hub.send_from_port("sender", "rx", "BIG", &big).unwrap();
        hub.send_from_port("sender", "rx", "DATA", &[2]).unwrap();
        let mut failure = None;
        assert!(drive(&mut hub, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == DELIVERY_ERROR_EVENT {
                    failure = Some(String::from_utf8(m.payload).unwrap());
                }
            }
            failure.is_some() && n.unacknowledged() == 0
        }));
        (failed, failure.unwrap())
    });
    ready_rx.recv().unwrap();
    let mut client = Node::new(config(&dir, Role::Client)).unwrap();
    client.open_port("rx").unwrap();
    let mut read = Vec::new();
    assert!(drive(&mut client, |n| {
        while let Some(m) = n.recv_port() {
            read.push((m.event, m.payload));
        }
        read.len() == 2 || hub.is_finished()
    }));
    assert!(drive(&mut client, |_| hub.is_finished()));
    let (failed, failure) = hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        read,
        [("DATA".to_string(), vec![1]), ("DATA".to_string(), vec![2])]
    );
    assert!(failure.contains(r#""reason":"too-large""#), "{failure}");
    assert!(failure.contains(&format!(r#""seq":{failed}"#)), "{failure}");
}
