//! Events between a parent and its invoked child chart in a `Node` allocate nothing: a
//! counting global allocator is armed while the node's loop runs a ping-pong between a
//! machine and the child it invoked (the parent's `sendTo` by invoke id, the child's
//! `sendParent`, each a step and a delivery through the node's routing). Everything is made
//! first (the node, both machines, the first round trips); the test asserts that round trips
//! happened while armed and that nothing was allocated.
//!
//! Only one `#[test]` lives in this file: the counter is thread-local.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{ALLOCATIONS, ARMED};

const PARENT: &str = r#"{
  "id": "p", "initial": "run",
  "states": {
    "run": {
      "invoke": {"src": "echo", "id": "kid"},
      "on": {
        "POKE": {"actions": {"type": "sendTo", "to": "kid", "event": "PING", "data": {"from": "event"}}},
        "PONG": {"actions": ["counted", {"type": "sendTo", "to": "kid", "event": "PING", "data": {"from": "event"}}]}
      }
    }
  }
}"#;

const CHILD: &str = r#"{
  "id": "echo", "initial": "a",
  "states": {
    "a": { "on": { "PING": { "target": "b", "actions": {"type": "sendParent", "event": "PONG", "data": {"from": "event"}} } } },
    "b": { "on": { "PING": { "target": "a", "actions": {"type": "sendParent", "event": "PONG", "data": {"from": "event"}} } } }
  }
}"#;

#[test]
fn events_between_a_machine_and_its_child_in_a_node_do_not_allocate() {
    let dir = std::env::temp_dir().join(format!("istr-inv-noalloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = NodeConfig::new("inv-noalloc");
    config.dir = dir.clone();
    config.role = Role::Hub;
    config.transport = interstate::bus::Transport::UnixSocket;
    let mut node = Node::new(config).unwrap();
    node.set_logger(|_| {});
    let pongs = Rc::new(Cell::new(0u64));
    let counted = pongs.clone();
    let behaviors = Behaviors::new()
        .action("counted", move |_| counted.set(counted.get() + 1))
        .child_chart(
            "echo",
            interstate::compile_str(CHILD).unwrap(),
            Behaviors::new,
        );
    add_json_machine(&mut node, "p", PARENT, behaviors).unwrap();
    node.send_local("p", "POKE", br#"{"n":"0123456789abcdef"}"#)
        .unwrap();
    // Warm-up: the first round trips fill every reused buffer.
    while pongs.get() < 1_000 {
        node.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert!(node.machine("p/kid").is_some());
    let before = pongs.get();
    ARMED.with(|a| a.set(true));
    while pongs.get() < before + 10_000 {
        node.run_once(Some(Duration::ZERO)).unwrap();
    }
    ARMED.with(|a| a.set(false));
    let measured = pongs.get() - before;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(measured >= 10_000, "{measured} round trips");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {measured} parent-child round trips"
    );
}
