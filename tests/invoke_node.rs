//! Invoked actors in a `Node`: child charts run as machines `parent/id` of the same node
//! (on the bus, gone when stopped), services bound from Rust (in the loop and on a thread of
//! their own), their done and error events back to the parent, and the capacities. Each
//! test runs one node serving a private bus.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;
use interstate_platform::node::invoked::{Service, ServiceCx};
use interstate_platform::PlatformError;

fn node(test: &str, tune: impl FnOnce(&mut NodeConfig)) -> (Node, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("istr-inv-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new("inv");
    c.dir = dir.clone();
    c.role = Role::Hub;
    c.transport = interstate::bus::Transport::UnixSocket;
    tune(&mut c);
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});
    (n, dir)
}

/// Drives the node until `done` (20 s at most: a limit for a broken build, not a timing).
fn drive(n: &mut Node, what: &str, mut done: impl FnMut(&mut Node) -> bool) {
    let reached = n.run_until(Duration::from_secs(20), &mut done).unwrap();
    assert!(reached, "never {what}");
}

type Log = Rc<RefCell<Vec<String>>>;

/// Behaviors whose actions `names` record `name` (with the event's payload, if any).
fn recording(log: &Log, names: &[&'static str]) -> Behaviors {
    let mut b = Behaviors::new();
    for &name in names {
        let log = log.clone();
        b = b.action(name, move |cx| {
            let payload = String::from_utf8_lossy(cx.payload()).into_owned();
            let line = if payload.is_empty() {
                name.to_string()
            } else {
                format!("{name} {payload}")
            };
            log.borrow_mut().push(line);
        });
    }
    b
}

const RUNNER: &str = r#"{
  "id": "runner", "initial": "idle",
  "states": {
    "idle": { "on": { "JOB": "working" } },
    "working": {
      "entry": { "type": "sendTo", "to": "job", "event": "START", "data": { "from": "event" } },
      "invoke": { "src": "worker", "id": "job",
                  "onDone": { "target": "idle", "actions": "collected" },
                  "onError": { "target": "idle", "actions": "failed" } },
      "on": { "PROGRESS": { "actions": "progress" }, "CANCEL": "idle" }
    }
  }
}"#;

const WORKER: &str = r#"{
  "id": "worker", "initial": "ready",
  "states": {
    "ready": { "on": { "START": { "target": "busy", "actions": "started" } } },
    "busy": {
      "entry": { "type": "sendParent", "event": "PROGRESS", "data": { "stage": "busy" } },
      "on": { "FINISH": "finished" }
    },
    "finished": { "type": "final", "output": { "status": "stored" } }
  }
}"#;

fn runner(n: &mut Node, log: &Log) {
    let child_log = log.clone();
    let behaviors = recording(log, &["collected", "failed", "progress"]).child_chart(
        "worker",
        interstate::compile_str(WORKER).unwrap(),
        move || recording(&child_log, &["started"]),
    );
    add_json_machine(n, "runner", RUNNER, behaviors).unwrap();
}

#[test]
fn a_child_chart_runs_as_a_machine_of_the_node_and_hands_back_its_output() {
    let (mut n, dir) = node("done", |_| {});
    let log = Log::default();
    runner(&mut n, &log);
    assert_eq!(n.machine_ids().collect::<Vec<_>>(), ["runner"]);

    n.send_local("runner", "JOB", br#"{"n":7}"#).unwrap();
    // Started after the state's entry actions; the entry's sendTo reached the new child,
    // which answered its parent.
    drive(&mut n, "a progress report", |_| log.borrow().len() == 2);
    assert_eq!(
        *log.borrow(),
        ["started {\"n\":7}", "progress {\"stage\":\"busy\"}"]
    );
    assert!(n.machine("runner/job").is_some());
    assert!(
        n.registry().contains("runner/job"),
        "the child is on the bus"
    );

    // Reachable by id, as any machine of the bus: its final state's output comes back.
    n.send_local("runner/job", "FINISH", &[]).unwrap();
    drive(&mut n, "the child's done event", |_| {
        log.borrow().len() == 3
    });
    assert_eq!(log.borrow()[2], "collected {\"status\":\"stored\"}");
    assert!(
        n.machine("runner/job").is_none(),
        "a finished child is gone"
    );
    assert!(!n.registry().contains("runner/job"));
    assert_eq!(n.machine_ids().collect::<Vec<_>>(), ["runner"]);

    // Again: the child's slot is reused, the id registered anew.
    n.send_local("runner", "JOB", b"{}").unwrap();
    drive(&mut n, "the second child", |n| {
        n.machine("runner/job").is_some()
    });
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exiting_the_invoking_state_stops_the_child_and_later_events_to_it_are_refused() {
    let (mut n, dir) = node("stop", |_| {});
    let log = Log::default();
    runner(&mut n, &log);
    n.send_local("runner", "JOB", b"{}").unwrap();
    drive(&mut n, "the child", |n| n.machine("runner/job").is_some());
    n.send_local("runner", "CANCEL", &[]).unwrap();
    drive(&mut n, "the stop", |n| n.machine("runner/job").is_none());
    assert!(!n.registry().contains("runner/job"));
    // Gone: an event for it is refused, and nothing reaches the parent.
    assert!(matches!(
        n.send_local("runner/job", "FINISH", &[]),
        Err(PlatformError::BadMachineId { .. })
    ));
    n.run_for(Duration::from_millis(20)).unwrap();
    assert!(!log.borrow().iter().any(|l| l.starts_with("collected")));
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unbound_src_is_refused_when_the_chart_is_bound() {
    let (mut n, dir) = node("unbound", |_| {});
    let err = add_json_machine(&mut n, "runner", RUNNER, Behaviors::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("'worker'"), "{err}");
    assert!(n.machine("runner").is_none());
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

const TWO: &str = r#"{
  "id": "two", "initial": "run",
  "states": {
    "run": {
      "invoke": [ { "src": "worker", "id": "a" },
                  { "src": "worker", "id": "b", "onError": { "actions": "failed" } } ]
    }
  }
}"#;

#[test]
fn a_full_children_table_fails_the_start_of_the_child_that_does_not_fit() {
    // The node's table: the second child's start fails, as its parent's error event.
    let (mut n, dir) = node("node-full", |c| c.max_children = 1);
    let log = Log::default();
    let behaviors = recording(&log, &["failed"]).child_chart(
        "worker",
        interstate::compile_str(WORKER).unwrap(),
        Behaviors::new,
    );
    add_json_machine(&mut n, "two", TWO, behaviors).unwrap();
    drive(&mut n, "the failed start", |_| !log.borrow().is_empty());
    assert!(
        log.borrow()[0].contains("NodeConfig::max_children"),
        "{:?}",
        log.borrow()
    );
    assert!(n.machine("two/a").is_some() && n.machine("two/b").is_none());
    drop(n);

    // The machine's own table (the core's capacity): the invoking step fails.
    let (mut n, dir2) = node("machine-full", |c| c.children_per_machine = 1);
    let behaviors = Behaviors::new().action("failed", |_| {}).child_chart(
        "worker",
        interstate::compile_str(WORKER).unwrap(),
        Behaviors::new,
    );
    let err = add_json_machine(&mut n, "two", TWO, behaviors)
        .unwrap_err()
        .to_string();
    assert!(err.contains("children"), "{err}");
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(dir2);
}

const NESTED: &str = r#"{
  "id": "mid", "initial": "run",
  "states": { "run": { "invoke": { "src": "leaf", "id": "leaf" } } }
}"#;

#[test]
fn a_child_that_fails_sends_its_parent_an_error_event() {
    // The child's own child cannot start (the node runs one child at most) and nothing in
    // the child handles that: the child fails, its parent hears `xstate.error.actor.job`.
    let (mut n, dir) = node("child-fails", |c| c.max_children = 1);
    let log = Log::default();
    let behaviors = recording(&log, &["collected", "failed", "progress"])
        .child_chart(
            "worker",
            interstate::compile_str(NESTED).unwrap(),
            Behaviors::new,
        )
        .child_chart(
            "leaf",
            interstate::compile_str(WORKER).unwrap(),
            Behaviors::new,
        );
    let runner = RUNNER.replace(
        r#""entry": { "type": "sendTo", "to": "job", "event": "START", "data": { "from": "event" } },"#,
        "",
    );
    add_json_machine(&mut n, "runner", &runner, behaviors).unwrap();
    n.send_local("runner", "JOB", &[]).unwrap();
    drive(&mut n, "the child's error", |_| !log.borrow().is_empty());
    let line = log.borrow()[0].clone();
    assert!(line.starts_with("failed {\"message\":"), "{line}");
    assert!(
        n.machine("runner/job").is_none(),
        "the failed child is gone"
    );
    assert_eq!(
        n.machine("runner").map(|m| m.status()),
        Some(interstate::core::machine::Status::Active),
        "the parent handled the error"
    );
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

const USES_SERVICE: &str = r#"{
  "id": "user", "initial": "idle",
  "states": {
    "idle": { "on": { "GO": "using" } },
    "using": {
      "invoke": { "src": "echo", "id": "svc", "input": { "greeting": "hi" },
                  "onDone": { "target": "idle", "actions": "done" },
                  "onError": { "target": "idle", "actions": "failed" } },
      "on": {
        "ASK": { "actions": { "type": "sendTo", "to": "svc", "event": "PING", "data": { "from": "event" } } },
        "PONG": { "actions": "pong" },
        "LEAVE": "idle"
      }
    }
  }
}"#;

/// Answers PING with PONG (the same payload); ends on END, fails on BOOM.
struct Echo {
    stopped: Rc<RefCell<bool>>,
}

impl Service for Echo {
    fn event(
        &mut self,
        event: &str,
        payload: &[u8],
        cx: &mut ServiceCx<'_>,
    ) -> Result<(), PlatformError> {
        match event {
            "PING" if payload == b"\"end\"" => cx.done(br#"{"echoed":true}"#),
            "PING" if payload == b"\"boom\"" => cx.fail("boom"),
            "PING" => cx.send_parent("PONG", payload)?,
            _ => {}
        }
        Ok(())
    }
    fn stop(&mut self) {
        *self.stopped.borrow_mut() = true;
    }
}

#[test]
fn a_service_receives_its_parents_events_answers_and_ends() {
    let (mut n, dir) = node("service", |_| {});
    let log = Log::default();
    let stopped = Rc::new(RefCell::new(false));
    let inputs = Log::default();
    let (s, i) = (stopped.clone(), inputs.clone());
    let behaviors =
        recording(&log, &["done", "failed", "pong"]).service("echo", move |start, cx| {
            i.borrow_mut()
                .push(format!("{} {}", start.id, start.input.unwrap_or("")));
            cx.send_parent("PONG", b"\"started\"")
                .map_err(|e| e.to_string())?;
            Ok(Echo { stopped: s.clone() })
        });
    add_json_machine(&mut n, "user", USES_SERVICE, behaviors).unwrap();
    n.send_local("user", "GO", &[]).unwrap();
    n.send_local("user", "ASK", b"\"one\"").unwrap();
    drive(&mut n, "two answers", |_| log.borrow().len() == 2);
    assert_eq!(*log.borrow(), ["pong \"started\"", "pong \"one\""]);
    assert_eq!(*inputs.borrow(), ["user/svc {\"greeting\":\"hi\"}"]);

    // Exited: stopped, and the parent's events for it are an error of its step.
    n.send_local("user", "LEAVE", &[]).unwrap();
    assert!(*stopped.borrow());
    assert!(n.send_local("user", "ASK", b"\"two\"").is_ok());
    n.run_for(Duration::from_millis(10)).unwrap();
    assert_eq!(log.borrow().len(), 2);

    // Done and failed: the parent's onDone and onError, with the output and the message.
    n.send_local("user", "GO", &[]).unwrap();
    n.send_local("user", "ASK", b"\"end\"").unwrap();
    drive(&mut n, "the done event", |_| log.borrow().len() == 4);
    assert_eq!(log.borrow()[3], "done {\"echoed\":true}");
    n.send_local("user", "GO", &[]).unwrap();
    n.send_local("user", "ASK", b"\"boom\"").unwrap();
    drive(&mut n, "the error event", |_| log.borrow().len() == 6);
    assert_eq!(log.borrow()[5], "failed {\"message\":\"boom\"}");
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_blocking_service_runs_on_its_own_thread_and_wakes_the_loop() {
    let (mut n, dir) = node("blocking", |_| {});
    let log = Log::default();
    let behaviors =
        recording(&log, &["done", "failed", "pong"]).blocking_service("echo", 4, |handle| {
            while let Some((event, payload)) = handle.recv() {
                if payload == b"\"end\"" {
                    return Ok(br#"{"count":1}"#.to_vec());
                }
                // Blocking is fine here: the node's loop goes on meanwhile.
                std::thread::sleep(Duration::from_millis(5));
                handle
                    .send_parent("PONG", format!("\"{event}\"").as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Err("stopped".into())
        });
    add_json_machine(&mut n, "user", USES_SERVICE, behaviors).unwrap();
    n.send_local("user", "GO", &[]).unwrap();
    n.send_local("user", "ASK", b"\"one\"").unwrap();
    drive(&mut n, "the thread's answer", |_| !log.borrow().is_empty());
    assert_eq!(log.borrow()[0], "pong \"PING\"");
    n.send_local("user", "ASK", b"\"end\"").unwrap();
    drive(&mut n, "the thread's result", |_| log.borrow().len() == 2);
    assert_eq!(log.borrow()[1], "done {\"count\":1}");
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}
