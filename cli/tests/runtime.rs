//! The runtime's rules as a user meets them through the `interstate` binary: the reserved
//! `xstate.` event namespace, a machine stopped by an error, `status` and `ps`'s state, the
//! monitor's filters, the hub's connection log and its stop, and charts larger than the
//! default machine size. Real processes on a private bus per test (`tests/support/mod.rs`);
//! waits poll for a condition with a generous deadline, nothing asserts on timing.
//!
//! Needs `bus_probe` built: `cargo build --example bus_probe && cargo test --test runtime`.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

/// Logs what it receives; a forged system event would show as "forged".
const TARGET: &str = r#"{
  "id": "target", "initial": "idle",
  "states": { "idle": { "on": {
    "xstate.machine.down": { "actions": [ { "type": "log", "message": "forged" } ] },
    "xstate.machine.up": { "actions": [ { "type": "log", "message": "forged" } ] },
    "OK": { "actions": [ { "type": "log", "message": "got OK" } ] }
  } } }
}"#;

/// On GO, tries to send a system event with a built-in `sendTo`; logs the refusal.
const FORGER: &str = r#"{
  "id": "forger", "initial": "idle",
  "states": { "idle": { "on": {
    "GO": { "actions": [ { "type": "sendTo", "to": "target", "event": "xstate.machine.up" } ] },
    "xstate.error.delivery": { "actions": [ { "type": "log", "message": "refused" } ] }
  } } }
}"#;

#[test]
fn no_one_but_the_runtime_sends_reserved_xstate_events() {
    let mut bus = Bus::new("reserved");
    bus.start_hub();
    let target = bus.write("target.json", TARGET);
    let forger = bus.write("forger.json", FORGER);
    let t = bus.start_machine(&target, "target");
    let f = bus.start_machine(&forger, "forger");

    // `interstate send` refuses up front, naming the rule.
    let (status, _, err) = bus.run(&["send", "target", "xstate.machine.down"]);
    assert!(!status.success(), "a reserved event was sent");
    assert!(err.contains("reserved xstate. namespace"), "{err}");

    // A raw client speaking the wire by hand: the hub refuses the frame with `Reserved`.
    let raw = bus.probe(
        "raw forger",
        &[
            "raw-script",
            "hello",
            "register:mallory",
            "deliver:mallory:target:xstate.machine.down:1",
            "wait:delivery-failed",
            "deliver:mallory:target:OK:2",
            "read:300",
            "goodbye",
            "--timeout-ms",
            "8000",
        ],
    );
    bus.wait_exit(raw, STEP_LIMIT);
    let fin = last_json(&bus.out(raw), "mode").expect("raw-script's final line");
    assert_eq!(
        fin["results"],
        json!(["Ok", "Reserved"]),
        "{fin}{}",
        bus.dump()
    );

    // A chart's own sendTo of a reserved event comes back to it as a delivery error.
    let (status, _, err) = bus.run(&["send", "forger", "GO"]);
    assert!(status.success(), "{err}");
    bus.wait_line(f, false, "the forger's refusal", STEP_LIMIT, |l| {
        l.contains("refused")
    });
    // The OK after the forged frame arrived, so the forged one would have arrived first.
    bus.wait_line(t, false, "the raw client's OK", STEP_LIMIT, |l| {
        l.contains("got OK")
    });
    assert!(
        !bus.out(t).iter().any(|l| l.contains("forged")),
        "a forged system event got through{}",
        bus.dump()
    );
}

/// A flat chart of `n` states `s0`..: NEXT moves one on, JUMP goes from `s0` to the last,
/// whose entry logs "reached the end".
fn big_chart(n: usize) -> String {
    let mut states = Vec::with_capacity(n);
    for i in 0..n - 1 {
        let jump = if i == 0 {
            format!(r#","JUMP":"s{}""#, n - 1)
        } else {
            String::new()
        };
        states.push(format!(r#""s{i}":{{"on":{{"NEXT":"s{}"{jump}}}}}"#, i + 1));
    }
    states.push(format!(
        r#""s{}":{{"entry":[{{"type":"log","message":"reached the end"}}]}}"#,
        n - 1
    ));
    format!(
        r#"{{"id":"big","initial":"s0","states":{{{}}}}}"#,
        states.join(",")
    )
}

/// A 10,000-state chart that `check` and `simulate` accept runs under `interstate run` too:
/// the node sizes the machine for the chart.
#[test]
fn a_ten_thousand_state_chart_runs_on_the_bus() {
    let mut bus = Bus::new("big");
    bus.start_hub();
    let chart = bus.write("big.json", &big_chart(10_000));
    for args in [vec!["check", &chart], vec!["simulate", &chart, "NEXT"]] {
        let out = std::process::Command::new(interstate_bin())
            .args(&args)
            .output()
            .expect("run interstate");
        assert!(
            out.status.success(),
            "{} refused it: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Compiling 10,000 states takes seconds in a debug build on a busy machine: a generous
    // hang check, not a timing.
    let limit = Duration::from_secs(120);
    let m = bus.interstate("run big", &["run", &chart, "--id", "big", "--client"]);
    bus.wait_line(m, true, "the machine's join line", limit, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = bus.run(&["send", "big", "JUMP"]);
    assert!(status.success(), "{err}{}", bus.dump());
    bus.wait_line(m, false, "the last state's entry log", STEP_LIMIT, |l| {
        l.contains("reached the end")
    });
}

/// Answers PING; after GO, loops between two states with eventless transitions (an error
/// that stops the machine).
const LOOPER: &str = r#"{
  "id": "looper", "initial": "idle",
  "states": {
    "idle": { "on": { "GO": "a", "PING": { "actions": [ { "type": "log", "message": "pong" } ] } } },
    "a": { "always": "b" },
    "b": { "always": "a" }
  }
}"#;

/// A machine stopped by an error leaves the bus, `run` exits non-zero saying why, and later
/// sends fail instead of printing success.
#[test]
fn a_machine_stopped_by_an_error_leaves_the_bus_and_run_exits_non_zero() {
    let mut bus = Bus::new("stopped");
    bus.start_hub();
    let chart = bus.write("looper.json", LOOPER);
    let m = bus.start_machine(&chart, "looper");
    let (status, _, err) = bus.run(&["send", "looper", "PING"]);
    assert!(status.success(), "{err}");
    bus.wait_line(m, false, "the pong", STEP_LIMIT, |l| l.contains("pong"));
    // A stream from another process, in flight when the machine stops.
    let source = bus.probe(
        "source",
        &[
            "source",
            "src",
            "looper",
            "400",
            "--rate",
            "100",
            "--progress-every",
            "20",
            "--linger-ms",
            "500",
            "--timeout-ms",
            "30000",
        ],
    );
    bus.wait_progress(source, 40);
    let (status, _, err) = bus.run(&["send", "looper", "GO"]);
    assert!(status.success(), "{err}");
    let status = bus.wait_exit(m, STEP_LIMIT);
    assert_eq!(status.code(), Some(2), "run kept going{}", bus.dump());
    let err = bus.err(m).join("\n");
    assert!(
        err.contains("stopped on an error and left the bus") && err.contains("infinite loop"),
        "{err}"
    );
    let (status, _, err) = bus.run(&["send", "looper", "PING"]);
    assert!(
        !status.success(),
        "a send to a stopped machine printed success"
    );
    assert!(err.contains("no machine 'looper'"), "{err}");
    // The stream's sender hears of every message the machine will not take.
    bus.wait_exit(source, Duration::from_secs(60));
    let fin = last_json(&bus.out(source), "sent").expect("the source's final line");
    assert!(u(&fin, "failed") > 0, "no failure reported: {fin}");
    assert_eq!(u(&fin, "sent"), 400, "{fin}");
    assert_eq!(
        fin["unacknowledged"],
        json!(0),
        "a message is unsettled: {fin}"
    );
}

/// With `--keep-going` the process stays, the stopped machine still leaves the bus.
#[test]
fn keep_going_keeps_the_process_but_the_stopped_machine_leaves_the_bus() {
    let mut bus = Bus::new("keepgoing");
    bus.start_hub();
    let chart = bus.write("looper.json", LOOPER);
    let m = bus.interstate(
        "run looper",
        &["run", &chart, "--id", "looper", "--client", "--keep-going"],
    );
    bus.wait_line(m, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = bus.run(&["send", "looper", "GO"]);
    assert!(status.success(), "{err}");
    bus.wait_line(m, true, "the stop line", STEP_LIMIT, |l| {
        l.contains("left the bus")
    });
    bus.wait_ps("looper gone", |list| ps_pid(list, "looper").is_none());
    assert!(
        bus.try_status(m).is_none(),
        "run exited despite --keep-going"
    );
    let (status, _, _) = bus.run(&["send", "looper", "PING"]);
    assert!(!status.success());
}

/// The hub logs each connection and disconnection with its peer (pid, uid, executable), and
/// stops promptly on SIGTERM with clients attached.
#[test]
fn the_hub_logs_connections_and_stops_promptly_with_clients_attached() {
    let mut bus = Bus::new("hublog");
    let hub = bus.start_hub();
    let chart = bus.write("target.json", TARGET);
    let a = bus.start_machine(&chart, "a");
    let b = bus.start_sink("b", &[]);
    let uid = rustix::process::getuid().as_raw();
    for (p, exe) in [(a, "interstate"), (b, "bus_probe")] {
        let who = format!("pid {}, uid {uid}, executable {exe}", bus.pid(p));
        bus.wait_line(hub, true, "a connection line", STEP_LIMIT, |l| {
            l.contains("info: link") && l.contains("connected: ") && l.contains(&who)
        });
    }
    bus.kill(a);
    let who = format!("pid {}, uid {uid}, executable interstate", bus.pid(a));
    bus.wait_line(hub, true, "the disconnection line", STEP_LIMIT, |l| {
        l.contains("disconnected: ") && l.contains(&who)
    });
    // A stop with a client attached: a generous hang check, the figure printed.
    let started = std::time::Instant::now();
    bus.term(hub);
    while bus.try_status(hub).is_none() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(POLL);
    }
    eprintln!("the hub stopped within {:?} of SIGTERM", started.elapsed());
    bus.wait_exit(hub, Duration::from_secs(5));
    assert!(
        bus.err(hub).iter().any(|l| l.contains("hub stopped")),
        "{}",
        bus.dump()
    );
}
