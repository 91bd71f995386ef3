//! State watches end to end in one process: three nodes (the hub on a thread of its own, a
//! machine's node and a watcher's node) on a private bus. A machine's node reports its state
//! only while someone watches it: before the first watcher and after the last one left, its
//! steps send nothing (`NodeStats::state_reports`).

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;

const SWITCH: &str = r#"{"id":"switch","initial":"off","states":{"off":{"on":{"FLIP":"on"}},"on":{"on":{"FLIP":"off"}}}}"#;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("watch");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate::bus::Transport::UnixSocket;
    c
}

/// Drives both nodes until `done` (20 s at most: a limit for a broken build, not a timing).
fn drive(a: &mut Node, b: &mut Node, mut done: impl FnMut(&mut Node, &mut Node) -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !done(a, b) {
        assert!(Instant::now() < end, "never done: {:?}", a.stats());
        a.run_once(Some(Duration::from_millis(2))).unwrap();
        b.run_once(Some(Duration::from_millis(2))).unwrap();
    }
}

#[test]
fn a_machine_reports_its_state_only_while_someone_watches() {
    let dir = std::env::temp_dir().join(format!("interstate-watch-{}", std::process::id()));
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
    let mut owner = Node::new(config(&dir, Role::Client)).unwrap();
    owner.set_logger(|_| {});
    add_json_machine(&mut owner, "switch", SWITCH, Behaviors::new()).unwrap();
    let mut watcher = Node::new(config(&dir, Role::Client)).unwrap();
    watcher.set_logger(|_| {});

    // Nobody watches: steps cost no report.
    for _ in 0..10 {
        owner.send_local("switch", "FLIP", &[]).unwrap();
    }
    drive(&mut owner, &mut watcher, |_, _| true);
    assert_eq!(owner.stats().state_reports, 0);

    // A watcher: a report at once, then one per step, in order.
    watcher.watch_state("switch", true);
    let mut reports = Vec::new();
    drive(&mut owner, &mut watcher, |_, w| {
        while let Some((m, r)) = w.next_state_report() {
            assert_eq!(m, "switch");
            reports.push(r);
        }
        !reports.is_empty()
    });
    assert!(reports[0].contains(r#""state":"off""#), "{}", reports[0]);
    owner.send_local("switch", "FLIP", &[]).unwrap();
    drive(&mut owner, &mut watcher, |_, w| {
        while let Some((_, r)) = w.next_state_report() {
            reports.push(r);
        }
        reports.len() == 2
    });
    assert!(reports[1].contains(r#""state":"on""#), "{}", reports[1]);
    assert!(
        reports[1].contains(r#""accepts":["FLIP"]"#),
        "{}",
        reports[1]
    );

    // The watcher goes away: once the hub has told the owner, its steps cost nothing again.
    drop(watcher);
    let mut idle = Node::new(config(&dir, Role::Client)).unwrap();
    idle.set_logger(|_| {});
    let mut last = owner.stats().state_reports;
    let mut quiet_steps = 0;
    drive(&mut owner, &mut idle, |o, _| {
        o.send_local("switch", "FLIP", &[]).unwrap();
        let now = o.stats().state_reports;
        quiet_steps = if now == last { quiet_steps + 1 } else { 0 };
        last = now;
        quiet_steps >= 20
    });
    let before = owner.stats().state_reports;
    for _ in 0..50 {
        owner.send_local("switch", "FLIP", &[]).unwrap();
    }
    drive(&mut owner, &mut idle, |_, _| true);
    assert_eq!(
        owner.stats().state_reports,
        before,
        "reports after the last watcher left"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flooded machine costs its node at most one report per `report_interval`: the steps in
/// between are folded into the next report, which shows the latest state and counts them as
/// `"skipped"`, so that a watcher knows exactly how many states went by unseen.
#[test]
fn a_flooded_machine_reports_its_latest_state_once_per_interval() {
    let dir = std::env::temp_dir().join(format!("interstate-watch-fold-{}", std::process::id()));
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
    let interval = Duration::from_millis(200);
    let mut owner_config = config(&dir, Role::Client);
    owner_config.report_interval = interstate_core::Duration::from_millis(200);
    let mut owner = Node::new(owner_config).unwrap();
    owner.set_logger(|_| {});
    add_json_machine(&mut owner, "switch", SWITCH, Behaviors::new()).unwrap();
    let mut watcher = Node::new(config(&dir, Role::Client)).unwrap();
    watcher.set_logger(|_| {});
    watcher.watch_state("switch", true);
    let mut first = None;
    drive(&mut owner, &mut watcher, |_, w| {
        first = w.next_state_report();
        first.is_some()
    });
    assert!(first.unwrap().1.contains(r#""state":"off""#));

    // 301 steps as fast as the node takes them: the last state is "on".
    let started = Instant::now();
    for _ in 0..301 {
        owner.send_local("switch", "FLIP", &[]).unwrap();
    }
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let mut shown = 0;
    drive(&mut owner, &mut watcher, |_, w| {
        while let Some((_, r)) = w.next_state_report() {
            let v: serde_json::Value = serde_json::from_str(&r).unwrap();
            shown += 1 + v["skipped"].as_u64().unwrap_or(0);
            reports.push(v);
        }
        shown >= 301
    });
    let elapsed = started.elapsed();
    assert_eq!(
        shown, 301,
        "every step is shown or counted once: {reports:?}"
    );
    assert_eq!(reports.last().unwrap()["state"], "on", "{reports:?}");
    // Reports are at least an interval apart (the first of the burst may follow the
    // watcher's first report by one interval).
    let bound = (elapsed.as_millis() / interval.as_millis()) as usize + 1;
    assert!(
        reports.len() <= bound,
        "{} reports in {elapsed:?} at most one per {interval:?}",
        reports.len()
    );
    assert!(
        reports.len() < 301,
        "the steps were folded: {}",
        reports.len()
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
