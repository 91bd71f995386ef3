//! The delivery guarantees of `docs/guarantees.md`, one test per promise that the other
//! process tests (`cli/tests/bus.rs`, `cli/tests/hostile.rs`, `cli/tests/soak.rs`) do not already check.
//! A test named `known_issue_*` would be ignored: it shows where the implementation falls
//! short of the document (none at present).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Ordering is per (sender, receiver) pair: three senders stream to one receiver at once;
/// each sender's messages arrive in the order it sent them, none twice, none missing.
#[test]
fn order_is_kept_per_sender_and_receiver() {
    const N: u64 = 2000;
    let mut bus = Bus::new("order");
    bus.start_hub();
    let sink = bus.start_ready(
        "sink",
        &[
            "sink",
            "k",
            "--expect",
            &(3 * N).to_string(),
            "--linger-ms",
            "200",
            "--timeout-ms",
            "40000",
        ],
    );
    let sources: Vec<P> = (0..3)
        .map(|i| {
            let id = format!("s{i}");
            bus.probe(
                &id,
                &["source", &id, "k", &N.to_string(), "--timeout-ms", "40000"],
            )
        })
        .collect();
    for s in sources {
        bus.wait_exit(s, Duration::from_secs(50));
        let fin = last_json(&bus.out(s), "sent").expect("a source's final line");
        assert_eq!((u(&fin, "sent"), u(&fin, "failed")), (N, 0), "{fin}");
    }
    bus.wait_exit(sink, Duration::from_secs(30));
    let t = last_json(&bus.out(sink), "distinct").expect("the tally");
    assert_eq!(
        (
            u(&t, "distinct"),
            u(&t, "duplicates"),
            u(&t, "out_of_order")
        ),
        (3 * N, 0, 0),
        "{t}"
    );
    assert_eq!(t["by_sender"], json!({"s0": N, "s1": N, "s2": N}), "{t}");
}

/// Sequence numbers start at the wall clock in nanoseconds: a sender restarted under the same
/// id is not taken for a duplicate of its previous incarnation, whose messages the receiver
/// has already seen with the same payloads.
#[test]
fn a_restarted_sender_starts_a_new_sequence() {
    let mut bus = Bus::new("restarted-sender");
    bus.start_hub();
    let sink = bus.start_ready("sink", &["sink", "k", "--timeout-ms", "30000"]);
    for round in 0..2 {
        let s = bus.probe(
            &format!("source, round {round}"),
            &[
                "source",
                "s",
                "k",
                "200",
                "--timeout-ms",
                "20000",
                "--linger-ms",
                "500",
            ],
        );
        bus.wait_exit(s, Duration::from_secs(30));
        let fin = last_json(&bus.out(s), "sent").expect("the source's final line");
        assert_eq!(
            (
                u(&fin, "sent"),
                u(&fin, "failed"),
                u(&fin, "unacknowledged")
            ),
            (200, 0, 0),
            "{fin}"
        );
    }
    bus.term(sink);
    bus.wait_exit(sink, STEP_LIMIT);
    let t = last_json(&bus.out(sink), "distinct").expect("the tally");
    // The second round repeats the payloads (n = 0..199): the node delivered all 400; the
    // probe's own tally counts the repeated payloads as duplicates.
    assert_eq!((u(&t, "received"), u(&t, "distinct")), (400, 200), "{t}");
}

/// A delayed send lives in the sending machine's timer table: it fires on time even while the
/// hub is down, waits in the sender's buffer, and arrives once the hub is back.
#[test]
fn a_delayed_send_outlives_a_hub_restart() {
    let mut bus = Bus::new("delayed");
    let hub = bus.start_hub();
    let chart = bus.write(
        "later.json",
        r#"{"id":"later","initial":"idle","states":{"idle":{"on":{"GO":{"target":"waiting","actions":[
            {"type":"sendTo","to":"k","event":"LATE","data":{"n":0},"delay":1500}]}}},"waiting":{}}}"#,
    );
    let sink = bus.start_ready(
        "sink",
        &["sink", "k", "--expect", "1", "--timeout-ms", "30000"],
    );
    let m = bus.interstate("machine", &["run", &chart, "--id", "later", "--client"]);
    bus.wait_line(m, true, "the machine's join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = {
        let p = bus.interstate("send GO", &["send", "later", "GO"]);
        let s = bus.wait_exit(p, STEP_LIMIT);
        (s, bus.out(p).join("\n"), bus.err(p).join("\n"))
    };
    assert!(status.success(), "send GO failed: {err}");
    bus.kill(hub);
    std::thread::sleep(Duration::from_millis(2000));
    bus.start_hub();
    bus.wait_exit(sink, Duration::from_secs(30));
    let t = last_json(&bus.out(sink), "distinct").expect("the tally");
    assert_eq!(
        (t["events"].clone(), t["by_sender"].clone()),
        (json!({"LATE": 1}), json!({"later": 1})),
        "{t}{}",
        bus.dump()
    );
}

/// An acknowledgement means the receiving application has the message: for a machine, once
/// its step ran; for a port, once `recv_port` returned it. A port process that never reads
/// and is killed: every message it was sent comes back to its sender as `target-gone`.
#[test]
fn a_port_acknowledges_only_what_it_has_handed_over() {
    let mut bus = Bus::new("port-ack");
    bus.start_hub();
    // A sink whose application never reads its port.
    let holder = bus.start_ready("holder", &["sink", "k", "--hold", "--timeout-ms", "30000"]);
    let src = bus.probe(
        "source",
        &[
            "source",
            "s",
            "k",
            "100",
            "--timeout-ms",
            "20000",
            "--linger-ms",
            "4000",
        ],
    );
    bus.wait_json(src, "the source's sending_done", STEP_LIMIT, |v| {
        v.get("sending_done").is_some()
    });
    // Long enough for acknowledgements (2 ms) had the holder's node sent any.
    std::thread::sleep(Duration::from_millis(500));
    let waiting = bus.wait_json(src, "a waiting line", STEP_LIMIT, |v| {
        v.get("waiting").is_some()
    });
    assert_eq!(u(&waiting, "unacknowledged"), 100, "{waiting}");
    bus.kill(holder);
    bus.wait_exit(src, Duration::from_secs(30));
    let fin = last_json(&bus.out(src), "sent").unwrap();
    assert_eq!(
        (u(&fin, "failed"), u(&fin, "unacknowledged")),
        (100, 0),
        "the holder read none of the 100 messages and died; its sender must hear of each: {fin}"
    );
    assert_eq!(fin["reasons"], json!({"target-gone": 100}), "{fin}");
}

/// A receiver that dies with messages unacknowledged: each comes back to its sender as
/// `target-gone`, for a sender hosted in the hub's own process as for one in a client process
/// (found by this test: the hub's own senders used to hear only of the messages the hub had
/// not yet written to the dead link).
#[test]
fn a_sender_in_the_hubs_process_hears_of_a_dead_receiver() {
    let mut bus = Bus::new("hub-sender");
    // The source is the hub (`--hub`): its port lives in the hub's process.
    let src = bus.probe(
        "source in the hub",
        &[
            "source",
            "s",
            "k",
            "100",
            "--hub",
            "--rate",
            "200",
            "--timeout-ms",
            "20000",
            "--linger-ms",
            "3000",
        ],
    );
    // A receiver that reads everything, never acknowledges, and leaves after 2 s.
    let end = Instant::now() + STEP_LIMIT;
    while !bus.dir.join(format!("{}.sock", bus.name)).exists() {
        assert!(Instant::now() < end, "the hub never served{}", bus.dump());
        std::thread::sleep(POLL);
    }
    let rx = bus.probe(
        "receiver",
        &[
            "raw-script",
            "hello",
            "register:k",
            "read:2000",
            "--exit",
            "--timeout-ms",
            "10000",
        ],
    );
    bus.wait_exit(rx, STEP_LIMIT);
    bus.wait_exit(src, Duration::from_secs(30));
    let fin = last_json(&bus.out(src), "sent").unwrap();
    assert_eq!(
        u(&fin, "unacknowledged"),
        0,
        "messages to a receiver that died stay unresolved: {fin}{}",
        bus.dump()
    );
}

/// A node that comes back after a hub restart and finds one of its ids held by another
/// process (here a squatter that registered it first) does not give up on it: it asks again
/// until the id is free, and meanwhile holds that id's messages instead of letting them fail
/// as `not-owner`. Once it has the id back, everything arrives, once.
#[test]
fn a_node_whose_id_is_held_after_a_reconnect_asks_again_and_loses_nothing() {
    use rustix::process::Signal;
    const N: u64 = 300;
    let mut bus = Bus::new("id-held");
    let hub = bus.start_probe_hub(&[]);
    let sink = bus.start_ready(
        "sink",
        &[
            "sink",
            "k",
            "--expect",
            &N.to_string(),
            "--linger-ms",
            "300",
            "--timeout-ms",
            "40000",
        ],
    );
    let src = bus.probe(
        "source",
        &[
            "source",
            "s",
            "k",
            &N.to_string(),
            "--rate",
            "100",
            "--progress-every",
            "25",
            "--timeout-ms",
            "40000",
        ],
    );
    bus.wait_progress(src, 50);
    // Stop the source (what it sent so far gets acknowledged), replace the hub, let a
    // squatter take the source's id on the new hub, then let the source go on.
    bus.signal(src, Signal::STOP);
    std::thread::sleep(Duration::from_millis(300));
    bus.kill(hub);
    let hub = bus.start_probe_hub(&[]);
    let squatter = bus.probe(
        "squatter",
        &["raw-script", "hello", "register:s", "hold:1500", "goodbye"],
    );
    bus.wait_line(
        squatter,
        false,
        "the squatter's registration",
        STEP_LIMIT,
        |l| l.contains("register-result"),
    );
    bus.signal(src, Signal::CONT);
    bus.wait_exit(src, Duration::from_secs(40));
    bus.wait_exit(sink, Duration::from_secs(40));
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    let t = last_json(&bus.out(sink), "distinct").expect("the tally");
    assert_eq!(
        (
            u(&fin, "sent"),
            u(&fin, "failed"),
            u(&fin, "unacknowledged")
        ),
        (N, 0, 0),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(
        (
            u(&t, "distinct"),
            u(&t, "duplicates"),
            u(&t, "out_of_order")
        ),
        (N, 0, 0),
        "{t}"
    );
    let err = bus.err(src).join("\n");
    assert_eq!(
        (
            err.matches("asking again until it is free").count(),
            err.matches("registered 's' again").count()
        ),
        (1, 1),
        "the source's log: {err}"
    );
    assert!(
        !bus.hub_lines(hub)
            .iter()
            .any(|l| l.contains("does not own")),
        "{}",
        bus.dump()
    );
}

/// Two ports sending to each other as fast as they can, with small buffers, each reading its
/// own port only between bursts: each blocks in `send_from_port` waiting for the other's
/// acknowledgements while the other's messages wait unread in its queue. The queued messages
/// are acknowledged while a send waits, so neither waits for ever: no send times out, and
/// everything arrives.
#[test]
fn two_ports_sending_to_each_other_do_not_deadlock() {
    const N: u64 = 3000;
    let mut bus = Bus::new("crossfire");
    bus.start_hub();
    let args = |id: &'static str, to: &'static str| {
        vec![
            "source",
            id,
            to,
            "3000",
            "--payload-bytes",
            "500",
            "--reconnect-buffer",
            "16384",
            "--timeout-ms",
            "30000",
            "--linger-ms",
            "1500",
        ]
    };
    let a = bus.probe("a", &args("a", "b"));
    let b = bus.probe("b", &args("b", "a"));
    for p in [a, b] {
        bus.wait_exit(p, Duration::from_secs(40));
        let fin = last_json(&bus.out(p), "sent").expect("a final line");
        assert_eq!(
            (
                u(&fin, "sent"),
                u(&fin, "errors"),
                u(&fin, "failed"),
                u(&fin, "unacknowledged")
            ),
            (N, 0, 0, 0),
            "{fin}{}",
            bus.dump()
        );
    }
}

/// A failure report names the message that failed: its payload carries the sequence number
/// `send_from_port` returned for it, beside the target, the event and the reason.
#[test]
fn a_failure_report_names_the_sequence_number_of_the_failed_message() {
    use interstate::bus::{Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};
    let bus = Bus::new("failure-seq");
    let mut config = NodeConfig::new(&bus.name);
    config.dir = bus.dir.clone();
    config.role = Role::Hub;
    let mut node = Node::new(config).expect("serve a private bus");
    node.set_logger(|_| {});
    node.open_port("p").expect("open a port");
    let seqs: Vec<u64> = (0..3)
        .map(|i| {
            node.send_from_port("p", "nobody", &format!("E{i}"), b"{}")
                .expect("sent")
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let mut reports = Vec::new();
    let end = Instant::now() + STEP_LIMIT;
    while reports.len() < 3 && Instant::now() < end {
        node.run_once(Some(Duration::from_millis(10))).unwrap();
        while let Some(m) = node.recv_port() {
            assert_eq!(m.event, DELIVERY_ERROR_EVENT);
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON");
            reports.push(v);
        }
    }
    for (i, (v, seq)) in reports.iter().zip(&seqs).enumerate() {
        assert_eq!(
            (&v["to"], &v["event"], &v["seq"], &v["reason"]),
            (
                &json!("nobody"),
                &json!(format!("E{i}")),
                &json!(seq),
                &json!("unknown-target")
            ),
            "{reports:?}"
        );
    }
    assert_eq!(reports.len(), 3, "{reports:?}");
}
