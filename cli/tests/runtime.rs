//! The runtime's rules as a user meets them through the `interstate` binary: the reserved
//! `xstate.` event namespace, a machine stopped by an error, `status` and `ps`'s state, the
//! monitor's filters, the hub's connection log and its stop, and charts larger than the
//! default machine size. Real processes on a private bus per test (`tests/support/mod.rs`);
//! waits poll for a condition with a generous deadline, nothing asserts on timing.
//!
//! Needs `bus_probe` built: `cargo build --example bus_probe && cargo test --test runtime`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
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
            // A client answers the Ping after a failure report; until then the hub fails the
            // pair's later messages too (a held pair).
            "pong",
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

/// `monitor` (text and `--json`) shows a failure the sending node found itself, which never
/// crossed the hub: here a chart's `sendTo` of a reserved `xstate.*` event.
#[test]
fn monitor_shows_failures_a_node_found_itself() {
    let mut bus = Bus::new("nodefail");
    bus.start_hub();
    let target = bus.write("target.json", TARGET);
    let forger = bus.write("forger.json", FORGER);
    bus.start_machine(&target, "target");
    let f = bus.start_machine(&forger, "forger");
    let json_mon = bus.interstate(
        "monitor json",
        &["monitor", "--json", "--machine", "forger"],
    );
    let text_mon = bus.interstate("monitor text", &["monitor", "--event", "xstate.error.*"]);
    let found = |b: &mut Bus| {
        json_lines(b, json_mon)
            .iter()
            .any(|v| v["found_by"] == json!("node"))
            && b.out(text_mon)
                .iter()
                .any(|l| l.contains("found by the sending node"))
    };
    send_until(&mut bus, "forger", "GO", found);
    let line = json_lines(&bus, json_mon)
        .into_iter()
        .find(|v| v["found_by"] == json!("node"))
        .unwrap();
    assert_eq!(
        (&line["from"], &line["to"], &line["event"], &line["failed"]),
        (
            &json!("target"),
            &json!("forger"),
            &json!("xstate.error.delivery"),
            &json!(true)
        ),
        "{line}"
    );
    assert_eq!(line["data"]["reason"], json!("reserved"), "{line}");
    assert_eq!(line["data"]["event"], json!("xstate.machine.up"), "{line}");
    let text = bus.out(text_mon);
    let l = text
        .iter()
        .find(|l| l.contains("found by the sending node"))
        .unwrap();
    assert!(
        l.contains("target -> forger  xstate.error.delivery") && l.contains("\"reserved\""),
        "{l}"
    );
    // The forger heard of it too, as before.
    bus.wait_line(f, false, "the forger's refusal", STEP_LIMIT, |l| {
        l.contains("refused")
    });
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
    // The sender hears why, and the error that stopped the machine, as the hub keeps it.
    let (status, _, err) = bus.run(&["send", "looper", "PING"]);
    assert!(
        !status.success(),
        "a send to a stopped machine printed success"
    );
    assert!(
        err.contains("target-stopped")
            && err.contains("stopped on an error")
            && err.contains("infinite loop"),
        "{err}"
    );
    // The stream's sender hears of every message the machine will not take.
    bus.wait_exit(source, Duration::from_secs(60));
    let fin = last_json(&bus.out(source), "sent").expect("the source's final line");
    assert!(u(&fin, "failed") > 0, "no failure reported: {fin}");
    // Sent after the stop: the hub says why; in flight at the stop: the receiver is gone.
    let reasons = fin["reasons"].as_object().expect("reasons");
    assert!(reasons.contains_key("target-stopped"), "{fin}");
    assert!(
        reasons
            .keys()
            .all(|r| r == "target-stopped" || r == "target-gone"),
        "{fin}"
    );
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

/// A lamp: GO switches it on, it goes back off after 200 ms or on BACK.
const LAMP: &str = r#"{
  "id": "lamp", "initial": "off",
  "states": {
    "off": { "on": { "GO": "on", "x.*": "off" } },
    "on": { "on": { "BACK": "off" }, "after": { "200": "off" } }
  }
}"#;

fn status_json(bus: &mut Bus, id: &str) -> Value {
    let (status, out, err) = bus.run(&["status", id, "--json"]);
    assert!(
        status.success(),
        "interstate status failed: {err}{}",
        bus.dump()
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `status` shows a machine's state, what it accepts now and its last events; `--watch`
/// prints each change as it happens, the stop of a machine by an error included.
#[test]
fn status_shows_the_state_and_watch_follows_each_change() {
    let mut bus = Bus::new("status");
    bus.start_hub();
    let lamp = bus.write("lamp.json", LAMP);
    bus.start_machine(&lamp, "lamp");
    let v = status_json(&mut bus, "lamp");
    assert_eq!(v["state"], json!("off"), "{v}");
    assert_eq!(v["status"], json!("active"), "{v}");
    assert_eq!(v["accepts"], json!(["GO", "x.*"]), "{v}");
    let (status, out, _) = bus.run(&["status", "lamp"]);
    assert!(status.success());
    assert!(out.contains("accepts      GO, x.*"), "{out}");

    let watcher = bus.interstate("status --watch", &["status", "lamp", "--watch", "--json"]);
    bus.wait_json(watcher, "the first report", STEP_LIMIT, |v| {
        v["state"] == json!("off")
    });
    let (status, _, err) = bus.run(&["send", "lamp", "GO"]);
    assert!(status.success(), "{err}");
    let on = bus.wait_json(watcher, "the switch on", STEP_LIMIT, |v| {
        v["state"] == json!("on")
    });
    assert_eq!(on["last_events"], json!(["GO"]), "{on}");
    assert_eq!(on["accepts"], json!(["BACK"]), "{on}");
    // The timer's step is reported too.
    let on_at = on["at_ms"].as_u64().unwrap();
    bus.wait_json(watcher, "the switch off by the timer", STEP_LIMIT, |v| {
        v["state"] == json!("off") && v["at_ms"].as_u64().is_some_and(|t| t > on_at)
    });
    bus.kill(watcher);

    // A machine stopped by an error: the watcher sees it stop, with the error.
    let looper = bus.write("looper.json", LOOPER);
    bus.interstate(
        "run looper",
        &["run", &looper, "--id", "looper", "--client"],
    );
    bus.wait_ps("looper", |list| ps_pid(list, "looper").is_some());
    let watcher = bus.interstate("watch looper", &["status", "looper", "--watch", "--json"]);
    bus.wait_json(watcher, "looper's first report", STEP_LIMIT, |v| {
        v["state"] == json!("idle")
    });
    let (status, _, err) = bus.run(&["send", "looper", "GO"]);
    assert!(status.success(), "{err}");
    let stopped = bus.wait_json(watcher, "the stop", STEP_LIMIT, |v| {
        v["status"] == json!("stopped")
    });
    assert!(
        stopped["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("infinite loop")),
        "{stopped}"
    );
    bus.wait_json(watcher, "the machine leaving", STEP_LIMIT, |v| {
        v["event"] == json!("left the bus")
    });
    let (status, _, err) = bus.run(&["status", "looper"]);
    assert!(
        !status.success() && err.contains("no machine 'looper'"),
        "{err}"
    );
}

/// `ps` shows each machine's state, its age in milliseconds and when it registered.
#[test]
fn ps_shows_state_age_and_registration_time() {
    let mut bus = Bus::new("psstate");
    bus.start_hub();
    let lamp = bus.write(
        "switch.json",
        r#"{"id":"switch","initial":"off","states":{"off":{"on":{"GO":"on"}},"on":{}}}"#,
    );
    bus.start_machine(&lamp, "lamp");
    let sink = bus.start_sink("a-port", &[]);
    let (status, _, err) = bus.run(&["send", "lamp", "GO"]);
    assert!(status.success(), "{err}");
    let list = bus.wait_ps("lamp on", |list| {
        list.iter()
            .any(|e| e["machine"] == json!("lamp") && e["state"] == json!("on"))
    });
    let lamp = list.iter().find(|e| e["machine"] == json!("lamp")).unwrap();
    assert_eq!(lamp["status"], json!("active"), "{lamp}");
    assert!(lamp["age_ms"].as_u64().is_some(), "{lamp}");
    let at = lamp["registered_at"].as_str().expect("registered_at");
    assert!(
        at.len() == 24 && at.ends_with('Z') && at.contains('T'),
        "{at}"
    );
    assert!(lamp.get("since_ms").is_none(), "{lamp}");
    // A port has no state.
    let port = list
        .iter()
        .find(|e| e["machine"] == json!("a-port"))
        .unwrap();
    assert_eq!(port["state"], Value::Null, "{port}");
    let (status, out, _) = bus.run(&["ps"]);
    assert!(status.success());
    assert!(out.lines().next().unwrap().contains("STATE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("a-port") && l.contains("(port)")),
        "{out}"
    );
    bus.kill(sink);
}

/// On PING, sends HELLO to a machine that does not exist (a failure the hub reports).
const PINGER: &str = r#"{
  "id": "pinger", "initial": "idle",
  "states": { "idle": { "on": {
    "PING": { "actions": [ { "type": "sendTo", "to": "ghost", "event": "HELLO", "data": { "n": 1 } } ] },
    "xstate.error.delivery": { "actions": [ { "type": "log", "message": "heard" } ] }
  } } }
}"#;

/// Sends `event` to `target` until `done` holds (a monitor subscribes at some point after it
/// started: this waits for it without a timed sleep).
fn send_until(bus: &mut Bus, target: &str, event: &str, done: impl Fn(&mut Bus) -> bool) {
    let end = std::time::Instant::now() + STEP_LIMIT;
    while !done(bus) {
        assert!(std::time::Instant::now() < end, "never done{}", bus.dump());
        let (status, _, err) = bus.run(&["send", target, event]);
        assert!(status.success(), "{err}");
    }
}

fn json_lines(bus: &Bus, p: P) -> Vec<Value> {
    bus.out(p).iter().filter_map(|l| parse_json(l)).collect()
}

/// `monitor` prints a timestamp per line, filters by machine and event (with wildcards),
/// shows delivery failures as the `xstate.error.delivery` their sender gets, writes JSON
/// payloads as JSON, and stops after `--count` lines.
#[test]
fn monitor_filters_timestamps_failures_and_json_payloads() {
    let mut bus = Bus::new("monitor");
    bus.start_hub();
    let lamp = bus.write("lamp.json", LAMP);
    let pinger = bus.write("pinger.json", PINGER);
    bus.start_machine(&lamp, "lamp");
    let p = bus.start_machine(&pinger, "pinger");
    let lamps = bus.interstate("monitor lamp", &["monitor", "--json", "--machine", "la*"]);
    let errs2 = bus.interstate(
        "monitor errors",
        &[
            "monitor",
            "--json",
            "--event",
            "xstate.error.*",
            "--event",
            "PING",
        ],
    );
    send_until(&mut bus, "lamp", "x.ping", |b| {
        !json_lines(b, lamps).is_empty()
    });
    send_until(&mut bus, "pinger", "PING", |b| {
        json_lines(b, errs2)
            .iter()
            .any(|v| v["event"] == json!("xstate.error.delivery"))
    });
    let (status, _, err) = bus.run(&["send", "lamp", "GO", "--data", r#"{"k":[1,2]}"#]);
    assert!(status.success(), "{err}");
    let go = bus.wait_json(lamps, "the GO line", STEP_LIMIT, |v| {
        v["event"] == json!("GO")
    });
    assert_eq!(
        go["data"],
        json!({"k": [1, 2]}),
        "a JSON payload is JSON: {go}"
    );
    assert_eq!(go["to"], json!("lamp"));
    let at = go["at"].as_str().expect("a timestamp");
    assert!(at.ends_with('Z') && at.contains('T'), "{at}");
    assert!(go["at_ms"].as_u64().is_some(), "{go}");
    let failure = json_lines(&bus, errs2)
        .into_iter()
        .find(|v| v["event"] == json!("xstate.error.delivery"))
        .unwrap();
    assert_eq!(
        (&failure["from"], &failure["to"], &failure["failed"]),
        (&json!("ghost"), &json!("pinger"), &json!(true)),
        "{failure}"
    );
    assert_eq!(
        failure["data"]["reason"],
        json!("unknown-target"),
        "{failure}"
    );
    assert_eq!(failure["data"]["event"], json!("HELLO"), "{failure}");
    bus.wait_line(p, false, "the pinger hearing of it", STEP_LIMIT, |l| {
        l.contains("heard")
    });
    // Each monitor showed only what its filters let through.
    for v in json_lines(&bus, lamps) {
        assert!(
            v["from"] == json!("lamp") || v["to"] == json!("lamp"),
            "{v}"
        );
    }
    for v in json_lines(&bus, errs2) {
        assert!(
            v["event"] == json!("PING") || v["event"] == json!("xstate.error.delivery"),
            "{v}"
        );
    }
    // Text lines start with the time; --count stops the monitor.
    let counted = bus.interstate(
        "monitor --count",
        &["monitor", "--count", "2", "--machine", "lamp"],
    );
    send_until(&mut bus, "lamp", "x.ping", |b| {
        b.try_status(counted).is_some()
    });
    assert!(bus.wait_exit(counted, STEP_LIMIT).success());
    let out = bus.out(counted);
    assert_eq!(out.len(), 2, "{out:?}");
    for l in &out {
        assert!(
            l.len() > 26 && l.as_bytes()[10] == b'T' && &l[23..26] == "Z  ",
            "{l}"
        );
        assert!(l.contains(" -> lamp  x.ping"), "{l}");
    }
}

/// A counter with a JSON context: `assign` adds to it, copies the event's data into it.
const COUNTER: &str = r#"{
  "id": "counter", "initial": "idle", "context": {"count": 0},
  "states": {
    "idle": { "on": {
      "INC": { "actions": { "type": "assign", "assignment": { "count": { "$add": 1 } } } },
      "NAME": { "actions": { "type": "assign", "assignment": { "who": { "$event": "who" } } } }
    } }
  }
}"#;

/// `status` and `ps --json` show a JSON chart's context as `assign` left it.
#[test]
fn status_and_ps_show_the_context() {
    let mut bus = Bus::new("context");
    bus.start_hub();
    let counter = bus.write("counter.json", COUNTER);
    bus.start_machine(&counter, "counter");
    assert_eq!(
        status_json(&mut bus, "counter")["context"],
        json!({"count": 0})
    );
    for args in [
        &["send", "counter", "INC"][..],
        &["send", "counter", "INC"],
        &["send", "counter", "NAME", "--data", r#"{"who":"kim"}"#],
    ] {
        let (status, _, err) = bus.run(args);
        assert!(status.success(), "{err}");
    }
    let want = json!({"count": 2, "who": "kim"});
    // The sends are taken in order; wait for the last one's step.
    let mut v = status_json(&mut bus, "counter");
    for _ in 0..100 {
        if v["context"] == want {
            break;
        }
        std::thread::sleep(POLL);
        v = status_json(&mut bus, "counter");
    }
    assert_eq!(v["context"], want, "{v}");
    let (status, out, _) = bus.run(&["status", "counter"]);
    assert!(status.success());
    assert!(
        out.contains(r#"context      {"count":2,"who":"kim"}"#),
        "{out}"
    );
    let list = bus.wait_ps("the context in ps", |list| {
        list.iter().any(|m| m["machine"] == json!("counter"))
    });
    let row = list
        .iter()
        .find(|m| m["machine"] == json!("counter"))
        .unwrap();
    assert_eq!(row["context"], want, "{row}");
}
