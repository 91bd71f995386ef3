//! A node under a supervisor (`INTERSTATE_SUPERVISOR` names its port) that must ask for a
//! child process while its link to the hub is full: the start request is not lost and does
//! not stall the node; it waits, as a machine's sends wait, and goes out once the bus has
//! room. Here the "supervisor" is a port of the hub's node (on a thread of its own) that reads
//! nothing until told: the client node fills what the bus holds of its messages with sends
//! to it, a machine then invokes a process child. Only once the port is read does the start
//! arrive; its answer (an exit with status 3) is the machine's `xstate.error.actor.job`.
//!
//! This file holds one test: it sets `INTERSTATE_SUPERVISOR` for its process. A private bus
//! directory; no timing is asserted (each wait ends when what it waits for came, 20 s at
//! most, a limit for a broken build).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use interstate::bus::{add_json_machine, Node, NodeConfig, ProcessActor, Role, Transport};
use interstate::Behaviors;
use interstate_platform::supervisor::{ENV_SUPERVISOR, EXIT_EVENT, START_EVENT};
use serde_json::{json, Value};

const FAKE: &str = "fake.supervisor";
const LIMIT: Duration = Duration::from_secs(20);

const RUNNER: &str = r#"{"id":"runner","initial":"idle","states":{
 "idle":{"on":{"JOB":"working"}},
 "working":{"invoke":{"src":"worker","id":"job","onError":{"target":"failed","actions":"gotError"}}},
 "failed":{}}}"#;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("fullask");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = Transport::UnixSocket;
    c
}

fn value(n: &Node, id: &str) -> String {
    let mut v = String::new();
    n.machine(id).unwrap().write_value(&mut v).unwrap();
    v
}

#[test]
fn a_start_request_waits_for_room_on_a_full_link() {
    std::env::set_var(ENV_SUPERVISOR, FAKE);
    let dir = std::env::temp_dir().join(format!("interstate-fullask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (read_tx, read_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel();
    let hub_dir = dir.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.open_port(FAKE).unwrap();
        ready_tx.send(()).unwrap();
        // Reads nothing (acknowledges nothing) until told.
        while read_rx.try_recv().is_err() {
            hub.run_once(Some(Duration::from_millis(5))).unwrap();
        }
        let mut fillers = 0;
        let mut start = None;
        let came = hub
            .run_until(LIMIT, |n| {
                while let Some(m) = n.recv_port() {
                    match m.event.as_str() {
                        "FILL" => fillers += 1,
                        START_EVENT => start = Some(m),
                        _ => {}
                    }
                }
                start.is_some()
            })
            .unwrap();
        assert!(came, "the start request never came");
        let start = start.unwrap();
        let request: Value = serde_json::from_slice(&start.payload).unwrap();
        let exit = json!({"ref": request["ref"], "pid": null, "status": 3, "signal": null,
                          "message": "", "output": null});
        hub.send_from_port(FAKE, &start.from, EXIT_EVENT, exit.to_string().as_bytes())
            .unwrap();
        seen_tx.send((fillers, request)).unwrap();
        // Serves the bus until the client is gone.
        let _ = hub.run_until(LIMIT, |n| !n.registry().contains("runner"));
    });
    ready_rx.recv().unwrap();

    let mut c = config(&dir, Role::Client);
    c.reconnect_buffer = 8 * 1024;
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = errors.clone();
    let b = Behaviors::new()
        .action("gotError", move |cx| {
            log.borrow_mut()
                .push(String::from_utf8_lossy(cx.payload()).into_owned())
        })
        .process("worker", ProcessActor::new("/bin/true"));
    add_json_machine(&mut n, "runner", RUNNER, b).unwrap();
    n.open_port("filler").unwrap();

    // The bus holds as much of this process's messages as it may: nothing acknowledges them.
    let mut sent = 0;
    while n
        .try_send_from_port("filler", FAKE, "FILL", &[b'x'; 512])
        .unwrap()
        .is_some()
    {
        sent += 1;
        assert!(sent < 1000, "the link never filled");
    }
    n.send_local("runner", "JOB", &[]).unwrap();
    for _ in 0..50 {
        n.run_once(Some(Duration::from_millis(2))).unwrap();
    }
    // The child could not be asked for yet: the runner waits for it, not failed.
    assert!(
        value(&n, "runner").contains("working"),
        "{}",
        value(&n, "runner")
    );
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());

    // The supervisor reads: room again, the request goes out, its answer comes back.
    read_tx.send(()).unwrap();
    let done = n
        .run_until(LIMIT, |n| value(n, "runner").contains("failed"))
        .unwrap();
    assert!(done, "the runner never heard of its child");
    let (fillers, request) = seen_rx.recv().unwrap();
    assert_eq!(fillers, sent, "every filler came before the start");
    assert_eq!(request["id"], "runner/job", "{request}");
    assert_eq!(request["parent"], "runner", "{request}");
    let errors = errors.borrow();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("status 3"), "{}", errors[0]);
    drop(n);
    hub.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
