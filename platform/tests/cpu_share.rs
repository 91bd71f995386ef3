//! `NodeConfig::yield_after`: a client node that runs without sleeping yields its CPU (counted
//! in `NodeStats::cpu_yields`), one without the setting never does, and the hub never does,
//! setting or not. Two nodes in one test process (the hub on a thread of its own, busy as
//! well), a private bus directory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use interstate_platform::node::Transport;
use interstate_platform::{Node, NodeConfig, Role};
mod support;

fn config(dir: &std::path::Path, role: Role, yield_after: Option<Duration>) -> NodeConfig {
    let mut c = support::config("cpu-share", dir, role, Transport::UnixSocket);
    c.yield_after = yield_after;
    c
}

/// Runs `node`'s turns without waiting for `d`, or until it has yielded `enough` times; its
/// yields.
fn busy(node: &mut Node, d: Duration, enough: u64) -> u64 {
    let end = Instant::now() + d;
    while Instant::now() < end && node.stats().cpu_yields < enough {
        node.run_once(Some(Duration::ZERO)).unwrap();
    }
    node.stats().cpu_yields
}

#[test]
fn a_busy_client_yields_when_asked_and_the_hub_never_does() {
    let dir = std::env::temp_dir().join(format!("interstate-cpu-share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let every = Some(Duration::from_micros(50));
    let (ready_tx, ready_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (hub_dir, hub_stop) = (dir.clone(), stop.clone());
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub, every)).unwrap();
        ready_tx.send(()).unwrap();
        while !hub_stop.load(Ordering::Relaxed) {
            busy(&mut hub, Duration::from_millis(5), u64::MAX);
        }
        hub.stats().cpu_yields
    });
    ready_rx.recv().unwrap();
    let mut asked = Node::new(config(&dir, Role::Client, every)).unwrap();
    let mut not_asked = Node::new(config(&dir, Role::Client, None)).unwrap();
    // Until 20 yields (a check every 50 us of the wall clock while busy), or 10 s for a
    // broken build: no timing asserted.
    let yields = busy(&mut asked, Duration::from_secs(10), 20);
    let none = busy(&mut not_asked, Duration::from_millis(30), u64::MAX);
    stop.store(true, Ordering::Relaxed);
    let hub_yields = hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        yields > 10,
        "a busy client asked to yield did so {yields} times"
    );
    assert_eq!(none, 0, "a client not asked to yield did");
    assert_eq!(hub_yields, 0, "the hub yielded");
}
