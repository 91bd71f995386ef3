//! Invoked child charts in a `Node`, in XState's order: the children a machine's first step
//! invokes start before its own first actions run (`platform/src/node/first_step.rs`), and
//! a child chart gets its invocation's `input` with its first event. The expected traces are
//! XState 5.33.3's (`../shared/oracle/xstate-trace.mjs`, with the charts below and
//! `--actor SRC=CHILD.json`), which `interstate simulate` prints too; a child's actions are
//! traced as `<invoke id>/<action>`, as the oracle prints them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::core::ActionId;
use interstate::{Behaviors, CompiledChart};

type Log = Rc<RefCell<Vec<String>>>;

fn node(test: &str) -> (Node, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("istr-ord-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new("ord");
    c.dir = dir.clone();
    c.role = Role::Hub;
    c.transport = interstate::bus::Transport::UnixSocket;
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});
    (n, dir)
}

/// Drives the node until `log` holds `len` entries (20 s at most: a limit for a broken
/// build, not a timing), then some more turns, in which nothing more may come.
fn drive_to(n: &mut Node, log: &Log, len: usize) {
    let reached = n
        .run_until(Duration::from_secs(20), |_| log.borrow().len() >= len)
        .unwrap();
    assert!(reached, "the trace stopped at {:?}", log.borrow());
    for _ in 0..5 {
        n.run_once(Some(Duration::from_millis(1))).unwrap();
    }
}

/// Behaviors tracing every action of `chart` as the oracle does: `name` in the root,
/// `<invoke id>/name` in a child (the last part of its machine id), with the event's data
/// after a space when `with_data` is given.
fn tracing(log: &Log, chart: &CompiledChart, with_data: bool) -> Behaviors {
    let chart = chart.chart();
    let mut b = Behaviors::new();
    for i in 0..chart.action_count() as u16 {
        let name = chart.action_name(ActionId(i)).to_string();
        let log = log.clone();
        b = b.action(&name.clone(), move |cx| {
            let mut line = match cx.machine_id().rsplit_once('/') {
                Some((_, invoke_id)) => format!("{invoke_id}/{name}"),
                None => name.clone(),
            };
            if with_data && !cx.payload().is_empty() {
                line = format!("{line} {}", String::from_utf8_lossy(cx.payload()));
            }
            log.borrow_mut().push(line);
        });
    }
    b
}

/// Adds `root` as machine `id`, each `(src, chart)` of `children` bound as a child chart.
fn add(n: &mut Node, log: &Log, id: &str, root: &str, children: &[(&str, &str)]) {
    let compiled = interstate::compile_str(root).unwrap();
    let mut b = tracing(log, &compiled, false);
    for &(src, child) in children {
        let child = interstate::compile_str(child).unwrap();
        let (log, traced) = (log.clone(), child.clone());
        b = b.child_chart(src, child, move || tracing(&log, &traced, true));
    }
    add_json_machine(n, id, root, b).unwrap();
}

const PARENT: &str = r#"{ "id": "p", "initial": "a",
  "states": {
    "a": { "entry": ["pEntry", { "type": "sendTo", "to": "kid", "event": "PING" }],
           "invoke": { "src": "k", "id": "kid" },
           "on": { "PONG": { "actions": "gotPong" }, "HELLO": { "actions": "gotHello" }, "GO": "b" } },
    "b": { "entry": "bEntry", "invoke": { "src": "k", "id": "kid2" },
           "on": { "PONG": { "actions": "gotPong" }, "HELLO": { "actions": "gotHello" } } } } }"#;

const KID: &str = r#"{ "id": "k", "initial": "w",
  "states": {
    "w": { "entry": ["kEntry", { "type": "sendParent", "event": "HELLO" }],
           "on": { "PING": { "actions": ["kPing", { "type": "sendParent", "event": "PONG" }] } } } } }"#;

/// XState: `{"step":0,...,"actions":["kid/kEntry","pEntry","kid/kPing","gotHello","gotPong"]}`
/// then, on `GO`, `["bEntry","kid2/kEntry","gotHello"]`: the child of the first
/// configuration runs its first step before the parent's entry actions; a later step's child
/// starts after them.
#[test]
fn the_children_of_the_first_step_start_before_the_machines_first_actions() {
    let (mut n, dir) = node("first");
    let log = Log::default();
    add(&mut n, &log, "p", PARENT, &[("k", KID)]);
    drive_to(&mut n, &log, 5);
    assert_eq!(
        log.borrow_mut().drain(..).collect::<Vec<_>>(),
        ["kid/kEntry", "pEntry", "kid/kPing", "gotHello", "gotPong"]
    );
    n.send_local("p", "GO", &[]).unwrap();
    drive_to(&mut n, &log, 3);
    assert_eq!(*log.borrow(), ["bEntry", "kid2/kEntry", "gotHello"]);
    assert!(n.machine("p/kid").is_none() && n.machine("p/kid2").is_some());
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

/// XState: `["pEntry","fast/qEntry","fastDone"]`: a child whose first step ends it is not
/// started with its parent; it starts in the parent's deferred turn.
#[test]
fn a_child_that_finishes_in_its_first_step_starts_after_the_machines_first_actions() {
    let (mut n, dir) = node("fast");
    let log = Log::default();
    let root = r#"{ "id": "q", "initial": "a", "states": { "a": { "entry": "pEntry",
        "invoke": { "src": "quick", "id": "fast", "onDone": { "actions": "fastDone" } } } } }"#;
    let quick = r#"{ "id": "quick", "initial": "end",
        "states": { "end": { "type": "final", "entry": "qEntry" } } }"#;
    add(&mut n, &log, "q", root, &[("quick", quick)]);
    drive_to(&mut n, &log, 3);
    assert_eq!(*log.borrow(), ["pEntry", "fast/qEntry", "fastDone"]);
    assert!(n.machine("q/fast").is_none(), "a finished child is gone");
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

/// A child that invokes a child of its own in its first state: each level's children start
/// before its own first actions. (`interstate simulate`'s trace: the oracle binds no actors
/// for a child's own `invoke`s.)
#[test]
fn grandchildren_of_the_first_step_start_first_too() {
    let (mut n, dir) = node("nested");
    let log = Log::default();
    let root = r#"{ "id": "q", "initial": "a", "states": { "a": {
        "entry": ["pEntry", { "type": "sendTo", "to": "mid", "event": "PING" }],
        "invoke": { "src": "mid", "id": "mid" }, "on": { "PONG": { "actions": "gotPong" } } } } }"#;
    let mid = r#"{ "id": "mid", "initial": "m", "states": { "m": { "entry": "mEntry",
        "invoke": { "src": "leaf", "id": "leaf" },
        "on": { "PING": { "actions": ["mPing", { "type": "sendTo", "to": "leaf", "event": "PING" }] },
                "PONG": { "actions": ["mPong", { "type": "sendParent", "event": "PONG" }] } } } } }"#;
    let leaf = r#"{ "id": "leaf", "initial": "l", "states": { "l": { "entry": "lEntry",
        "on": { "PING": { "actions": ["lPing", { "type": "sendParent", "event": "PONG" }] } } } } }"#;
    add(&mut n, &log, "q", root, &[("mid", mid), ("leaf", leaf)]);
    drive_to(&mut n, &log, 7);
    assert_eq!(
        *log.borrow(),
        [
            "leaf/lEntry",
            "mid/mEntry",
            "pEntry",
            "mid/mPing",
            "leaf/lPing",
            "mid/mPong",
            "gotPong"
        ]
    );
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

/// A child chart's first event, `xstate.init`, carries its invocation's `input` as
/// `{"input": ...}` (XState's `event.input`): its Rust actions read it as the payload, a
/// JSON `assign` with `{"$event": "input"}` keeps it in its context, a context guard sees it.
#[test]
fn a_child_chart_gets_its_invocations_input_with_its_first_event() {
    let (mut n, dir) = node("input");
    let log = Log::default();
    let root = r#"{ "id": "p", "initial": "idle", "states": {
        "idle": { "on": { "JOB": "working" } },
        "working": { "invoke": [
            { "src": "w", "id": "job", "input": { "url": "/data", "n": 3 } },
            { "src": "w", "id": "bare" } ] } } }"#;
    let worker = r#"{ "id": "w", "initial": "run", "context": { "job": null },
        "states": {
          "run": { "entry": ["begin", { "type": "assign", "assignment": { "job": { "$event": "input" } } }],
                   "always": { "guard": { "type": "context", "key": "job", "op": "==",
                                          "value": { "url": "/data", "n": 3 } }, "target": "got" } },
          "got": { "entry": "gotInput" } } }"#;
    add(&mut n, &log, "p", root, &[("w", worker)]);
    n.send_local("p", "JOB", &[]).unwrap();
    drive_to(&mut n, &log, 3);
    assert_eq!(
        *log.borrow(),
        [
            r#"job/begin {"input":{"url":"/data","n":3}}"#,
            r#"job/gotInput {"input":{"url":"/data","n":3}}"#,
            "bare/begin"
        ]
    );
    let job = n.machine("p/job").expect("the child with input runs");
    assert_eq!(job.context_json(), Some(r#"{"job":{"url":"/data","n":3}}"#));
    // Without an input the key is removed, as `{"$event": ...}` does for a missing field.
    assert_eq!(n.machine("p/bare").unwrap().context_json(), Some("{}"));
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}
