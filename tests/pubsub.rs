//! Publish/subscribe and broadcast end to end in one process: the hub on a thread of its
//! own and two client nodes on a private bus. Subscribers declared in their charts
//! (`"subscribe"`) and made from Rust (`Node::subscribe`, a port) in both nodes, the
//! publisher's own node included; the JSON built-ins `publish` and `broadcast`.

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, PortMessage, Role};
use interstate::Behaviors;

const PUBLISHER: &str = r#"{"id":"pub","initial":"idle","states":{"idle":{"on":{
  "GO":{"actions":{"type":"publish","topic":"plant/1/alarm","event":"ALARM","data":{"level":3}}},
  "PANIC":{"actions":{"type":"broadcast","event":"ESTOP"}}}}}}"#;

const SUBSCRIBER: &str = r#"{"id":"sub","subscribe":["plant/+/alarm"],"initial":"idle","states":{
  "idle":{"on":{
    "ALARM":{"actions":{"type":"sendTo","to":"probe","event":"GOT"}},
    "ESTOP":{"target":"stopped","actions":{"type":"sendTo","to":"probe","event":"STOPPED"}}}},
  "stopped":{}}}"#;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("pubsub");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate::bus::Transport::UnixSocket;
    c
}

/// Drives both nodes until `done` (20 s at most: a limit for a broken build, not a timing).
fn drive(a: &mut Node, b: &mut Node, mut done: impl FnMut(&mut Node, &mut Node) -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !done(a, b) {
        assert!(
            Instant::now() < end,
            "never done: {:?} {:?}",
            a.stats(),
            b.stats()
        );
        a.run_once(Some(Duration::from_millis(2))).unwrap();
        b.run_once(Some(Duration::from_millis(2))).unwrap();
    }
}

fn drain(node: &mut Node, into: &mut Vec<PortMessage>) {
    while let Some(m) = node.recv_port() {
        into.push(m);
    }
}

#[test]
fn publications_reach_every_subscriber_once_in_order_and_a_broadcast_reaches_every_machine() {
    let dir = std::env::temp_dir().join(format!("interstate-pubsub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hub_dir, hub_stop) = (dir.clone(), stop.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.set_logger(|_| {});
        ready_tx.send(()).unwrap();
        while !hub_stop.load(std::sync::atomic::Ordering::Relaxed) {
            hub.run_once(Some(Duration::from_millis(5))).unwrap();
        }
    });
    ready_rx.recv().unwrap();

    // Node b: two subscribing machines, the probe they report to, and a port tapping
    // everything under plant/.
    let mut b = Node::new(config(&dir, Role::Client)).unwrap();
    b.set_logger(|_| {});
    b.open_port("probe").unwrap();
    b.open_port("tap").unwrap();
    b.subscribe("tap", "plant/#").unwrap();
    add_json_machine(&mut b, "sub-1", SUBSCRIBER, Behaviors::new()).unwrap();
    add_json_machine(&mut b, "sub-2", SUBSCRIBER, Behaviors::new()).unwrap();
    // Node a: the publisher and a subscriber beside it.
    let mut a = Node::new(config(&dir, Role::Client)).unwrap();
    a.set_logger(|_| {});
    add_json_machine(&mut a, "pub", PUBLISHER, Behaviors::new()).unwrap();
    add_json_machine(&mut a, "sub-a", SUBSCRIBER, Behaviors::new()).unwrap();
    // A filter breaking the rules is refused with the reason.
    let e = a
        .subscribe("sub-a", "plant/#/alarm")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("plant/#/alarm") && e.contains("last level"),
        "{e}"
    );

    drive(&mut a, &mut b, |a, _| {
        let mut s = a.subscribers("plant/1/alarm");
        s.sort();
        s == ["sub-1", "sub-2", "sub-a", "tap"]
    });
    assert_eq!(a.subscribers("plant/1/other"), ["tap"]);
    assert!(a.subscribers("other/1/alarm").is_empty());
    assert_eq!(a.subscribers("plant/2"), ["tap"]);

    const N: usize = 20;
    for _ in 0..N {
        a.send_local("pub", "GO", &[]).unwrap();
    }
    let (mut probe, mut tap) = (Vec::new(), Vec::new());
    drive(&mut a, &mut b, |a, b| {
        while let Some(m) = b.recv_port() {
            if m.port == "probe" {
                probe.push(m)
            } else {
                tap.push(m)
            }
        }
        probe.len() >= 3 * N && tap.len() >= N && a.unacknowledged() == 0
    });
    // Everything is acknowledged: nothing more can arrive. Each subscriber had each
    // publication once.
    for sub in ["sub-1", "sub-2", "sub-a"] {
        let got = probe
            .iter()
            .filter(|m| m.from == sub && m.event == "GOT")
            .count();
        assert_eq!(got, N, "{sub}");
    }
    assert_eq!(probe.len(), 3 * N);
    assert_eq!(tap.len(), N);
    for m in &tap {
        assert_eq!(m.from, "pub");
        assert_eq!(m.topic.as_deref(), Some("plant/1/alarm"));
        assert_eq!(m.event, "ALARM");
        assert_eq!(m.payload, br#"{"level":3}"#);
    }
    // One sequence number per publication, increasing: the order is kept.
    assert!(tap.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(a.stats().delivery_failures, 0);

    // The emergency stop: every machine on the bus but the sender.
    a.send_local("pub", "PANIC", &[]).unwrap();
    let mut more = Vec::new();
    drive(&mut a, &mut b, |a, b| {
        drain(b, &mut more);
        more.len() >= 5 && a.unacknowledged() == 0
    });
    let stopped: Vec<_> = more.iter().filter(|m| m.event == "STOPPED").collect();
    assert_eq!(stopped.len(), 3, "{more:?}");
    let estops: Vec<_> = more.iter().filter(|m| m.event == "ESTOP").collect();
    assert_eq!(estops.len(), 2, "the two ports: {more:?}");
    assert!(estops.iter().all(|m| m.topic.is_none() && m.from == "pub"));
    assert_eq!(a.stats().delivery_failures, 0);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chart_subscribing_to_a_bad_filter_does_not_compile_and_the_error_names_it() {
    let bad = r#"{"id":"m","subscribe":["ok/+","plant/#/alarm"],"initial":"a","states":{"a":{}}}"#;
    let e = interstate::compile_str(bad).unwrap_err().to_string();
    assert!(
        e.contains("subscribe[1]") && e.contains("plant/#/alarm"),
        "{e}"
    );
    let bad = r#"{"id":"m","initial":"a","states":{"a":{"entry":{"type":"publish","topic":"a/+","event":"E"}}}}"#;
    let e = interstate::compile_str(bad).unwrap_err().to_string();
    assert!(e.contains("topic") && e.contains("a/+"), "{e}");
    // Only the root subscribes.
    let bad = r#"{"id":"m","initial":"a","states":{"a":{"subscribe":["x"]}}}"#;
    assert!(interstate::compile_str(bad).is_err());
    let ok = r#"{"id":"m","subscribe":"x/#","initial":"a","states":{"a":{}}}"#;
    assert_eq!(
        interstate::compile_str(ok).unwrap().subscriptions(),
        ["x/#"]
    );
}
