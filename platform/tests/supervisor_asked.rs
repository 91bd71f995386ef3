//! Children asked of the supervisor (`interstate.child.start` to its port), from a node's
//! port as a node under `interstate up` asks: the child gets the environment the manifest
//! gives the asking process (its `env`, named by `process` in the request), and the slot of a
//! child whose exit was answered is taken by the next one, whatever its name, so that an app
//! invoking job after job does not grow the supervisor: after sixty jobs it lists no more
//! children and holds no more file descriptors than after the fifth.
//!
//! The supervisor (serving the bus) runs on a thread of its own, the asking node here; a
//! private bus directory. No timing is asserted: each wait ends when what it waits for came
//! (20 s at most, a limit for a broken build).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use interstate_platform::supervisor::{
    ChildSpec, Readiness, Supervisor, SupervisorConfig, EXIT_EVENT, START_EVENT, SUPERVISOR_PORT,
};
use interstate_platform::{Node, NodeConfig, Role};
use serde_json::{json, Value};

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("asked");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate_platform::node::Transport::UnixSocket;
    c
}

const LIMIT: Duration = Duration::from_secs(20);

/// Asks for the child `id` running `sh -c script` and waits for its exit's payload.
fn job(asker: &mut Node, reference: u64, id: &str, script: &str, process: Option<&str>) -> Value {
    let start = json!({
        "ref": reference, "id": id, "parent": "asker", "program": "sh",
        "args": ["-c", script], "process": process,
    });
    asker
        .send_from_port(
            "asker",
            SUPERVISOR_PORT,
            START_EVENT,
            start.to_string().as_bytes(),
        )
        .unwrap();
    let mut exit = None;
    let came = asker
        .run_until(LIMIT, |n| {
            while let Some(m) = n.recv_port() {
                if m.event == EXIT_EVENT {
                    exit = serde_json::from_slice::<Value>(&m.payload).ok();
                }
            }
            exit.is_some()
        })
        .unwrap();
    assert!(came, "no exit for {id}");
    let exit = exit.unwrap();
    assert_eq!(exit["ref"], reference, "{exit}");
    exit
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Drives `asker` until the supervisor lists `n` children.
fn until_listed(asker: &mut Node, listed: &AtomicUsize, n: usize) {
    let ok = asker
        .run_until(LIMIT, |_| listed.load(Ordering::SeqCst) == n)
        .unwrap();
    assert!(ok, "the supervisor lists {}", listed.load(Ordering::SeqCst));
}

#[test]
fn asked_children_get_their_parents_environment_and_free_their_slots() {
    let dir = std::env::temp_dir().join(format!("interstate-asked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let listed = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sup = {
        let (dir, listed, stop) = (dir.clone(), listed.clone(), stop.clone());
        std::thread::spawn(move || {
            // The process whose environment its children get: the manifest's `env` beside
            // (and over) the supervisor's own.
            let parent = ChildSpec::new("parent", "sleep")
                .args(["60"])
                .env("GREETING", "hello")
                .env("HOME", "/from/the/manifest")
                .readiness(Readiness::Started);
            let node = Node::new(config(&dir, Role::Hub)).unwrap();
            let cfg = SupervisorConfig {
                grace: Duration::from_millis(500),
                ..SupervisorConfig::default()
            };
            let mut sup = Supervisor::new(node, cfg, vec![parent]).unwrap();
            sup.run_once(Some(Duration::ZERO)).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                sup.run_once(Some(Duration::from_millis(5))).unwrap();
                while sup.next_event().is_some() {}
                listed.store(sup.children().len(), Ordering::SeqCst);
            }
            sup.stop("the test is over");
            while sup.outcome().is_none() {
                sup.run_once(Some(Duration::from_millis(5))).unwrap();
                while sup.next_event().is_some() {}
            }
        })
    };
    ready_rx.recv().unwrap();
    let mut asker = Node::new(config(&dir, Role::Client)).unwrap();
    asker.open_port("asker").unwrap();

    // The child of the process `parent` sees its manifest's environment; one asked for
    // without a process the supervisor knows, the supervisor's.
    let echo = "printf '\"%s %s\"' \"$GREETING\" \"$HOME\" > /proc/self/fd/$INTERSTATE_RESULT_FD";
    let exit = job(&mut asker, 1, "asker/env", echo, Some("parent"));
    assert_eq!(exit["status"], 0, "{exit}");
    assert_eq!(exit["output"], "\"hello /from/the/manifest\"", "{exit}");
    let exit = job(&mut asker, 2, "asker/bare", echo, Some("nobody"));
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(exit["output"], format!("\" {home}\""), "{exit}");

    // Job after job, each of its own id: once its exit is answered it is no longer listed
    // and its slot is the next one's.
    let mut fds_after_five = 0;
    for k in 3..63u64 {
        let exit = job(
            &mut asker,
            k,
            &format!("asker/job{k}"),
            "exit 0",
            Some("parent"),
        );
        assert_eq!(exit["status"], 0, "{exit}");
        until_listed(&mut asker, &listed, 1);
        if k == 7 {
            fds_after_five = open_fds();
        }
    }
    assert!(
        open_fds() <= fds_after_five,
        "{} file descriptors open after 60 jobs, {fds_after_five} after 5",
        open_fds()
    );
    stop.store(true, Ordering::SeqCst);
    sup.join().unwrap();
    drop(asker);
    let _ = std::fs::remove_dir_all(dir);
}
