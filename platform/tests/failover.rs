//! Failover of the auto role, in one test process: the bus lock refuses a second hub, and
//! when the auto-role node serving a bus goes away, exactly one of the two auto-role clients
//! left serves it in place (with what it had outstanding) and the other reconnects to it.
//! (`cli/tests/failover.rs` does the same with processes and SIGKILL.)

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate_platform::{Node, NodeConfig, PlatformError, Role};

fn config(dir: &std::path::Path, bus: &str, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new(bus);
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate_platform::node::Transport::UnixSocket;
    c.backoff = (
        interstate_core::Duration::from_millis(10),
        interstate_core::Duration::from_millis(200),
    );
    c
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("interstate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_bus_lock_refuses_a_second_hub_until_the_first_is_gone() {
    let dir = temp_dir("failover-lock");
    let first = Node::new(config(&dir, "lock", Role::Hub)).unwrap();
    let lock = std::fs::read_to_string(dir.join("lock.lock")).unwrap();
    assert_eq!(lock.trim(), std::process::id().to_string());
    match Node::new(config(&dir, "lock", Role::Hub)) {
        Err(PlatformError::HubRunning { .. }) => {}
        Err(e) => panic!("a second hub: {e}"),
        Ok(_) => panic!("a second hub served the bus"),
    }
    drop(first);
    assert!(
        !dir.join("lock.lock").exists(),
        "an orderly hub removes its lock file"
    );
    let again = Node::new(config(&dir, "lock", Role::Hub)).unwrap();
    assert!(again.is_hub());
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_auto_client_takes_over_in_place_and_the_other_reconnects_to_it() {
    const N: u64 = 200;
    let dir = temp_dir("failover-takeover");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let hub = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut node = Node::new(config(&dir, "takeover", Role::Auto)).unwrap();
            assert!(node.is_hub(), "the first auto node serves");
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                node.run_once(Some(Duration::from_millis(5))).unwrap();
            }
            // Dropped: it says nothing more, its socket is removed, its lock released.
        })
    };
    ready_rx.recv().unwrap();
    let logs: Rc<RefCell<Vec<String>>> = Rc::default();
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| {
            let mut n = Node::new(config(&dir, "takeover", Role::Auto)).unwrap();
            assert!(!n.is_hub() && n.is_connected());
            let logs = logs.clone();
            n.set_logger(move |l| logs.borrow_mut().push(format!("{i}: {l}")));
            n
        })
        .collect();
    nodes[0].open_port("b").unwrap();
    nodes[1].open_port("c").unwrap();
    let mut got = Vec::new();
    let drive =
        |nodes: &mut Vec<Node>, got: &mut Vec<u64>, done: &dyn Fn(&[Node], &[u64]) -> bool| {
            let end = Instant::now() + Duration::from_secs(20);
            while !done(nodes, got) {
                assert!(Instant::now() < end, "timed out: {:?}", logs.borrow());
                for n in nodes.iter_mut() {
                    n.run_once(Some(Duration::from_millis(2))).unwrap();
                }
                while let Some(m) = nodes[0].recv_port() {
                    assert_eq!(m.event, "E", "{m:?}");
                    got.push(u64::from_le_bytes(m.payload[..8].try_into().unwrap()));
                }
            }
        };
    for i in 0..N / 2 {
        nodes[1]
            .send_from_port("c", "b", "E", &i.to_le_bytes())
            .unwrap();
    }
    drive(&mut nodes, &mut got, &|n, got| {
        got.len() as u64 == N / 2 && n[1].unacknowledged() == 0
    });

    // The hub goes away; c goes on sending (into its outstanding buffer).
    stop.store(true, Ordering::Relaxed);
    hub.join().unwrap();
    for i in N / 2..N {
        nodes[1]
            .send_from_port("c", "b", "E", &i.to_le_bytes())
            .unwrap();
    }
    drive(&mut nodes, &mut got, &|n, got| {
        (n[0].is_hub() || n[1].is_hub())
            && n.iter().all(Node::is_connected)
            && got.len() as u64 == N
            && n[1].unacknowledged() == 0
    });
    assert!(nodes[0].is_hub() != nodes[1].is_hub(), "exactly one serves");
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(nodes[1].stats().delivery_failures, 0);
    let winner = usize::from(nodes[1].is_hub());
    let lock = std::fs::read_to_string(dir.join("takeover.lock")).unwrap();
    assert_eq!(lock.trim(), std::process::id().to_string());
    // (The hub removed its lock file when it stopped: the pid is the one its Welcome named.)
    let takeover = format!(
        "serving bus takeover after its hub (pid {}) went away",
        std::process::id()
    );
    let lines: Vec<String> = logs
        .borrow()
        .iter()
        .filter(|l| l.contains("after its hub (pid"))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "{:?}", logs.borrow());
    assert!(lines[0].starts_with(&format!("{winner}: ")), "{lines:?}");
    assert!(lines[0].ends_with(&takeover), "{lines:?}");
    // Both see each other in the new hub's registry.
    for n in &nodes {
        let r = n.registry();
        assert!(r.contains("b") && r.contains("c"));
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
