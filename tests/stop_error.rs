//! The error that stopped a machine reaches its senders: a port in the machine's own process
//! (a local send, settled without the hub) and one in another process (the hub answers
//! `TargetStopped` with the error it was told in `Stopped`) read the same text in the
//! `xstate.error.delivery` payload's `detail`. Two nodes on a private bus, the machine in the
//! hub's own process.

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};
use interstate::Behaviors;

/// GO enters a pair of states that keep taking eventless transitions: the machine stops.
const LOOPER: &str = r#"{"id":"looper","initial":"idle","states":{
  "idle":{"on":{"GO":"a"}},"a":{"always":"b"},"b":{"always":"a"}}}"#;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("stoperr");
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

/// The `xstate.error.delivery` payload a port receives, as JSON.
fn failure(n: &mut Node) -> Option<serde_json::Value> {
    let m = n.recv_port()?;
    assert_eq!(m.event, DELIVERY_ERROR_EVENT);
    Some(serde_json::from_slice(&m.payload).expect("a JSON payload"))
}

#[test]
fn local_and_remote_senders_read_the_same_stop_error() {
    let dir = std::env::temp_dir().join(format!("interstate-stoperr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut hub = Node::new(config(&dir, Role::Hub)).unwrap();
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "looper", LOOPER, Behaviors::new()).unwrap();
    hub.open_port("near").unwrap();
    let mut far = Node::new(config(&dir, Role::Client)).unwrap();
    far.set_logger(|_| {});
    far.open_port("far").unwrap();
    drive(&mut hub, &mut far, |_, f| f.registry().contains("looper"));

    assert!(
        hub.send_local("looper", "GO", &[]).is_err(),
        "the loop stops it"
    );
    drive(&mut hub, &mut far, |_, f| !f.registry().contains("looper"));

    hub.send_from_port("near", "looper", "PING", &[]).unwrap();
    far.send_from_port("far", "looper", "PING", &[]).unwrap();
    let (mut local, mut remote) = (None, None);
    drive(&mut hub, &mut far, |h, f| {
        local = local.take().or_else(|| failure(h));
        remote = remote.take().or_else(|| failure(f));
        local.is_some() && remote.is_some()
    });
    let (local, remote) = (local.unwrap(), remote.unwrap());
    for v in [&local, &remote] {
        assert_eq!(v["reason"], "target-stopped", "{v}");
        assert_eq!(v["to"], "looper", "{v}");
    }
    let detail = local["detail"].as_str().expect("a detail");
    assert!(detail.contains("loop"), "{detail}");
    assert_eq!(local["detail"], remote["detail"], "{local} / {remote}");
    drop((hub, far));
    let _ = std::fs::remove_dir_all(&dir);
}
