//! Publish/subscribe across processes with the real binary, on every transport: a
//! publication reaches each of 64 subscribers in 8 processes exactly once, and
//! `interstate subscribe` prints what `interstate publish` sends, like mosquitto_sub. Each
//! test uses a private bus directory (`tests/support/mod.rs`), removed when it ends.

mod support;

use serde_json::{json, Value};
use support::*;

fn sixty_four_subscribers_in_eight_processes(transport: &str) {
    let mut bus = Bus::on("fanout", transport);
    bus.start_hub();
    let procs: Vec<P> = (0..8)
        .map(|i| {
            let prefix = format!("s{i}");
            bus.start_ready(
                &format!("subscribers {i}"),
                &[
                    "subscribers",
                    &prefix,
                    "8",
                    "plant/+/alarm",
                    "--expect",
                    "3",
                ],
            )
        })
        .collect();
    for n in 0..3 {
        let data = json!({ "n": n }).to_string();
        let (status, out, err) = bus.run(&[
            "publish",
            "plant/7/alarm",
            "ALARM",
            "--data",
            &data,
            "--wait-for",
            "64",
        ]);
        assert!(status.success(), "publish failed: {err}{}", bus.dump());
        assert!(
            out.contains("published ALARM to plant/7/alarm: 64 subscribers"),
            "{out}"
        );
    }
    // A publication to a topic nobody's filter matches reaches no one.
    let (status, out, _) = bus.run(&["publish", "plant/7/status", "OK"]);
    assert!(status.success() && out.contains(": 0 subscribers"), "{out}");
    for (i, p) in procs.into_iter().enumerate() {
        let tally = bus.wait_json(p, "the subscribers' tally", STEP_LIMIT, |v| {
            v.get("received").is_some()
        });
        let received = tally["received"].as_object().expect("received per port");
        assert_eq!(received.len(), 8, "{tally}");
        for (port, n) in received {
            assert_eq!(n, &json!(3), "process {i} port {port}: {tally}");
        }
        assert_eq!(tally["duplicates"], json!(0), "{tally}");
        assert_eq!(tally["delivery_errors"], json!(0), "{tally}");
        assert_eq!(tally["topics"], json!(["plant/7/alarm"]), "{tally}");
    }
}

#[test]
fn a_publish_to_64_subscribers_in_8_processes_is_delivered_once_to_each() {
    sixty_four_subscribers_in_eight_processes("unix");
}

#[test]
fn a_publish_to_64_subscribers_in_8_processes_is_delivered_once_to_each_over_fifos() {
    sixty_four_subscribers_in_eight_processes("fifo");
}

#[test]
fn a_publish_to_64_subscribers_in_8_processes_is_delivered_once_to_each_over_shared_memory() {
    sixty_four_subscribers_in_eight_processes("shm");
}

#[test]
fn subscribe_prints_each_matching_publication_and_a_broadcast_reaches_a_chart() {
    let mut bus = Bus::on("subcli", "unix");
    bus.start_hub();
    let sub = bus.interstate(
        "subscribe",
        &["subscribe", "plant/#", "--json", "--count", "3"],
    );
    bus.wait_line(sub, true, "the subscription", STEP_LIMIT, |l| {
        l.contains("subscribed to 'plant/#'")
    });
    // A chart subscribing in its JSON, and a chart publishing and broadcasting.
    let alarm = bus.write(
        "alarm.json",
        r#"{"id":"alarm","subscribe":["plant/+/alarm"],"initial":"idle","states":{
             "idle":{"on":{"ALARM":{"actions":{"type":"log","message":"alarm"}},
                           "ESTOP":"stopped"}},
             "stopped":{"entry":{"type":"log","message":"stopped"}}}}"#,
    );
    let panel = bus.write(
        "panel.json",
        r#"{"id":"panel","initial":"idle","states":{"idle":{"on":{
             "RAISE":{"actions":{"type":"publish","topic":"plant/2/alarm","event":"ALARM",
                                 "data":{"from":"panel"}}},
             "STOP":{"actions":{"type":"broadcast","event":"ESTOP"}}}}}}"#,
    );
    let a = bus.start_machine(&alarm, "alarm");
    bus.start_machine(&panel, "panel");
    let (status, out, err) = bus.run(&[
        "publish",
        "plant/1/temp",
        "READING",
        "--data",
        r#"{"c":21.5}"#,
    ]);
    assert!(status.success(), "{err}");
    assert!(out.contains("1 subscriber"), "{out}");
    // The chart's publication reaches the chart subscriber and the command-line one.
    let (status, _, err) = bus.run(&["send", "panel", "RAISE"]);
    assert!(status.success(), "{err}");
    bus.wait_line(a, false, "the alarm's log line", STEP_LIMIT, |l| {
        l == "[alarm] alarm"
    });
    let (status, _, err) = bus.run(&["send", "panel", "STOP"]);
    assert!(status.success(), "{err}");
    bus.wait_line(
        a,
        false,
        "the broadcast stopping the alarm",
        STEP_LIMIT,
        |l| l == "[alarm] stopped",
    );
    let status = bus.wait_exit(sub, STEP_LIMIT);
    assert!(status.success(), "{}", bus.dump());
    let lines: Vec<Value> = bus
        .out(sub)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["topic"], json!("plant/1/temp"));
    assert_eq!(lines[0]["event"], json!("READING"));
    assert_eq!(lines[0]["data"], json!({"c": 21.5}));
    assert_eq!(lines[1]["topic"], json!("plant/2/alarm"));
    assert_eq!(lines[1]["from"], json!("panel"));
    assert_eq!(lines[1]["data"], json!({"from": "panel"}));
    // The broadcast reached the command-line subscriber's port too, with no topic.
    assert_eq!(lines[2]["topic"], Value::Null);
    assert_eq!(lines[2]["event"], json!("ESTOP"));
}

#[test]
fn ctrl_c_ends_subscribe_cleanly() {
    let mut bus = Bus::on("subint", "unix");
    bus.start_hub();
    let sub = bus.interstate("subscribe", &["subscribe", "#"]);
    bus.wait_line(sub, true, "the subscription", STEP_LIMIT, |l| {
        l.contains("subscribed to '#'")
    });
    bus.signal(sub, rustix::process::Signal::INT);
    let status = bus.wait_exit(sub, STEP_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", bus.dump());
    // It left the bus: a publication now reaches no one.
    let (status, out, _) = bus.run(&["publish", "a", "E"]);
    assert!(status.success() && out.contains(": 0 subscribers"), "{out}");
}

#[test]
fn a_bad_topic_or_filter_is_refused_with_the_rule_it_breaks() {
    let mut bus = Bus::on("subbad", "unix");
    bus.start_hub();
    let (status, _, err) = bus.run(&["publish", "plant/+/alarm", "E"]);
    assert!(!status.success());
    assert!(err.contains("cannot contain the wildcards"), "{err}");
    let (status, _, err) = bus.run(&["subscribe", "plant/#/x"]);
    assert!(!status.success());
    assert!(err.contains("'#' may only be the last level"), "{err}");
}
