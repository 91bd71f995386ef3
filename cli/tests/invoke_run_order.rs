//! `interstate run --actor SRC=CHILD.json` in XState's order, and a child chart's `input`:
//! real processes on a private bus per test (`tests/support/mod.rs`); waits poll for a
//! condition, nothing asserts on timing.
//!
//! The expected order is XState 5.33.3's: `../shared/oracle/xstate-trace.mjs PARENT.json
//! --actor k=KID.json` with the charts below, which trace user actions. The test checks that
//! `interstate simulate` prints that trace, then runs the same charts under `run` with every
//! user action turned into a `log` action of the same name, and reads the order from the
//! log lines (`[p] NAME` for the parent, `[p/kid] NAME` for its child `kid`/NAME).

mod support;

use serde_json::{json, Value};
use support::*;

const PARENT: &str = r#"{ "id": "p", "initial": "a",
  "states": {
    "a": { "entry": ["pEntry", { "type": "sendTo", "to": "kid", "event": "PING" }],
           "invoke": { "src": "k", "id": "kid" },
           "on": { "PONG": { "actions": "gotPong" }, "HELLO": { "actions": "gotHello" }, "GO": "b" } },
    "b": { "entry": "bEntry", "invoke": { "src": "k", "id": "kid2" },
           "on": { "PONG": { "actions": "gotPong" }, "HELLO": { "actions": "gotHello" } } } } }"#;

const KID: &str = r#"{ "id": "k", "initial": "w",
  "states": {
    "w": { "entry": ["kEntry", { "type": "sendParent", "event": "HELLO" }],
           "on": { "PING": { "actions": ["kPing", { "type": "sendParent", "event": "PONG" }] } } } } }"#;

/// XState's actions at the start and on `GO`.
const ORACLE: [&[&str]; 2] = [
    &["kid/kEntry", "pEntry", "kid/kPing", "gotHello", "gotPong"],
    &["bEntry", "kid2/kEntry", "gotHello"],
];

/// The chart with every user action (a string) turned into a `log` of its name.
fn logging(chart: &str) -> String {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let x = if ["entry", "exit", "actions"].contains(&k.as_str()) {
                            let list = x.as_array().cloned().unwrap_or_else(|| vec![x.clone()]);
                            Value::Array(
                                list.iter()
                                    .map(|a| match a {
                                        Value::String(name) => {
                                            json!({"type": "log", "message": name})
                                        }
                                        a => a.clone(),
                                    })
                                    .collect(),
                            )
                        } else {
                            walk(x)
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(walk).collect()),
            v => v.clone(),
        }
    }
    walk(&serde_json::from_str(chart).unwrap()).to_string()
}

/// The actions of `run`'s log lines for machine `p` and its children, oracle-named.
fn traced(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let (who, message) = l.strip_prefix('[')?.split_once("] ")?;
            match who.split_once('/') {
                None if who == "p" => Some(message.to_string()),
                Some(("p", kid)) => Some(format!("{kid}/{message}")),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn run_starts_the_children_of_the_first_step_in_xstates_order() {
    let mut bus = Bus::new("invoke-order");
    let parent = bus.write("p.json", PARENT);
    let kid = bus.write("k.json", KID);
    let actor = format!("k={kid}");

    // The reference: simulate prints the oracle's trace.
    let out = std::process::Command::new(interstate_bin())
        .args(["simulate", &parent, "--actor", &actor, "GO"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let steps: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (step, expected) in steps.iter().zip(ORACLE) {
        assert_eq!(step["actions"], json!(expected), "{steps:?}");
    }

    let parent = bus.write("p-log.json", &logging(PARENT));
    let kid = bus.write("k-log.json", &logging(KID));
    let actor = format!("k={kid}");
    let p = bus.interstate("run p", &["run", &parent, "--id", "p", "--actor", &actor]);
    bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    bus.wait_line(p, false, "the first step's last action", STEP_LIMIT, |l| {
        l == "[p] gotPong"
    });
    assert_eq!(traced(&bus.out(p)), ORACLE[0], "{}", bus.dump());

    let (status, _, err) = bus.run(&["send", "p", "GO"]);
    assert!(status.success(), "{err}");
    // As many actions as XState's two steps have, then the order.
    let expected: Vec<&str> = ORACLE.concat();
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    let mut all = traced(&bus.out(p));
    while all.len() < expected.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
        all = traced(&bus.out(p));
    }
    assert_eq!(all, expected, "{}", bus.dump());
    bus.term(p);
}

#[test]
fn run_gives_a_child_chart_its_invocations_input() {
    let mut bus = Bus::new("invoke-input");
    let parent = bus.write(
        "p.json",
        r#"{ "id": "p", "initial": "idle", "states": {
            "idle": { "on": { "JOB": "working" } },
            "working": { "invoke": { "src": "w", "id": "job", "input": { "url": "/data", "n": 3 } } } } }"#,
    );
    let worker = bus.write(
        "w.json",
        r#"{ "id": "w", "initial": "run", "context": { "job": null },
          "states": {
            "run": { "entry": { "type": "assign", "assignment": { "job": { "$event": "input" } } },
                     "always": { "guard": { "type": "context", "key": "job", "op": "==",
                                            "value": { "url": "/data", "n": 3 } }, "target": "got" } },
            "got": { "entry": { "type": "log", "message": "got the input" } } } }"#,
    );
    let actor = format!("w={worker}");
    let p = bus.interstate("run p", &["run", &parent, "--id", "p", "--actor", &actor]);
    bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = bus.run(&["send", "p", "JOB"]);
    assert!(status.success(), "{err}");
    bus.wait_line(
        p,
        false,
        "the child's guard on its input",
        STEP_LIMIT,
        |l| l == "[p/job] got the input",
    );
    let list = bus.wait_ps("the child", |l| ps_pid(l, "p/job").is_some());
    let job = list.iter().find(|m| m["machine"] == "p/job").unwrap();
    assert_eq!(
        job["context"],
        json!({"job": {"url": "/data", "n": 3}}),
        "{list:?}"
    );
    bus.term(p);
}
