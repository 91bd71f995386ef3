//! The bus end to end: real processes (the `interstate` binary and the `bus_probe` test
//! helper, `examples/bus_probe/`) on a private bus directory and bus name per test.
//!
//! `bus_probe` is found next to the binary as `<target>/<profile>/examples/bus_probe`.
//! Plain `cargo test` builds every example before it runs the integration tests; when
//! selecting this file alone, build the helper first:
//! `cargo build --example bus_probe && cargo test --test bus`. (`cargo test --example
//! bus_probe` does not do: it builds the example as a test harness, elsewhere.)
//!
//! Every test owns a `Bus` guard (`tests/support/mod.rs`): its Drop SIGKILLs every child still
//! running and removes the directory. Waits poll for a condition with a deadline; nothing
//! asserts on timing.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A machine that ignores everything (E included).
const QUIET: &str = r#"{"id":"quiet","initial":"idle","states":{"idle":{}}}"#;

/// A machine that logs every PING.
const LOGGER: &str = r#"{
  "id": "logger", "initial": "idle",
  "states": { "idle": { "on": { "PING": { "actions": [ { "type": "log", "message": "got PING" } ] } } } }
}"#;

fn basic_run_send_log_and_ps(transport: &str) {
    let mut bus = Bus::on("basic", transport);
    bus.start_hub();
    let pinger = bus.write(
        "pinger.json",
        r#"{
          "id": "pinger", "initial": "idle",
          "states": { "idle": { "on": { "PING": { "actions": [
            { "type": "log", "message": "got PING" },
            { "type": "sendTo", "to": "listener", "event": "PONG" }
          ] } } } }
        }"#,
    );
    let listener = bus.write(
        "listener.json",
        r#"{
          "id": "listener", "initial": "idle",
          "states": { "idle": { "on": { "PONG": { "actions": [
            { "type": "log", "message": "got PONG" }
          ] } } } }
        }"#,
    );
    let l = bus.start_machine(&listener, "listener");
    let p = bus.start_machine(&pinger, "pinger");

    let (status, out, err) = bus.run(&["send", "pinger", "PING"]);
    assert!(
        status.success(),
        "interstate send failed: {err}{}",
        bus.dump()
    );
    assert!(out.contains("sent PING to pinger"), "send printed: {out}");

    bus.wait_line(p, false, "pinger's log line", STEP_LIMIT, |line| {
        line == "[pinger] got PING"
    });
    bus.wait_line(
        l,
        false,
        "listener's log line (sendTo across processes)",
        STEP_LIMIT,
        |line| line == "[listener] got PONG",
    );

    let list = bus.ps();
    assert_eq!(
        ps_pid(&list, "pinger"),
        Some(bus.pid(p) as u64),
        "ps: {list:?}"
    );
    assert_eq!(
        ps_pid(&list, "listener"),
        Some(bus.pid(l) as u64),
        "ps: {list:?}"
    );
    assert!(
        list.iter().all(|e| e["executable"] == json!("interstate")),
        "ps: {list:?}"
    );
}

fn sigkilled_client_leaves_the_registry_and_its_messages_fail(transport: &str) {
    let mut bus = Bus::on("sigkill", transport);
    bus.start_hub();
    let chart = bus.write("quiet.json", QUIET);
    let victim = bus.start_machine(&chart, "victim2");
    let pid = bus.pid(victim) as u64;
    bus.wait_ps("victim2 with its pid", |l| {
        ps_pid(l, "victim2") == Some(pid)
    });

    // A source streams to it while it is killed.
    let n = 1000u64;
    let src = bus.probe(
        "source src2",
        &[
            "source",
            "src2",
            "victim2",
            &n.to_string(),
            "--rate",
            "500",
            "--progress-every",
            "50",
            "--linger-ms",
            "1000",
            "--timeout-ms",
            "30000",
        ],
    );
    bus.wait_json(src, "source progress", STEP_LIMIT, |v| {
        v["progress"].as_u64().is_some_and(|p| p >= 50)
    });
    bus.kill(victim);
    bus.wait_ps("victim2 gone", |l| ps_pid(l, "victim2").is_none());

    bus.wait_exit(src, Duration::from_secs(40));
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    assert_eq!(u(&fin, "sent"), n, "{fin}");
    assert_eq!(u(&fin, "errors"), 0, "{fin}");
    let failed = u(&fin, "failed");
    assert!(
        failed >= 1 && failed <= n,
        "messages sent after the target died must come back as failures: {fin}{}",
        bus.dump()
    );
    for (reason, _) in fin["reasons"].as_object().expect("reasons") {
        assert!(
            ["unknown-target", "target-gone"].contains(&reason.as_str()),
            "unexpected failure reason {reason}: {fin}"
        );
    }

    // Sent after it is gone: every message is reported, none silently lost.
    let src_b = bus.probe(
        "source src2b",
        &["source", "src2b", "victim2", "10", "--timeout-ms", "20000"],
    );
    bus.wait_exit(src_b, Duration::from_secs(30));
    let fin = last_json(&bus.out(src_b), "sent").expect("the source's final line");
    assert_eq!(
        (
            u(&fin, "sent"),
            u(&fin, "failed"),
            u(&fin["reasons"], "unknown-target")
        ),
        (10, 10, 10),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(fin["reason"], json!("all-failed"), "{fin}");
}

/// The hub is SIGKILLed while a source streams 20000 messages to a sink, and restarted.
/// Expected (with end-to-end acknowledgements, retransmission after reconnect and duplicate
/// suppression at the receiver): every message arrives exactly once, in order.
fn hub_restart_mid_stream_loses_nothing(transport: &str) {
    const N: u64 = 20_000;
    let mut bus = Bus::on("restart", transport);
    let hub = bus.start_hub();
    let sink = bus.start_sink(
        "sink3",
        &[
            "--expect",
            "20000",
            "--linger-ms",
            "300",
            "--timeout-ms",
            "40000",
        ],
    );
    let src = bus.probe(
        "source src3",
        &[
            "source",
            "src3",
            "sink3",
            "20000",
            "--rate",
            "10000",
            "--progress-every",
            "500",
            "--timeout-ms",
            "20000",
        ],
    );
    bus.wait_json(src, "source progress", STEP_LIMIT, |v| {
        v["progress"].as_u64().is_some_and(|p| p >= 5000)
    });
    bus.kill(hub);
    let killed_at = last_json(&bus.out(src), "progress").map(|v| u(&v, "progress"));
    let mid_stream = last_json(&bus.out(src), "sending_done").is_none();
    bus.start_hub();

    bus.wait_exit(src, Duration::from_secs(40));
    bus.term(sink);
    bus.wait_exit(sink, STEP_LIMIT);
    let fin = last_json(&bus.out(src), "sent").expect("the source's final line");
    let tally = last_json(&bus.out(sink), "distinct").expect("the sink's tally");
    let (sent, failed, errors) = (u(&fin, "sent"), u(&fin, "failed"), u(&fin, "errors"));
    let (distinct, dups, ooo) = (
        u(&tally, "distinct"),
        u(&tally, "duplicates"),
        u(&tally, "out_of_order"),
    );
    let context = format!(
        "hub killed at source progress {killed_at:?} (mid-stream: {mid_stream}); \
         every missing message reported to the source: {}\nsource: {fin}\nsink: {tally}{}",
        sent == distinct + failed,
        bus.dump()
    );
    eprintln!(
        "hub restart: killed at source progress {killed_at:?} (mid-stream: {mid_stream}); \
         sent {sent}, failed {failed}, distinct {distinct}, duplicates {dups}, out of order {ooo}"
    );
    assert_eq!((sent, errors), (N, 0), "{context}");
    assert_eq!(dups, 0, "duplicates reached the sink: {context}");
    assert_eq!(ooo, 0, "messages arrived out of order: {context}");
    assert_eq!(
        distinct, N,
        "messages were lost across the hub restart: {context}"
    );
}

fn spoofed_sender_is_refused(transport: &str) {
    let mut bus = Bus::on("spoof", transport);
    let hub = bus.start_hub();
    let target = bus.start_sink(
        "target4",
        &[
            "--expect",
            "1",
            "--linger-ms",
            "300",
            "--timeout-ms",
            "30000",
        ],
    );
    let victim = bus.start_sink("victim4", &["--timeout-ms", "30000"]);

    let spoof = bus.probe(
        "raw-spoof",
        &["raw-spoof", "mallory4", "victim4", "target4"],
    );
    bus.wait_exit(spoof, STEP_LIMIT);
    let fin = last_json(&bus.out(spoof), "closed").expect("raw-spoof's final line");
    assert_eq!(fin["register"], json!("Ok"), "{fin}");
    assert_eq!(
        fin["delivery_failed"],
        json!("NotOwner"),
        "{fin}{}",
        bus.dump()
    );
    bus.wait_line(
        hub,
        true,
        "the hub's log line about the spoof",
        STEP_LIMIT,
        |l| l.contains("does not own"),
    );

    // A legitimate message after it: once it has arrived, a forwarded spoof would have too.
    let src = bus.probe(
        "source legit4",
        &["source", "legit4", "target4", "1", "--timeout-ms", "20000"],
    );
    bus.wait_exit(src, Duration::from_secs(30));
    bus.wait_exit(target, Duration::from_secs(30));
    let tally = last_json(&bus.out(target), "distinct").expect("the target's tally");
    assert_eq!(
        tally["by_sender"],
        json!({"legit4": 1}),
        "{tally}{}",
        bus.dump()
    );
    assert_eq!(tally["events"], json!({"E": 1}), "{tally}");

    bus.term(victim);
    bus.wait_exit(victim, STEP_LIMIT);
    let tally = last_json(&bus.out(victim), "distinct").expect("the victim's tally");
    assert_eq!(
        (u(&tally, "received"), u(&tally, "delivery_errors")),
        (0, 0),
        "the victim heard of the spoof: {tally}"
    );
}

fn a_live_peers_id_cannot_be_registered(transport: &str) {
    let mut bus = Bus::on("taken", transport);
    bus.start_hub();
    let chart = bus.write("quiet.json", QUIET);
    let first = bus.start_machine(&chart, "dup5");
    let (status, _out, err) = bus.run(&["run", &chart, "--id", "dup5"]);
    assert!(
        !status.success(),
        "the second `run --id dup5` succeeded: {err}"
    );
    assert!(
        err.contains("'dup5'") && err.contains("already in use"),
        "the error should name the id: {err}"
    );
    let list = bus.ps();
    assert_eq!(
        ps_pid(&list, "dup5"),
        Some(bus.pid(first) as u64),
        "{list:?}"
    );
}

fn another_user_is_refused(transport: &str) {
    if rustix::process::getuid().as_raw() != 0 {
        eprintln!(
            "note: another_user_is_refused skipped: it needs root to run a child as uid 65534"
        );
        return;
    }
    let mut bus = Bus::on("uid", transport);
    let hub = bus.start_hub();
    // Make the socket reachable for uid 65534, so that only the hub's peer-credential check
    // can refuse it (the bus directory is 0700 and the socket 0600 otherwise).
    std::fs::set_permissions(&bus.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(bus.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // A copy of the helper that uid 65534 can surely execute.
    let probe = bus.dir.join("bus_probe");
    std::fs::copy(probe_bin(), &probe).expect("copy bus_probe");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut cmd = bus.command(&probe, &["raw-connect"]);
    cmd.uid(65534).gid(65534);
    let p = bus.spawn("raw-connect as uid 65534", cmd);
    bus.wait_exit(p, STEP_LIMIT);
    let fin = last_json(&bus.out(p), "closed").expect("raw-connect's final line");
    let reject = last_json(&bus.out(p), "got").map(|v| v["got"].clone());
    assert_eq!(
        reject.as_ref().map(|r| r["code"].clone()),
        Some(json!("NotAllowed")),
        "{fin}{}",
        bus.dump()
    );
    assert_eq!(fin["frames"], json!(["reject"]), "{fin}");
    assert_eq!(fin["closed"], json!(true), "{fin}");
    bus.wait_line(
        hub,
        true,
        "the hub's log line about the refusal",
        STEP_LIMIT,
        |l| l.contains("refused a connection") && l.contains("not allowed"),
    );
}

fn malformed_frames_close_only_that_connection(transport: &str) {
    let mut bus = Bus::on("malformed", transport);
    let hub = bus.start_hub();
    let chart = bus.write("logger.json", LOGGER);
    let m = bus.start_machine(&chart, "m7");
    let mut pings = 0;
    let mut still_works = |bus: &mut Bus, after: &str| {
        let (status, _, err) = bus.run(&["send", "m7", "PING"]);
        assert!(
            status.success(),
            "send after {after} failed: {err}{}",
            bus.dump()
        );
        pings += 1;
        let want = pings;
        let count = |bus: &Bus| bus.out(m).iter().filter(|l| *l == "[m7] got PING").count();
        let end = Instant::now() + STEP_LIMIT;
        while count(bus) < want {
            assert!(
                Instant::now() < end,
                "m7 did not get PING #{want} after {after}{}",
                bus.dump()
            );
            std::thread::sleep(POLL);
        }
    };
    still_works(&mut bus, "nothing");
    let hub_lines = |bus: &Bus| -> Vec<String> {
        bus.err(hub)
            .into_iter()
            .filter(|l| l.contains("hub: link"))
            .collect()
    };

    // Closed at once: the hub can tell at the first frame.
    for (mode, reason) in [
        ("raw-garbage", "not a valid postcard frame"),
        ("raw-oversize", "exceeds the largest allowed"),
    ] {
        let before = hub_lines(&bus).len();
        let p = bus.probe(mode, &[mode, "--timeout-ms", "15000"]);
        bus.wait_exit(p, STEP_LIMIT);
        let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
        assert_eq!(
            fin["closed"],
            json!(true),
            "{mode}: the hub kept the link: {fin}"
        );
        assert_eq!(fin["frames"], json!([]), "{mode}: {fin}");
        let end = Instant::now() + STEP_LIMIT;
        loop {
            let lines = hub_lines(&bus);
            if lines[before..].iter().any(|l| l.contains(reason)) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{mode}: no hub log line with '{reason}'{}",
                bus.dump()
            );
            std::thread::sleep(POLL);
        }
        still_works(&mut bus, mode);
    }

    // Closed by the hello timeout: both at once, and the bus works while they hang on.
    let before = hub_lines(&bus).len();
    let truncated = bus.probe("raw-truncated", &["raw-truncated", "--timeout-ms", "15000"]);
    let silent = bus.probe("raw-no-hello", &["raw-no-hello", "--timeout-ms", "15000"]);
    still_works(&mut bus, "opening a truncated and a silent connection");
    for p in [truncated, silent] {
        bus.wait_exit(p, STEP_LIMIT);
        let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
        assert_eq!(fin["closed"], json!(true), "the hub kept the link: {fin}");
        assert_eq!(fin["frames"], json!([]), "{fin}");
    }
    let end = Instant::now() + STEP_LIMIT;
    while hub_lines(&bus).len() < before + 2 {
        assert!(
            Instant::now() < end,
            "the hub logged no reasons{}",
            bus.dump()
        );
        std::thread::sleep(POLL);
    }
    let new = hub_lines(&bus)[before..].to_vec();
    assert!(
        new.iter().any(|l| l.contains("no hello in time")),
        "no log line for the silent connection: {new:?}"
    );
    still_works(&mut bus, "the truncated and silent connections");
}

/// A client that completes the handshake, sends part of a frame and closes its writing half
/// is closed by the hub (with a log line) well before the 30 s idle timeout.
fn truncated_frame_after_hello_is_closed(transport: &str) {
    let mut bus = Bus::on("truncated", transport);
    let hub = bus.start_hub();
    let p = bus.probe(
        "raw-truncated --after-hello",
        &["raw-truncated", "--after-hello", "--timeout-ms", "10000"],
    );
    bus.wait_exit(p, STEP_LIMIT);
    let fin = last_json(&bus.out(p), "closed").expect("the probe's final line");
    assert_eq!(fin["frames"], json!(["welcome"]), "{fin}");
    assert_eq!(
        fin["closed"],
        json!(true),
        "the hub kept the half-closed link for 10 s{}",
        bus.dump()
    );
    bus.wait_line(hub, true, "the hub's log line", STEP_LIMIT, |l| {
        l.contains("hub: link")
    });
}

fn thirty_two_clients(transport: &str) {
    const PAIRS: usize = 32;
    const N: u64 = 100;
    let mut bus = Bus::on("many", transport);
    bus.start_hub();
    let sinks: Vec<P> = (0..PAIRS)
        .map(|i| {
            bus.probe(
                &format!("sink k{i}"),
                &[
                    "sink",
                    &format!("k{i}"),
                    "--expect",
                    &N.to_string(),
                    "--timeout-ms",
                    "40000",
                ],
            )
        })
        .collect();
    for &s in &sinks {
        bus.wait_json(s, "a sink's ready line", Duration::from_secs(30), |v| {
            v["ready"] == json!(true)
        });
    }
    // Each source sends to the next pair's sink, so that every link carries both ways.
    let sources: Vec<P> = (0..PAIRS)
        .map(|i| {
            bus.probe(
                &format!("source s{i}"),
                &[
                    "source",
                    &format!("s{i}"),
                    &format!("k{}", (i + 1) % PAIRS),
                    &N.to_string(),
                    "--timeout-ms",
                    "40000",
                ],
            )
        })
        .collect();
    for &s in &sources {
        bus.wait_exit(s, Duration::from_secs(50));
        let fin = last_json(&bus.out(s), "sent").expect("a source's final line");
        assert_eq!(
            (u(&fin, "sent"), u(&fin, "failed"), u(&fin, "errors")),
            (N, 0, 0),
            "{fin}{}",
            bus.dump()
        );
        assert_eq!(fin["acknowledged"], json!(true), "{fin}");
    }
    for &s in &sinks {
        let status = bus.wait_exit(s, Duration::from_secs(30));
        let t = last_json(&bus.out(s), "distinct").expect("a sink's tally");
        assert!(status.success(), "{t}");
        assert_eq!(
            (
                u(&t, "distinct"),
                u(&t, "duplicates"),
                u(&t, "out_of_order")
            ),
            (N, 0, 0),
            "{t}"
        );
    }
}

fn stale_socket_is_replaced_and_a_live_hub_is_not(transport: &str) {
    let mut bus = Bus::on("stale", transport);
    let path = bus.socket();
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a socket"));
    assert!(
        path.exists(),
        "the stale socket file should stay after its listener is gone"
    );

    let hub = bus.start_hub();
    assert_eq!(bus.ps(), Vec::<Value>::new(), "a fresh hub has no machines");

    let (status, _, err) = bus.run(&["hub"]);
    assert!(
        !status.success(),
        "a second hub started on a live bus: {err}"
    );
    assert!(err.contains("already serving"), "{err}");
    assert!(
        bus.try_status(hub).is_none(),
        "the first hub died{}",
        bus.dump()
    );
    assert_eq!(bus.ps(), Vec::<Value>::new(), "the first hub still serves");
}

/// The suite runs unchanged on every transport: each test once per transport.
macro_rules! on_every_transport {
    ($($test:ident),* $(,)?) => {
        mod unix_socket {
            $(#[test] fn $test() { super::$test("unix") })*
        }
        mod shared_memory {
            $(#[test] fn $test() { super::$test("shm") })*
        }
        mod named_pipes {
            $(#[test] fn $test() { super::$test("fifo") })*
        }
    };
}

on_every_transport!(
    basic_run_send_log_and_ps,
    sigkilled_client_leaves_the_registry_and_its_messages_fail,
    hub_restart_mid_stream_loses_nothing,
    spoofed_sender_is_refused,
    a_live_peers_id_cannot_be_registered,
    another_user_is_refused,
    malformed_frames_close_only_that_connection,
    truncated_frame_after_hello_is_closed,
    thirty_two_clients,
    stale_socket_is_replaced_and_a_live_hub_is_not
);
