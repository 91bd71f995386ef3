//! Invoked srcs bound to processes from Rust (`Behaviors::process`):
//! a node serving a private bus starts a plain program per invocation, hands its output or
//! its exit status back to the parent as `xstate.done.actor.<id>` / `xstate.error.actor.<id>`,
//! and refuses a start beyond `NodeConfig::max_children` with the error event, never
//! silently. (The process tests in `cli/tests/invoke_process.rs` run charts as children.)

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, ProcessActor, Role};
use interstate::Behaviors;

/// Invokes `worker` as `job` while in `working`; `done` and `failed` tell how it ended.
const PARENT: &str = r#"{"id":"p","initial":"idle","states":{
  "idle":{"on":{"GO":"working"}},
  "working":{"invoke":{"src":"worker","id":"job","input":{"n":7},
    "onDone":{"target":"done","actions":"keep"},"onError":{"target":"failed","actions":"keep"}}},
  "done":{"on":{"GO":"working"}},
  "failed":{"on":{"GO":"working"}}}}"#;

fn node(test: &str) -> (Node, std::path::PathBuf) {
    node_with(test, |_| {})
}

fn node_with(test: &str, set: impl FnOnce(&mut NodeConfig)) -> (Node, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("interstate-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new(test);
    c.dir = dir.clone();
    c.role = Role::Hub;
    c.transport = interstate::bus::Transport::UnixSocket;
    set(&mut c);
    let mut node = Node::new(c).unwrap();
    node.set_logger(|_| {});
    (node, dir)
}

fn value(node: &Node, id: &str) -> String {
    let mut s = String::new();
    node.machine(id).unwrap().write_value(&mut s).unwrap();
    s
}

/// Runs the node until machine `id` leaves `working` (20 s at most: a limit for a broken
/// build, not a timing).
fn run_until_settled(node: &mut Node, id: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    while value(node, id) == "\"working\"" {
        assert!(Instant::now() < end, "the child never ended");
        node.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    value(node, id)
}

type Kept = std::rc::Rc<std::cell::RefCell<Vec<(String, String)>>>;

fn keeping(actor: ProcessActor) -> (Behaviors, Kept) {
    let kept = Kept::default();
    let k = kept.clone();
    let b = Behaviors::new()
        .process("worker", actor)
        .action("keep", move |cx| {
            let payload = String::from_utf8_lossy(cx.payload()).into_owned();
            k.borrow_mut()
                .push((cx.event().name().to_string(), payload));
        });
    (b, kept)
}

#[test]
fn a_program_per_invocation_hands_back_its_output_or_its_exit_status() {
    let (mut node, dir) = node("iprocnode");
    // Echoes its input as its output, or fails with status 4 when told to.
    let script = "if [ -e \"$0.fail\" ]; then exit 4; fi; \
                  printf '%s' \"$INTERSTATE_INPUT\" > /proc/self/fd/$INTERSTATE_RESULT_FD";
    let marker = dir.join("sh");
    let actor = ProcessActor::new("sh").args(["-c", script, marker.to_str().unwrap()]);
    let (behaviors, kept) = keeping(actor);
    add_json_machine(&mut node, "p", PARENT, behaviors).unwrap();

    node.send_local("p", "GO", b"").unwrap();
    assert_eq!(run_until_settled(&mut node, "p"), "\"done\"");
    std::fs::write(dir.join("sh.fail"), "").unwrap();
    node.send_local("p", "GO", b"").unwrap();
    assert_eq!(run_until_settled(&mut node, "p"), "\"failed\"");

    let kept = kept.borrow();
    assert_eq!(
        kept[0],
        ("xstate.done.actor.job".into(), r#"{"n":7}"#.into())
    );
    assert_eq!(kept[1].0, "xstate.error.actor.job");
    let error: serde_json::Value = serde_json::from_str(&kept[1].1).unwrap();
    assert_eq!(error["status"], 4, "{error}");
    assert_eq!(error["signal"], serde_json::Value::Null, "{error}");
    assert_eq!(node.child_processes().count(), 0, "both reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_start_beyond_the_nodes_child_process_limit_is_the_parents_error_event() {
    let (mut node, dir) = node_with("iproclimit", |c| c.max_children = 0);
    let (behaviors, kept) = keeping(ProcessActor::new("true"));
    add_json_machine(&mut node, "p", PARENT, behaviors).unwrap();
    node.send_local("p", "GO", b"").unwrap();
    assert_eq!(run_until_settled(&mut node, "p"), "\"failed\"");
    let kept = kept.borrow();
    assert_eq!(kept[0].0, "xstate.error.actor.job");
    assert!(kept[0].1.contains("max_children"), "{}", kept[0].1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_that_cannot_be_started_is_the_parents_error_event() {
    let (mut node, dir) = node("iprocmissing");
    let (behaviors, kept) = keeping(ProcessActor::new("/nonexistent/interstate-worker"));
    add_json_machine(&mut node, "p", PARENT, behaviors).unwrap();
    node.send_local("p", "GO", b"").unwrap();
    assert_eq!(run_until_settled(&mut node, "p"), "\"failed\"");
    let kept = kept.borrow();
    assert_eq!(kept[0].0, "xstate.error.actor.job");
    assert!(kept[0].1.contains("could not be started"), "{}", kept[0].1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_parent_that_stops_on_an_error_stops_its_child_process() {
    // `BREAK`'s sendParent fails the step (nobody invoked `p`): the machine stops.
    const BREAKS: &str = r#"{"id":"p","initial":"working","states":{
      "working":{"invoke":{"src":"worker","id":"job"},
        "on":{"BREAK":{"actions":{"type":"sendParent","event":"X"}}}}}}"#;
    let (mut node, dir) = node("iprocorphan");
    let actor = ProcessActor::new("sh").args(["-c", "exec sleep 600"]);
    add_json_machine(
        &mut node,
        "p",
        BREAKS,
        Behaviors::new().process("worker", actor),
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some((_, pid)) = node.child_processes().next() {
            break pid;
        }
        assert!(Instant::now() < end, "the child never started");
        node.run_once(Some(Duration::from_millis(20))).unwrap();
    };
    let _ = node.send_local("p", "BREAK", b"");
    assert_eq!(
        node.machine("p").unwrap().status(),
        interstate::core::Status::Failed
    );
    while node.child_processes().count() > 0 {
        assert!(Instant::now() < end, "the child was never stopped");
        node.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "stopped and reaped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
