//! Durable machines (`NodeConfig::state_dir`), in one test process: a machine journalled
//! after every step comes back from its journal in a new node, a journal of another chart
//! is refused with what to do, and the node acknowledges an event only once the journal
//! record of its step is synced (group commit holds acknowledgements until its group is
//! full). `cli/tests/durable.rs` kills real processes.

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;
use interstate_platform::journal::Durability;

/// Counts INC events in its context; STOP ends it.
const COUNTER: &str = r#"{"id":"counter","initial":"counting","context":{"count":0},
  "states":{"counting":{"on":{
    "INC":{"actions":{"type":"assign","assignment":{"count":{"$add":1}}}},
    "STOP":"done"}},
  "done":{"type":"final"}}}"#;

/// The same machine with a renamed state: another chart revision.
const COUNTER_V2: &str = r#"{"id":"counter","initial":"tallying","context":{"count":0},
  "states":{"tallying":{"on":{
    "INC":{"actions":{"type":"assign","assignment":{"count":{"$add":1}}}}}}}}"#;

fn config(
    dir: &std::path::Path,
    role: Role,
    state: Option<(&std::path::Path, Durability)>,
) -> NodeConfig {
    let mut c = NodeConfig::new("durable");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate::bus::Transport::UnixSocket;
    if let Some((state_dir, durability)) = state {
        c.state_dir = Some(state_dir.to_path_buf());
        c.durability = durability;
    }
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

fn count(node: &Node) -> Option<String> {
    node.machine("counter")?.context_json().map(str::to_string)
}

fn dirs(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let base =
        std::env::temp_dir().join(format!("interstate-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    (base.join("bus"), base.join("state"))
}

#[test]
fn a_durable_machine_comes_back_from_its_journal_in_a_new_node() {
    let (bus, state) = dirs("back");
    for (round, policy) in [Durability::Fsync, Durability::GROUP, Durability::None]
        .into_iter()
        .enumerate()
    {
        let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, policy)))).unwrap();
        hub.set_logger(|_| {});
        add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
        let mut far = Node::new(config(&bus, Role::Client, None)).unwrap();
        far.set_logger(|_| {});
        far.open_port("far").unwrap();
        drive(&mut hub, &mut far, |_, f| f.registry().contains("counter"));
        for _ in 0..10 {
            far.send_from_port("far", "counter", "INC", &[]).unwrap();
        }
        // Every event acknowledged: its step is in the journal.
        drive(&mut hub, &mut far, |_, f| f.unacknowledged() == 0);
        let expected = format!("{{\"count\":{}}}", 10 * (round + 1));
        assert_eq!(count(&hub).as_deref(), Some(expected.as_str()), "{policy}");
        let journal = hub.journal().unwrap();
        assert_eq!(journal.durability(), policy);
        assert!(journal.stats().records >= 10, "{:?}", journal.stats());
        drop((hub, far));
    }
    let _ = std::fs::remove_dir_all(bus.parent().unwrap());
}

#[test]
fn a_journal_of_another_chart_revision_is_refused_with_what_to_do() {
    let (bus, state) = dirs("revision");
    let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, Durability::Fsync)))).unwrap();
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
    hub.send_local("counter", "INC", &[]).unwrap();
    hub.run_once(Some(Duration::ZERO)).unwrap();
    drop(hub);
    let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, Durability::Fsync)))).unwrap();
    hub.set_logger(|_| {});
    let e = add_json_machine(&mut hub, "counter", COUNTER_V2, Behaviors::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("counter.journal"), "{e}");
    assert!(e.contains("another chart"), "{e}");
    assert!(e.contains("move the file away"), "{e}");
    assert!(hub.machine("counter").is_none(), "refused, not added");
    // The right chart still comes back.
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
    assert_eq!(count(&hub).as_deref(), Some("{\"count\":1}"));
    drop(hub);
    let _ = std::fs::remove_dir_all(bus.parent().unwrap());
}

#[test]
fn a_final_state_and_a_local_send_are_journalled_too() {
    let (bus, state) = dirs("final");
    let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, Durability::None)))).unwrap();
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
    hub.send_local("counter", "INC", &[]).unwrap();
    hub.send_local("counter", "STOP", &[]).unwrap();
    hub.run_once(Some(Duration::ZERO)).unwrap();
    drop(hub);
    let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, Durability::None)))).unwrap();
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
    let m = hub.machine("counter").unwrap();
    assert!(m.is_done());
    assert_eq!(m.context_json(), Some("{\"count\":1}"));
    drop(hub);
    let _ = std::fs::remove_dir_all(bus.parent().unwrap());
}

#[test]
fn group_commit_acknowledges_only_once_the_group_is_synced() {
    let (bus, state) = dirs("group");
    // Five steps a group, and a time limit no test run reaches: only the count syncs.
    let policy = Durability::Group {
        steps: 5,
        within: Duration::from_secs(3600),
    };
    let mut hub = Node::new(config(&bus, Role::Hub, Some((&state, policy)))).unwrap();
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new()).unwrap();
    let mut far = Node::new(config(&bus, Role::Client, None)).unwrap();
    far.set_logger(|_| {});
    far.open_port("far").unwrap();
    drive(&mut hub, &mut far, |_, f| f.registry().contains("counter"));
    // The machine's first record (its initial state) waits in the group too.
    let syncs_before = hub.journal().unwrap().stats().syncs;
    for _ in 0..3 {
        far.send_from_port("far", "counter", "INC", &[]).unwrap();
    }
    drive(&mut hub, &mut far, |h, _| {
        count(h).as_deref() == Some("{\"count\":3}")
    });
    // Taken, journalled, not synced: not acknowledged, however long the nodes run.
    for _ in 0..50 {
        hub.run_once(Some(Duration::from_millis(1))).unwrap();
        far.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(far.unacknowledged(), 3);
    assert_eq!(hub.journal().unwrap().stats().syncs, syncs_before);
    for _ in 0..2 {
        far.send_from_port("far", "counter", "INC", &[]).unwrap();
    }
    // The group is full: synced, then acknowledged.
    drive(&mut hub, &mut far, |_, f| f.unacknowledged() == 0);
    assert!(hub.journal().unwrap().stats().syncs > syncs_before);
    assert_eq!(count(&hub).as_deref(), Some("{\"count\":5}"));
    drop((hub, far));
    let _ = std::fs::remove_dir_all(bus.parent().unwrap());
}
