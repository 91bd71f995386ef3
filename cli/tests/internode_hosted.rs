//! InterNode with machines hosted in the bridge's own process (`interstate bridge
//! --machine ID=CHART.json`), through a real mosquitto: their messages to and from machines
//! of the other node go straight between the bridge and the broker, and keep the promises
//! of docs/internode.md (exactly once, the remote answer, failures reported back).
//!
//! Needs `/usr/sbin/mosquitto` (Debian package `mosquitto`; `scripts/test.sh` installs it).

mod support;

use interstate_cli::mosquitto::Mosquitto;
use serde_json::Value;
use support::*;

/// On `GO`: a `PING` to `echo` (hosted in B's bridge) and a `DATA` with `GO`'s payload to
/// `worker` (a sink process on bus B, which checks numbers, order and duplicates); on `ONLY_PING` the `PING` alone; logs each `PONG` and each delivery
/// failure.
const PINGER: &str = r#"{
  "id": "pinger", "initial": "on",
  "states": { "on": { "on": {
    "GO": { "actions": [
      { "type": "sendTo", "to": "echo", "event": "PING" },
      { "type": "sendTo", "to": "worker", "event": "DATA", "data": { "from": "event" } }
    ] },
    "ONLY_PING": { "actions": { "type": "sendTo", "to": "echo", "event": "PING" } },
    "PONG": { "actions": { "type": "log", "message": "got PONG" } },
    "xstate.error.delivery": { "actions": { "type": "log", "message": "delivery failed" } }
  } } }
}"#;

/// On `PING`: logs it and answers `pinger` (hosted in A's bridge) with `PONG`.
const ECHO: &str = r#"{
  "id": "echo", "initial": "on",
  "states": { "on": { "on": {
    "PING": { "actions": [
      { "type": "log", "message": "got PING" },
      { "type": "sendTo", "to": "pinger", "event": "PONG" }
    ] }
  } } }
}"#;

fn broker(test: &str) -> Mosquitto {
    let dir = std::env::temp_dir().join(format!("istr-mqtt-{}-{test}", std::process::id()));
    Mosquitto::start(&dir, "").unwrap_or_else(|e| panic!("{e}"))
}

fn has(list: &[Value], machine: &str) -> bool {
    list.iter().any(|e| e["machine"] == machine)
}

/// `interstate bridge --machine ID=CHART` on `bus`, once it says it connected.
fn start_bridge(bus: &mut Bus, broker: &Mosquitto, node: &str, machine: &str, chart: &str) -> P {
    let url = broker.url(false);
    let file = bus.write(&format!("{machine}.json"), chart);
    let spec = format!("{machine}={file}");
    let p = bus.interstate(
        &format!("bridge {node}"),
        &[
            "bridge",
            "--mqtt",
            &url,
            "--node",
            node,
            "--machine",
            &spec,
            // A killed bridge's node is down after this (the default is 12 s).
            "--node-grace-ms",
            "4000",
        ],
    );
    bus.wait_line(p, true, "the bridge's connection", STEP_LIMIT, |l| {
        l.contains("connected to the broker")
    });
    p
}

fn count(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|l| l.as_str() == text).count()
}

#[test]
fn machines_hosted_in_the_bridges_talk_across_nodes_exactly_once_and_hear_of_failures() {
    let broker = broker("hosted");
    let mut a = Bus::new("inode-ha");
    let mut b = Bus::new("inode-hb");
    a.start_hub();
    b.start_hub();
    let bridge_a = start_bridge(&mut a, &broker, "host-a", "pinger", PINGER);
    let bridge_b = start_bridge(&mut b, &broker, "host-b", "echo", ECHO);
    let worker = b.start_sink("worker", &["--expect", "5", "--timeout-ms", "120000"]);

    // The hosted machines are on their buses, in the bridges' processes, and each is seen
    // on the other bus through the bridge there.
    let list = a.wait_ps("echo and worker through A's bridge", |l| {
        has(l, "echo") && has(l, "worker") && has(l, "pinger")
    });
    let pid_a = Some(u64::from(a.pid(bridge_a)));
    assert_eq!(ps_pid(&list, "pinger"), pid_a, "{list:?}");
    assert_eq!(ps_pid(&list, "echo"), pid_a, "{list:?}");
    let list = b.wait_ps("pinger through B's bridge", |l| has(l, "pinger"));
    assert_eq!(
        ps_pid(&list, "echo"),
        Some(u64::from(b.pid(bridge_b))),
        "{list:?}"
    );

    // Five rounds: each PING is answered once, each DATA arrives once.
    for n in 1..=5 {
        let data = format!("{{\"n\":{n}}}");
        let (status, _, err) = a.run(&["send", "pinger", "GO", "--data", &data]);
        assert!(status.success(), "{err}");
    }
    wait_count(&a, bridge_a, "[pinger] got PONG", 5);
    wait_count(&b, bridge_b, "[echo] got PING", 5);
    let end = std::time::Instant::now() + STEP_LIMIT;
    let tally = loop {
        if let Some(v) = last_json(&b.out(worker), "received") {
            break v;
        }
        assert!(
            std::time::Instant::now() < end,
            "no tally from the worker{}{}",
            a.dump(),
            b.dump()
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(tally["received"], 5, "{tally}");
    assert_eq!(tally["distinct"], 5, "{tally}");
    assert_eq!(tally["duplicates"], 0, "{tally}");
    assert_eq!(tally["out_of_order"], 0, "{tally}");
    // Nothing more arrives later (no duplicate, no late redelivery).
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        count(&a.out(bridge_a), "[pinger] got PONG"),
        5,
        "{}",
        a.dump()
    );
    assert_eq!(
        count(&b.out(bridge_b), "[echo] got PING"),
        5,
        "{}",
        b.dump()
    );
    assert_eq!(
        count(&a.out(bridge_a), "[pinger] delivery failed"),
        0,
        "{}",
        a.dump()
    );

    // None of it crossed bus A's hub: the bridge's process sent every message of pinger
    // and of the remote machines' ports inside itself (`scope="local"`), none to the hub.
    let (status, out, err) = a.run(&["stats", "--json"]);
    assert!(status.success(), "stats failed: {err}");
    let v: Value = serde_json::from_str(&out).expect("stats --json prints JSON");
    let sent = |scope: &str| -> Option<u64> {
        let p = v["processes"].as_array()?.iter().find(|p| {
            p["source"]["machines"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "pinger"))
        })?;
        let f = p["metrics"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == "interstate_node_messages_sent")?;
        f["samples"]
            .as_array()?
            .iter()
            .find(|s| s["labels"]["scope"] == scope)?["value"]
            .as_u64()
    };
    assert_eq!(sent("remote"), Some(0), "{v}");
    assert!(sent("local").is_some_and(|n| n >= 10), "{v}");

    // B's bridge frozen, then killed with pinger's PING unanswered: pinger, hosted in A's
    // bridge, hears that it failed (its node went down: node-unreachable, or, when the
    // will came before the bridge read the port, target-gone), instead of waiting for ever.
    b.signal(bridge_b, rustix::process::Signal::STOP);
    let (status, _, err) = a.run(&["send", "pinger", "ONLY_PING"]);
    assert!(status.success(), "{err}");
    b.kill(bridge_b);
    a.wait_line(
        bridge_a,
        false,
        "pinger told of the failure",
        STEP_LIMIT,
        |l| l == "[pinger] delivery failed",
    );
    a.wait_ps("echo gone from bus A", |l| !has(l, "echo"));
    drop(broker);
}

/// Waits until `p` printed `text` as a line `n` times.
fn wait_count(bus: &Bus, p: P, text: &str, n: usize) {
    let end = std::time::Instant::now() + STEP_LIMIT;
    loop {
        let got = count(&bus.out(p), text);
        if got >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "'{text}' {got} times of {n}{}",
            bus.dump()
        );
        std::thread::sleep(POLL);
    }
}
