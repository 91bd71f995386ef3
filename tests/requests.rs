//! Replies and requests in a machine and in a node: the JSON built-ins (`sendTo` the
//! sender, forwarding the event's data, `request` with its reply and its error as ordinary
//! `on` transitions), the Rust context (`sender`, `reply`, `request`), timeouts on the
//! host's clock, late replies dropped, and two machines in one node asking each other.
//! The simulated bus (`no_std_core/tests/sim_requests.rs`) and the process tests
//! (`cli/tests/requests.rs`) cover the bus.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role, Transport};
use interstate::core::context::Target;
use interstate::core::request::REQUEST_ERROR_EVENT;
use interstate::core::{Correlation, Duration, Error, Event, Instant, NoBehavior};
use interstate::{compile_str, Behaviors, Machine};

const ECHO: &str = r#"{"id":"echo","initial":"ready","states":{"ready":{"on":{
  "PING":{"actions":{"type":"sendTo","to":{"sender":true},"event":"PONG","data":{"from":"event"}}},
  "HELLO":{"actions":{"type":"sendTo","to":{"sender":true},"event":"HI","data":{"fixed":true}}}}}}}"#;

const ASKER: &str = r#"{"id":"asker","initial":"idle","states":{
  "idle":{"on":{"GO":"asking"}},
  "asking":{"entry":{"type":"request","to":"echo","event":"PING","data":{"from":"event"},"timeout":500},
    "on":{"PONG":"answered","xstate.error.request":"failed"}},
  "answered":{},"failed":{}}}"#;

fn outbox(
    m: &Machine<'_, 2, 4, 4, 2, 4, 256, 32, 2>,
) -> Vec<(String, String, Vec<u8>, Correlation)> {
    m.outbox()
        .map(|o| {
            let t = match o.target {
                Target::ThisMachine => "<self>".to_string(),
                Target::Machine(t) => t.to_string(),
                Target::Topic(t) => format!("<topic {t}>"),
                Target::Broadcast => "<broadcast>".to_string(),
            };
            (t, o.event.to_string(), o.payload.to_vec(), o.correlation)
        })
        .collect()
}

fn state(m: &Machine<'_, 2, 4, 4, 2, 4, 256, 32, 2>) -> String {
    let mut s = String::new();
    m.write_value(&mut s).unwrap();
    s
}

#[test]
fn a_json_sendto_the_sender_answers_a_request_with_the_event_data() {
    let compiled = compile_str(ECHO).unwrap();
    let mut m = Machine::<'_, 2, 4, 4, 2, 4, 256, 32, 2>::new(compiled.chart(), "echo").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    let ping = Event::new("PING")
        .with_payload(br#"{"n":1}"#)
        .with_sender("asker")
        .with_correlation(Correlation::Request(9));
    m.send(Instant::ZERO, ping, &mut NoBehavior).unwrap();
    let hello = Event::new("HELLO").with_sender("port-1");
    m.send(Instant::ZERO, hello, &mut NoBehavior).unwrap();
    assert_eq!(
        outbox(&m),
        vec![
            (
                "asker".into(),
                "PONG".into(),
                br#"{"n":1}"#.to_vec(),
                Correlation::Reply(9)
            ),
            (
                "port-1".into(),
                "HI".into(),
                br#"{"fixed":true}"#.to_vec(),
                Correlation::None
            ),
        ]
    );
    // An event with no sender (the host's) has nobody to answer: the step fails visibly.
    assert_eq!(
        m.send(Instant::ZERO, Event::new("PING"), &mut NoBehavior),
        Err(Error::NoSender)
    );
}

#[test]
fn a_json_request_gets_its_reply_as_an_ordinary_event() {
    let compiled = compile_str(ASKER).unwrap();
    let mut m = Machine::<'_, 2, 4, 4, 2, 4, 256, 32, 2>::new(compiled.chart(), "asker").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    let go = Event::new("GO").with_payload(b"7");
    m.send(Instant::ZERO, go, &mut NoBehavior).unwrap();
    let out = outbox(&m);
    let Correlation::Request(id) = out[0].3 else {
        panic!("{out:?}")
    };
    assert_eq!(
        (out[0].0.as_str(), out[0].1.as_str(), &out[0].2[..]),
        ("echo", "PING", &b"7"[..])
    );
    assert_eq!(m.pending_requests(), 1);
    assert_eq!(m.poll_timeout(), Some(Instant::from_millis(500)));
    // A reply from another machine with the same id answers nothing.
    let forged = Event::new("PONG")
        .with_sender("mallory")
        .with_correlation(Correlation::Reply(id));
    m.send(Instant::from_millis(10), forged, &mut NoBehavior)
        .unwrap();
    assert_eq!(
        (state(&m), m.stats().late_replies),
        ("\"asking\"".into(), 1)
    );
    let reply = Event::new("PONG")
        .with_sender("echo")
        .with_correlation(Correlation::Reply(id));
    m.send(Instant::from_millis(20), reply, &mut NoBehavior)
        .unwrap();
    assert_eq!(state(&m), "\"answered\"");
    assert_eq!(m.pending_requests(), 0);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_json_request_times_out_once_and_its_late_reply_is_dropped() {
    let compiled = compile_str(ASKER).unwrap();
    let mut m = Machine::<'_, 2, 4, 4, 2, 4, 256, 32, 2>::new(compiled.chart(), "asker").unwrap();
    m.start(Instant::ZERO, &mut NoBehavior).unwrap();
    m.send(Instant::ZERO, Event::new("GO"), &mut NoBehavior)
        .unwrap();
    let Correlation::Request(id) = outbox(&m)[0].3 else {
        panic!()
    };
    m.clear_outbox();
    assert!(!m
        .handle_timeout(Instant::from_millis(499), &mut NoBehavior)
        .unwrap());
    assert!(m
        .handle_timeout(Instant::from_millis(500), &mut NoBehavior)
        .unwrap());
    assert_eq!(state(&m), "\"failed\"");
    assert!(!m
        .handle_timeout(Instant::from_millis(5000), &mut NoBehavior)
        .unwrap());
    let late = Event::new("PONG")
        .with_sender("echo")
        .with_correlation(Correlation::Reply(id));
    m.send(Instant::from_millis(600), late, &mut NoBehavior)
        .unwrap();
    assert_eq!(m.stats().late_replies, 1);
    assert_eq!(m.pending_requests(), 0);
}

#[test]
fn the_rust_context_replies_and_requests_and_sees_the_error_payload() {
    let compiled = compile_str(
        r#"{"id":"m","initial":"s","states":{"s":{"on":{
          "ASK":{"actions":"ask"},"Q":{"actions":"answer"},
          "xstate.error.request":{"actions":"failed"}}}}}"#,
    )
    .unwrap();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let mut b = Behaviors::new()
        .action("ask", |cx| {
            cx.request("w", "WORK", b"x", Duration::from_millis(100))
                .unwrap();
            // The table holds two: the third is an error the action sees.
            cx.request("w", "WORK", b"x", Duration::from_millis(100))
                .unwrap();
            assert_eq!(
                cx.request("w", "WORK", b"x", Duration::from_millis(100)),
                Err(Error::RequestsFull { capacity: 2 })
            );
        })
        .action("answer", move |cx| {
            s1.borrow_mut().push(format!("from {:?}", cx.sender()));
            cx.reply("A", b"ok").unwrap();
        })
        .action("failed", move |cx| {
            let p = String::from_utf8_lossy(cx.payload()).into_owned();
            s2.borrow_mut().push(p);
        })
        .bind(&compiled.chart())
        .unwrap();
    let mut m = Machine::<'_, 2, 4, 4, 2, 4, 256, 32, 2>::new(compiled.chart(), "m").unwrap();
    m.start(Instant::ZERO, &mut b).unwrap();
    let q = Event::new("Q")
        .with_sender("c")
        .with_correlation(Correlation::Request(4));
    m.send(Instant::ZERO, q, &mut b).unwrap();
    assert_eq!(
        outbox(&m),
        vec![(
            "c".into(),
            "A".into(),
            b"ok".to_vec(),
            Correlation::Reply(4)
        )]
    );
    m.clear_outbox();
    m.send(Instant::ZERO, Event::new("ASK"), &mut b).unwrap();
    assert_eq!(m.stats().send_failures, 1, "the refused request is counted");
    while m.handle_timeout(Instant::from_millis(100), &mut b).unwrap() {}
    let seen = seen.borrow();
    assert_eq!(seen[0], "from Some(\"c\")");
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[1].contains(r#""to":"w","reason":"timeout""#),
        "{}",
        seen[1]
    );
    assert_eq!(REQUEST_ERROR_EVENT, "xstate.error.request");
}

fn node(test: &str) -> Node {
    let dir = std::env::temp_dir().join(format!("istr-req-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = NodeConfig::new("req");
    c.dir = dir;
    c.role = Role::Hub;
    c.transport = Transport::UnixSocket;
    let mut n = Node::new(c).unwrap();
    n.set_logger(|_| {});
    n
}

fn node_state(n: &Node, id: &str) -> String {
    let mut s = String::new();
    n.machine(id).unwrap().write_value(&mut s).unwrap();
    s
}

/// Drives `n` until `done` (20 s at most: a limit for a broken build, not a timing).
fn drive(n: &mut Node, mut done: impl FnMut(&Node) -> bool) {
    let end = StdInstant::now() + StdDuration::from_secs(20);
    while !done(n) {
        assert!(StdInstant::now() < end, "never done: {:?}", n.stats());
        n.run_once(Some(StdDuration::from_millis(5))).unwrap();
    }
}

#[test]
fn two_machines_in_one_node_request_and_reply() {
    let mut n = node("local");
    add_json_machine(&mut n, "echo", ECHO, Behaviors::new()).unwrap();
    add_json_machine(&mut n, "asker", ASKER, Behaviors::new()).unwrap();
    n.send_local("asker", "GO", b"{}").unwrap();
    drive(&mut n, |n| node_state(n, "asker") != "\"asking\"");
    assert_eq!(node_state(&n, "asker"), "\"answered\"");
    n.shutdown();
}

#[test]
fn a_request_to_a_silent_machine_in_the_node_times_out() {
    let mut n = node("silent");
    let silent = r#"{"id":"echo","initial":"s","states":{"s":{}}}"#;
    add_json_machine(&mut n, "echo", silent, Behaviors::new()).unwrap();
    add_json_machine(&mut n, "asker", ASKER, Behaviors::new()).unwrap();
    n.send_local("asker", "GO", b"{}").unwrap();
    drive(&mut n, |n| node_state(n, "asker") != "\"asking\"");
    assert_eq!(node_state(&n, "asker"), "\"failed\"");
    n.shutdown();
}

#[test]
fn a_port_request_to_a_machine_in_the_node_gets_its_reply() {
    let mut n = node("port");
    add_json_machine(&mut n, "echo", ECHO, Behaviors::new()).unwrap();
    n.open_port("p").unwrap();
    let id = n
        .request_from_port("p", "echo", "PING", b"[1]", Duration::from_millis(5000))
        .unwrap();
    let end = StdInstant::now() + StdDuration::from_secs(20);
    let m = loop {
        if let Some(m) = n.recv_port() {
            break m;
        }
        assert!(StdInstant::now() < end, "no reply: {:?}", n.stats());
        n.run_once(Some(StdDuration::from_millis(5))).unwrap();
    };
    assert_eq!(
        (m.event.as_str(), &m.payload[..], m.correlation),
        ("PONG", &b"[1]"[..], Correlation::Reply(id.0))
    );
    assert!(!n.port_request_pending("p", id));
    n.shutdown();
}

/// `interstate simulate` has no bus to answer a request: it is sent, and its timeout, on the
/// simulated clock, ends it in `xstate.error.request`.
#[test]
fn a_simulated_request_times_out_on_the_simulated_clock() {
    let compiled = compile_str(ASKER).unwrap();
    let inputs = ["GO", "@advance 499", "@advance 1"].map(String::from);
    let mut out = Vec::new();
    let ok = interstate::simulate::run(
        &compiled.chart(),
        &interstate::simulate::Options::default(),
        inputs,
        &mut out,
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].contains(r#""asking""#), "{out}");
    assert!(lines[2].contains(r#""asking""#), "{out}");
    assert!(lines[3].contains(r#""failed""#), "{out}");
}
