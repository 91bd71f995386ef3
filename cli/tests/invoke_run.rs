//! `interstate run --actor SRC=CHILD.json`: a chart's invoked child charts run as machines of
//! the same process, `ID/INVOKE-ID` on the bus (listed by `ps`, reachable by `send`, gone
//! once stopped or finished), their end reported to the parent; a chart that invokes a src
//! nothing binds is refused, naming it. Real processes on a private bus per test
//! (`tests/support/mod.rs`); waits poll for a condition, nothing asserts on timing.

mod support;

use support::*;

const RUNNER: &str = r#"{
  "id": "runner", "initial": "idle",
  "states": {
    "idle": { "on": { "JOB": "working" } },
    "working": {
      "entry": { "type": "sendTo", "to": "job", "event": "START" },
      "invoke": { "src": "worker", "id": "job",
                  "onDone": { "target": "idle", "actions": { "type": "log", "message": "collected" } },
                  "onError": { "target": "idle", "actions": { "type": "log", "message": "job failed" } } },
      "on": { "PROGRESS": { "actions": { "type": "log", "message": "progress" } }, "CANCEL": "idle" }
    }
  }
}"#;

const WORKER: &str = r#"{
  "id": "worker", "initial": "ready",
  "states": {
    "ready": { "on": { "START": { "target": "busy", "actions": { "type": "log", "message": "started" } } } },
    "busy": {
      "entry": { "type": "sendParent", "event": "PROGRESS" },
      "on": { "FINISH": "finished" }
    },
    "finished": { "type": "final", "output": { "status": "stored" } }
  }
}"#;

fn listed(list: &[serde_json::Value], id: &str) -> bool {
    ps_pid(list, id).is_some()
}

#[test]
fn run_hosts_invoked_child_charts_as_machines_on_the_bus() {
    hosts_children(false);
}

#[test]
fn a_client_process_hosts_invoked_children_too() {
    hosts_children(true);
}

/// `client`: the machine's process joins a hub of its own instead of serving the bus.
fn hosts_children(client: bool) {
    let mut bus = Bus::new(if client {
        "invoke-client"
    } else {
        "invoke-run"
    });
    let hub = client.then(|| bus.start_hub());
    let runner = bus.write("runner.json", RUNNER);
    let worker = bus.write("worker.json", WORKER);
    let actor = format!("worker={worker}");
    let mut args = vec!["run", &runner, "--id", "runner", "--actor", &actor];
    if client {
        args.push("--client");
    }
    let p = bus.interstate("run runner", &args);
    bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let list = bus.ps();
    assert!(
        listed(&list, "runner") && !listed(&list, "runner/job"),
        "{list:?}"
    );

    // Started with its state: its log line, its parent's, and `ps` lists it in this process.
    let (status, _, err) = bus.run(&["send", "runner", "JOB"]);
    assert!(status.success(), "{err}");
    bus.wait_line(p, false, "the child's first action", STEP_LIMIT, |l| {
        l == "[runner/job] started"
    });
    bus.wait_line(p, false, "the parent's progress", STEP_LIMIT, |l| {
        l == "[runner] progress"
    });
    let list = bus.wait_ps("the child", |l| listed(l, "runner/job"));
    assert_eq!(ps_pid(&list, "runner/job"), ps_pid(&list, "runner"));

    // Reachable by `send`; its final state ends it and its parent collects.
    let (status, _, err) = bus.run(&["send", "runner/job", "FINISH"]);
    assert!(status.success(), "{err}");
    bus.wait_line(p, false, "the done event", STEP_LIMIT, |l| {
        l == "[runner] collected"
    });
    bus.wait_ps("the child gone", |l| {
        !listed(l, "runner/job") && listed(l, "runner")
    });

    // Exiting the state stops the child: it leaves the bus, and a send to it fails.
    let (status, _, err) = bus.run(&["send", "runner", "JOB"]);
    assert!(status.success(), "{err}");
    bus.wait_ps("the second child", |l| listed(l, "runner/job"));
    let (status, _, err) = bus.run(&["send", "runner", "CANCEL"]);
    assert!(status.success(), "{err}");
    bus.wait_ps("the stopped child gone", |l| !listed(l, "runner/job"));
    let (status, _, _) = bus.run(&["send", "runner/job", "FINISH"]);
    assert!(!status.success(), "a send to a stopped child succeeded");
    assert!(
        !bus.out(p).iter().any(|l| l == "[runner] job failed"),
        "{}",
        bus.dump()
    );
    bus.term(p);
    if let Some(hub) = hub {
        bus.term(hub);
    }
}

#[test]
fn run_refuses_a_chart_that_invokes_a_src_with_no_actor() {
    let mut bus = Bus::new("invoke-unbound");
    let runner = bus.write("runner.json", RUNNER);
    let (status, _, err) = bus.run(&["run", &runner, "--id", "runner"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("'worker'") && err.contains("--actor"), "{err}");
    // A malformed --actor is a usage error naming the form.
    let (status, _, err) = bus.run(&["run", &runner, "--id", "runner", "--actor", "worker"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("SRC=CHILD.json"), "{err}");
}

#[test]
fn the_job_runner_example_runs_its_worker_chart_under_run() {
    let charts = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/charts");
    let runner = format!("{charts}/job_runner.json");
    let actor = format!("worker={charts}/job_worker.json");
    let mut bus = Bus::new("invoke-example");
    let p = bus.interstate(
        "job runner",
        &["run", &runner, "--id", "runner", "--actor", &actor],
    );
    bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = bus.run(&["send", "runner", "JOB", "--data", r#"{"job":1}"#]);
    assert!(status.success(), "{err}");
    bus.wait_ps("the worker", |l| listed(l, "runner/job"));
    // The worker's three stages (a second each) end in its final state: it leaves the bus
    // and the runner is idle again (by its onDone: its timeout is 5 s).
    let list = bus.wait_ps("the worker done", |l| !listed(l, "runner/job"));
    let runner = list.iter().find(|m| m["machine"] == "runner");
    assert!(
        runner.is_some_and(|m| m.to_string().contains("idle")),
        "{list:?}"
    );
    bus.term(p);
}

#[test]
fn run_help_lists_every_actor_form_and_the_child_bounds() {
    let mut bus = Bus::new("invoke-help");
    let (status, out, err) = bus.run(&["run", "--help"]);
    assert!(status.success(), "{err}");
    for form in [
        "SRC=CHILD.json",
        "SRC=process:CHILD.json",
        "SRC=exec:PROGRAM",
        "--max-children",
        "--child-grace",
    ] {
        assert!(out.contains(form), "run --help lacks {form}:\n{out}");
    }
}

/// One node-wide bound for children of every kind: with `--max-children 0` an in-process
/// child chart cannot start either, and its parent hears of it as its error event.
#[test]
fn max_children_bounds_child_charts_in_the_process() {
    let mut bus = Bus::new("invoke-maxch");
    let runner = bus.write("runner.json", RUNNER);
    let worker = bus.write("worker.json", WORKER);
    let actor = format!("worker={worker}");
    let p = bus.interstate(
        "run runner",
        &[
            "run",
            &runner,
            "--id",
            "runner",
            "--actor",
            &actor,
            "--max-children",
            "0",
        ],
    );
    bus.wait_line(p, true, "the join line", STEP_LIMIT, |l| {
        l.contains("joined bus")
    });
    let (status, _, err) = bus.run(&["send", "runner", "JOB"]);
    assert!(status.success(), "{err}");
    bus.wait_line(p, false, "the parent's onError", STEP_LIMIT, |l| {
        l == "[runner] job failed"
    });
    assert!(!listed(&bus.ps(), "runner/job"));
}
